"""Warm starts along a path: ModelUtility(warm_start=True) and Utility.chain().

Helper estimators live at module level: the cluster's worker processes import
this module to unpickle them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cloudpickle
import numpy as np
import pytest
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

import daskval as dv
from daskval.utility import EvalStats, UtilityChain, _WarmModelChain


@pytest.fixture(autouse=True)
def one_blas_thread() -> Iterator[None]:
    """Small fits in BLAS threads on a busy 2-core machine are ~10x slower."""
    with threadpool_limits(limits=1):
        yield


# --------------------------------------------------------------------------
# helpers (module level: workers import them)


class MajorityClassifier(ClassifierMixin, BaseEstimator):
    """Predicts the majority class; records whether a fit continued a previous one.

    With ``refuse_warm`` a warm fit (warm_start and already fitted) raises, as
    a solver that cannot restart from a solution would; with ``refuse_every``
    any fit on a multiple of that many rows raises.
    """

    def __init__(
        self, warm_start: bool = False, refuse_warm: bool = False, refuse_every: int = 0
    ) -> None:
        self.warm_start = warm_start
        self.refuse_warm = refuse_warm
        self.refuse_every = refuse_every

    def fit(self, x: Any, y: Any) -> MajorityClassifier:
        continued = self.warm_start and hasattr(self, "classes_")
        if continued and self.refuse_warm:
            raise RuntimeError("MajorityClassifier refuses a warm fit")
        if self.refuse_every and len(y) % self.refuse_every == 0:
            raise ValueError(f"MajorityClassifier refuses {len(y)} rows")
        self.classes_, counts = np.unique(y, return_counts=True)
        self.majority_ = self.classes_[np.argmax(counts)]
        self.continued_ = continued
        return self

    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(x), self.majority_)


class CountingUtility(dv.ModelUtility):
    """Counts calls of :meth:`evaluate` (the only entry a memo would wrap)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.evaluate_calls = 0

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        self.evaluate_calls += 1
        return super().evaluate(players, stats)


def _classification(n_train: int = 60, n_test: int = 100) -> dv.Dataset:
    x, y = make_classification(
        n_samples=n_train + n_test, n_features=5, n_informative=3, random_state=0
    )
    return dv.Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def _prefixes(n: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[:size] for size in range(1, n + 1)]


def _two_class_prefixes(data: dv.Dataset, seed: int) -> list[np.ndarray]:
    """Prefixes of sizes 2..n of a permutation whose first two rows differ in
    class: the set of classes stays the same along the whole path."""
    perm = np.random.default_rng(seed).permutation(data.n)
    other = np.flatnonzero(data.y_train[perm] != data.y_train[perm[0]])[0]
    perm[[1, other]] = perm[[other, 1]]
    return [perm[:size] for size in range(2, data.n + 1)]


def _warm_chain(utility: dv.Utility) -> _WarmModelChain:
    chain = utility.chain()
    assert isinstance(chain, _WarmModelChain)
    return chain


def _counts(stats: EvalStats) -> tuple[Any, ...]:
    """What a chain must count as cold evaluations do (tracebacks differ)."""
    return stats.n_evaluations, stats.n_failed, stats.failures, stats.warnings


def _walk(
    utility: dv.Utility, path: list[np.ndarray], chain: UtilityChain | None = None
) -> tuple[list[float], EvalStats]:
    """u along ``path``: through ``chain``, or cold when it is None."""
    stats = EvalStats()
    with utility.context():
        if chain is None:
            values = [utility.evaluate(s, stats) for s in path]
        else:
            values = [chain.evaluate(s, stats) for s in path]
    return values, stats


# --------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("model", "error", "names"),
    [
        pytest.param(
            DecisionTreeClassifier(),
            TypeError,
            ["warm_start", "DecisionTreeClassifier"],
            id="no-warm_start",
        ),
        pytest.param(
            make_pipeline(StandardScaler(), DecisionTreeClassifier()),
            TypeError,
            ["warm_start", "DecisionTreeClassifier", "final step of the Pipeline"],
            id="pipeline-final-step",
        ),
        pytest.param(
            RandomForestClassifier(n_estimators=3),
            ValueError,
            ["warm_start", "RandomForestClassifier", "grows the ensemble"],
            id="forest",
        ),
        pytest.param(
            GradientBoostingClassifier(n_estimators=3),
            ValueError,
            ["warm_start", "GradientBoostingClassifier"],
            id="boosting",
        ),
    ],
)
def test_a_model_that_cannot_warm_start_is_refused_at_construction(
    model: Any, error: type[Exception], names: list[str]
) -> None:
    with pytest.raises(error) as info:
        dv.ModelUtility(model, _classification(), warm_start=True)
    for name in names:
        assert name in str(info.value)
    dv.ModelUtility(model, _classification())  # fine without warm starts


def test_warm_start_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="warm_start must be True or False"):
        dv.ModelUtility(LogisticRegression(), _classification(), warm_start=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "model",
    [
        LogisticRegression(),
        SGDClassifier(random_state=0),
        make_pipeline(StandardScaler(), LogisticRegression()),
    ],
    ids=["logreg", "sgd", "pipeline"],
)
def test_models_with_warm_start_are_accepted(model: Any) -> None:
    utility = dv.ModelUtility(model, _classification(), warm_start=True)
    assert utility.describe()["warm_start"] is True
    assert not model.get_params().get("warm_start")  # the user's model untouched


# --------------------------------------------------------------------------
# evaluate stays cold


@pytest.mark.parametrize(
    ("model", "scoring"),
    [
        (LogisticRegression(), "neg_log_loss"),
        (SGDClassifier(random_state=3), "accuracy"),
        (make_pipeline(StandardScaler(), LogisticRegression(C=0.3)), "accuracy"),
    ],
    ids=["logreg", "seeded-sgd", "pipeline"],
)
def test_evaluate_is_bit_identical_with_and_without_warm_start(
    model: Any, scoring: str
) -> None:
    data = _classification()
    cold = dv.ModelUtility(model, data, scoring=scoring, default=-9.0, seed=5)
    warm = dv.ModelUtility(
        model, data, scoring=scoring, default=-9.0, seed=5, warm_start=True
    )
    # prefixes of a permutation, in path order: evaluate must ignore the path
    path = _prefixes(data.n, seed=0)
    cold_values, cold_stats = _walk(cold, path)
    warm_values, warm_stats = _walk(warm, path)
    assert np.array(warm_values).tobytes() == np.array(cold_values).tobytes()
    assert cold_stats == warm_stats
    assert warm.fingerprint() == cold.fingerprint()
    assert cold.describe()["warm_start"] is False


def test_a_cold_utility_chains_through_evaluate() -> None:
    data = _classification()
    utility = CountingUtility(LogisticRegression(), data)
    path = _prefixes(data.n, seed=1)
    chain = utility.chain()
    assert type(chain) is UtilityChain
    chained, _ = _walk(utility, path, chain)
    assert utility.evaluate_calls == len(path)
    assert chained == _walk(utility, path)[0]


def test_function_utilities_chain_cold() -> None:
    utility = dv.FunctionUtility(lambda s: float(np.sum(s)), 10)
    chain = utility.chain()
    stats = EvalStats()
    assert [chain.evaluate(s, stats) for s in _prefixes(10, 0)] == [
        utility(s) for s in _prefixes(10, 0)
    ]
    assert stats.n_evaluations == 10


# --------------------------------------------------------------------------
# warm chains


def test_a_warm_chain_never_calls_evaluate() -> None:
    """Chain values depend on the path: a memo wrapping evaluate (keyed by the
    path-free fingerprint) must neither serve nor store them."""
    data = _classification()
    utility = CountingUtility(LogisticRegression(), data, warm_start=True)
    chain = _warm_chain(utility)
    _, stats = _walk(utility, _prefixes(data.n, seed=2), chain)
    assert utility.evaluate_calls == 0
    assert stats.n_evaluations == data.n
    assert chain.n_warm > data.n // 2


def _objective_gradient(model: Any, x: np.ndarray, y: np.ndarray, c: float) -> Any:
    """Gradient of scikit-learn's binary logistic objective at the fitted model,
    and the smallest eigenvalue of its Hessian there.

    The objective is mean log-loss + ||coef||^2 / (2 C n) (intercept free).
    """
    w = np.r_[model.coef_.ravel(), model.intercept_]
    xt = np.c_[x, np.ones(len(x))]
    p = expit(xt @ w)
    reg = np.r_[np.ones(x.shape[1]), 0.0] / (c * len(y))
    gradient = xt.T @ (p - y) / len(y) + reg * w
    hessian = xt.T @ (xt * (p * (1 - p))[:, None]) / len(y) + np.diag(reg)
    return gradient, float(np.linalg.eigvalsh(hessian)[0])


def _split_pipeline(model: Any, x: np.ndarray) -> tuple[Any, np.ndarray]:
    """The final logistic regression of ``model`` and the rows it sees."""
    if hasattr(model, "steps"):
        return model[-1], model[:-1].transform(x)
    return model, x


@pytest.mark.parametrize("pipeline", [False, True], ids=["logreg", "pipeline"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_warm_chain_agrees_with_cold_fits_within_the_solver_tolerance(
    seed: int, pipeline: bool
) -> None:
    """Why this bound. The objective f is mu-strongly convex near its optimum
    (mu: smallest Hessian eigenvalue), so two points with gradients g_w, g_c
    lie within ||w_w - w_c|| <= (||g_w|| + ||g_c||) / mu of each other; lbfgs
    stops them both at a gradient of the order of ``tol`` (gtol=tol; or
    earlier, on its ftol, hence the measured gradients). The test log-loss
    is L-Lipschitz in (coef, intercept), with L the mean norm of [x_test, 1]
    (as the final step sees x_test). So |u_warm - u_cold| <= L (||g_w|| +
    ||g_c||) / mu, per prefix; at tol=1e-8 that is ~1e-6, while u moves by
    ~1e-2 between prefixes. In a Pipeline the scaler is refitted cold, equal
    in both fits, so the same bound holds on the scaled rows.
    """
    tol, c = 1e-8, 1.0
    data = _classification()
    model = LogisticRegression(tol=tol, C=c, max_iter=10_000)
    if pipeline:
        model = make_pipeline(StandardScaler(), model)
    utility = dv.ModelUtility(model, data, scoring="neg_log_loss", warm_start=True)
    chain = _warm_chain(utility)
    stats, cold_stats, worst = EvalStats(), EvalStats(), 0.0
    with utility.context():
        for subset in _prefixes(data.n, seed):
            warm_u = chain.evaluate(subset, stats)
            cold_u = utility.evaluate(subset, cold_stats)
            if chain._model is None:  # a single-class prefix: both failed
                assert warm_u == cold_u == utility.default
                continue
            x, y = data.x_train[subset], data.y_train[subset]
            warm_lr, x_seen = _split_pipeline(chain._model, x)
            cold_lr, _ = _split_pipeline(clone(model).fit(x, y), x)
            _, x_test = _split_pipeline(chain._model, data.x_test)
            lipschitz = np.mean(
                np.linalg.norm(np.c_[x_test, np.ones(len(x_test))], axis=1)
            )
            g_warm, _ = _objective_gradient(warm_lr, x_seen, y, c)
            g_cold, mu = _objective_gradient(cold_lr, x_seen, y, c)
            bound = lipschitz * (np.linalg.norm(g_warm) + np.linalg.norm(g_cold)) / mu
            assert abs(warm_u - cold_u) <= bound, (len(subset), warm_u, cold_u)
            worst = max(worst, bound)
    assert worst < 1e-4  # the bound is meaningful: far below the moves of u
    assert chain.n_warm >= data.n - 3
    assert (stats.n_failed, stats.failures) == (
        cold_stats.n_failed,
        cold_stats.failures,
    )


def test_the_first_fit_of_a_chain_is_the_cold_fit() -> None:
    """warm_start on an unfitted copy changes nothing: same seed, same value."""
    data = _classification()
    for model in (SGDClassifier(random_state=1), LogisticRegression()):
        utility = dv.ModelUtility(model, data, seed=4, warm_start=True)
        subset = _prefixes(data.n, seed=3)[30]
        chained, _ = _walk(utility, [subset], utility.chain())
        assert chained == [utility(subset)]


def test_a_seeded_warm_chain_is_reproducible() -> None:
    data = _classification()
    utility = dv.ModelUtility(SGDClassifier(random_state=0), data, warm_start=True)
    path = _prefixes(data.n, seed=4)
    first, _ = _walk(utility, path, utility.chain())
    assert _walk(utility, path, utility.chain())[0] == first
    shipped = cloudpickle.loads(cloudpickle.dumps(utility))  # as on a worker
    assert _walk(shipped, path, shipped.chain())[0] == first


def _iris_path() -> tuple[dv.Dataset, list[np.ndarray]]:
    """Iris rows of classes 0 and 1 first, then class 2: the classes change at
    prefix 21 (and prefix 1 has a single class)."""
    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    rows = np.r_[
        rng.choice(np.flatnonzero(y < 2), 20, replace=False),
        rng.choice(np.flatnonzero(y == 2), 10, replace=False),
    ]
    test = np.setdiff1d(np.arange(len(y)), rows)
    order = np.r_[rng.permutation(20), 20 + rng.permutation(10)]
    data = dv.Dataset(x[rows], y[rows], x[test], y[test])
    return data, [order[:size] for size in range(1, 31)]


def test_a_change_of_classes_refits_cold() -> None:
    data, path = _iris_path()
    model = LogisticRegression(max_iter=1000)
    utility = dv.ModelUtility(model, data, scoring="neg_log_loss", warm_start=True)
    chain = _warm_chain(utility)
    warm, stats = _walk(utility, path, chain)
    cold, cold_stats = _walk(utility, path)
    first_two_class = next(
        k for k, s in enumerate(path) if len(np.unique(data.y_train[s])) == 2
    )
    # cold fits: the first two-class prefix and the first with class 2 (its
    # value is the cold value, bit for bit); every other prefix warm
    assert (chain.n_cold, chain.n_fallbacks) == (2, 0)
    assert chain.n_warm == len(path) - first_two_class - 2
    assert warm[20] == cold[20]
    assert warm[:first_two_class] == cold[:first_two_class] == [0.0] * first_two_class
    assert _counts(stats) == _counts(cold_stats)  # the single-class prefixes fail alike


def test_a_warm_fit_that_raises_falls_back_to_a_cold_fit() -> None:
    data = _classification()
    utility = dv.ModelUtility(
        MajorityClassifier(refuse_warm=True), data, warm_start=True
    )
    chain = _warm_chain(utility)
    path = _two_class_prefixes(data, seed=5)
    warm, stats = _walk(utility, path, chain)
    cold, cold_stats = _walk(utility, path)
    assert warm == cold
    assert _counts(stats) == _counts(cold_stats)
    assert (stats.n_failed, stats.n_evaluations) == (0, len(path))  # no failures
    assert chain.n_fallbacks == len(path) - 1
    assert chain.n_cold == len(path)


def test_failures_along_a_chain_count_as_cold_ones_and_restart_cold() -> None:
    data = _classification()
    utility = dv.ModelUtility(
        MajorityClassifier(refuse_every=7), data, default=-1.0, warm_start=True
    )
    chain = _warm_chain(utility)
    path = _two_class_prefixes(data, seed=6)
    warm, stats = _walk(utility, path, chain)
    cold, cold_stats = _walk(utility, path)
    assert warm == cold
    assert _counts(stats) == _counts(cold_stats)
    assert stats.n_failed == data.n // 7
    assert stats.failures == {"ValueError: MajorityClassifier refuses 7 rows": 1} | {
        f"ValueError: MajorityClassifier refuses {7 * k} rows": 1
        for k in range(2, data.n // 7 + 1)
    }
    # a failed fit leaves no model to continue from: the next one is cold
    assert chain.n_cold == 1 + data.n // 7
    assert chain._model.continued_


def test_leaving_the_path_starts_cold() -> None:
    data = _classification()
    utility = dv.ModelUtility(MajorityClassifier(), data, warm_start=True)
    chain = _warm_chain(utility)
    first = _two_class_prefixes(data, seed=7)[:10]
    second = _two_class_prefixes(data, seed=8)[:10]
    _walk(utility, first, chain)
    assert (chain.n_cold, chain.n_warm) == (1, 9)
    _walk(utility, second, chain)  # a new permutation through the same chain
    assert (chain.n_cold, chain.n_warm) == (2, 18)


# --------------------------------------------------------------------------
# end to end: permutation Shapley on the cluster


class FirstFitMajority(ClassifierMixin, BaseEstimator):
    """Predicts the majority class of its first fit: a warm fit keeps it.

    Its warm values differ visibly from its cold ones, so a run shows whether
    the workers warm-started.
    """

    def __init__(self, warm_start: bool = False) -> None:
        self.warm_start = warm_start

    def fit(self, x: Any, y: Any) -> FirstFitMajority:
        if not (self.warm_start and hasattr(self, "majority_")):
            values, counts = np.unique(y, return_counts=True)
            self.majority_ = values[np.argmax(counts)]
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(x), self.majority_)


def _local_shapley(utility: dv.Utility, k: int, seed: int) -> np.ndarray:
    """Permutation Shapley values of ``k`` permutations, computed here: each
    permutation through one chain (the same permutations the run draws)."""
    sampler, n = dv.PermutationSampler(), utility.n
    u_empty, u_full = utility([]), utility(np.arange(n))
    total, stats = np.zeros(n), EvalStats()
    with utility.context():
        for index in range(k):
            perm = sampler.permutation(seed, index, n)
            chain, previous = utility.chain(), u_empty
            for size in range(1, n):
                current = chain.evaluate(perm[:size], stats)
                total[perm[size - 1]] += current - previous
                previous = current
            total[perm[-1]] += u_full - previous
    return total / k


def _cluster_shapley(utility: dv.Utility, k: int, seed: int, client: Any) -> Any:
    valuation = dv.ShapleyValuation(
        utility, sampler=dv.PermutationSampler(), stop=dv.MaxSamples(k), seed=seed
    )
    result = valuation.fit(client=client).result_
    assert result is not None and result.n_samples == k
    return result


def test_permutation_shapley_warm_starts_on_the_workers(client: Any) -> None:
    data = _classification(n_train=24, n_test=50)
    warm = dv.ModelUtility(FirstFitMajority(), data, warm_start=True)
    result = _cluster_shapley(warm, k=6, seed=13, client=client)
    expected = _local_shapley(warm, k=6, seed=13)
    cold_expected = _local_shapley(dv.ModelUtility(FirstFitMajority(), data), 6, 13)
    assert not np.allclose(expected, cold_expected)  # the model tells them apart
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-12)
    assert result.metadata["utility"]["warm_start"] is True


def test_permutation_shapley_warm_and_cold_agree_within_tolerance(
    client: Any,
) -> None:
    """neg_log_loss at tol=1e-8: each u deviates by < ~1e-6 (the bound of the
    per-prefix test above), and a marginal is a difference of two u."""
    data = _classification(n_train=30)
    model = LogisticRegression(tol=1e-8, max_iter=10_000)
    cold = dv.ModelUtility(model, data, scoring="neg_log_loss")
    warm = dv.ModelUtility(model, data, scoring="neg_log_loss", warm_start=True)
    result = _cluster_shapley(warm, k=4, seed=5, client=client)
    assert result.metadata["utility"]["warm_start"] is True
    np.testing.assert_allclose(
        result.values, _local_shapley(warm, 4, 5), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        result.values, _local_shapley(cold, 4, 5), rtol=0, atol=1e-5
    )


def test_identity_tells_warm_from_cold_where_the_fingerprint_does_not() -> None:
    data = _classification()
    cold = dv.ModelUtility(LogisticRegression(), data)
    warm = dv.ModelUtility(LogisticRegression(), data, warm_start=True)
    assert cold.fingerprint() == warm.fingerprint() == cold.identity()
    assert warm.identity() != cold.identity()
    assert (
        warm.identity()
        == dv.ModelUtility(LogisticRegression(), data, warm_start=True).identity()
    )


def test_a_warm_run_after_a_cold_one_on_the_same_client_warm_starts(
    client: Any,
) -> None:
    data = _classification(n_train=26, n_test=50)
    cold = dv.ModelUtility(FirstFitMajority(), data)
    warm = dv.ModelUtility(FirstFitMajority(), data, warm_start=True)
    cold_result = _cluster_shapley(cold, k=6, seed=17, client=client)
    warm_result = _cluster_shapley(warm, k=6, seed=17, client=client)
    np.testing.assert_allclose(
        cold_result.values, _local_shapley(cold, 6, 17), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        warm_result.values, _local_shapley(warm, 6, 17), rtol=0, atol=1e-12
    )
