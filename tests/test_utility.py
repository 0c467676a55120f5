"""ModelUtility and FunctionUtility: the lean path, failures, warnings, fingerprints.

Helper estimators live at module level: the cluster's worker processes import
this module to unpickle them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import get_scorer, log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier
from threadpoolctl import threadpool_limits

import daskval as dv
from daskval.utility import EvalStats, subset_seed


@pytest.fixture(autouse=True)
def one_blas_thread() -> Iterator[None]:
    """Small fits in BLAS threads on a busy 2-core machine are ~10x slower."""
    with threadpool_limits(limits=1):
        yield


# --------------------------------------------------------------------------
# helpers (module level: workers import them)


class FlakyClassifier(ClassifierMixin, BaseEstimator):
    """Predicts the majority class; refuses to fit on a multiple of 3 rows."""

    def fit(self, x: Any, y: Any) -> FlakyClassifier:
        if len(y) % 3 == 0:
            raise ValueError(f"FlakyClassifier refuses {len(y)} rows")
        self.classes_, counts = np.unique(y, return_counts=True)
        self.majority_ = self.classes_[np.argmax(counts)]
        self.n_rows_ = len(y)
        return self

    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(x), self.majority_)


class ColumnCheckingClassifier(ClassifierMixin, BaseEstimator):
    """Fails unless it gets a DataFrame with exactly the expected columns/dtypes."""

    def __init__(self, columns: tuple[str, ...] = (), dtypes: tuple[str, ...] = ()):
        self.columns = columns
        self.dtypes = dtypes

    def _check(self, x: Any) -> None:
        if not isinstance(x, pd.DataFrame):
            raise TypeError(f"expected a DataFrame, got {type(x).__name__}")
        if tuple(x.columns) != self.columns:
            raise ValueError(f"columns {tuple(x.columns)} != {self.columns}")
        if tuple(str(t) for t in x.dtypes) != self.dtypes:
            raise ValueError(f"dtypes {tuple(x.dtypes)} != {self.dtypes}")

    def fit(self, x: Any, y: Any) -> ColumnCheckingClassifier:
        self._check(x)
        self.classes_, counts = np.unique(y, return_counts=True)
        self.majority_ = self.classes_[np.argmax(counts)]
        return self

    def predict(self, x: Any) -> np.ndarray:
        self._check(x)
        return np.full(len(x), self.majority_)


def nan_for_small_models(estimator: Any, x: Any, y: Any) -> float:
    """Accuracy, but NaN when the model saw fewer than 10 rows."""
    if getattr(estimator, "n_rows_", 10) < 10:
        return float("nan")
    return float(estimator.score(x, y))


def constant_scorer(value: float) -> Any:
    """A local function (cloudpickle ships it by value) that scores ``value``."""

    def score(estimator: Any, x: Any, y: Any) -> float:
        return value

    return score


def nan_for_odd(players: np.ndarray) -> float:
    return float("nan") if len(players) % 2 else float(len(players))


def additive(players: np.ndarray) -> float:
    return float(np.sum(players))


# --------------------------------------------------------------------------
# data


def _classification(n_train: int = 60, n_test: int = 100) -> dv.Dataset:
    x, y = make_classification(
        n_samples=n_train + n_test, n_features=5, n_informative=3, random_state=0
    )
    return dv.Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def _diabetes(n_train: int, n_test: int = 100) -> dv.Dataset:
    x, y = load_diabetes(return_X_y=True)
    return dv.Dataset(x[:n_train], y[:n_train], x[-n_test:], y[-n_test:])


def _random_subsets(n: int, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        np.sort(rng.choice(n, size=rng.integers(1, n + 1), replace=False))
        for _ in range(count)
    ]


def plain_u(
    model: Any, data: dv.Dataset, scoring: str, subset: np.ndarray, seed: int | None
) -> float | None:
    """clone/fit/score by the book; None when scikit-learn raises."""
    fresh = clone(model)
    if seed is not None:
        keys = [k for k in fresh.get_params() if k.endswith("random_state")]
        derived = subset_seed(seed, subset)
        fresh.set_params(**{k: np.random.RandomState(derived) for k in keys})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = fresh.fit(data.x_train[subset], data.y_train[subset])
            return float(get_scorer(scoring)(fitted, data.x_test, data.y_test))
    except ValueError:
        return None


# --------------------------------------------------------------------------
# the lean path


@pytest.mark.parametrize(
    ("model", "scoring", "data", "seeded"),
    [
        pytest.param(
            make_pipeline(StandardScaler(), LogisticRegression()),
            "accuracy",
            _classification(),
            False,
            id="pipeline-accuracy",
        ),
        pytest.param(
            LogisticRegression(C=0.5),
            "neg_log_loss",
            _classification(),
            False,
            id="logreg-neg_log_loss",
        ),
        pytest.param(
            make_pipeline(StandardScaler(), ExtraTreeClassifier(random_state=3)),
            "accuracy",
            _classification(),
            True,
            id="seeded-extratree-accuracy",
        ),
        pytest.param(Ridge(alpha=0.1), "r2", _diabetes(60), False, id="ridge-r2"),
    ],
)
def test_lean_path_is_bit_identical_to_plain_clone_fit_score(
    model: Any, scoring: str, data: dv.Dataset, seeded: bool
) -> None:
    seed = 11
    utility = dv.ModelUtility(model, data, scoring=scoring, default=-123.0, seed=seed)
    subsets = _random_subsets(data.n, 1000)
    stats = EvalStats()
    with utility.context():
        lean = [utility.evaluate(s, stats) for s in subsets]
    plain = [
        plain_u(model, data, scoring, s, seed if seeded else None) for s in subsets
    ]
    for subset, got, expected in zip(subsets, lean, plain, strict=True):
        want = -123.0 if expected is None else expected
        assert np.float64(got).tobytes() == np.float64(want).tobytes(), subset
    failed = sum(p is None for p in plain)
    assert stats.n_failed == failed < 50  # only tiny one-class subsets fail
    assert stats.n_evaluations == 1000


def test_the_seed_reaches_every_random_state() -> None:
    data = _classification()
    model = make_pipeline(StandardScaler(), ExtraTreeClassifier(random_state=3))
    subsets = _random_subsets(data.n, 40, seed=1)
    values = {
        seed: [dv.ModelUtility(model, data, seed=seed)(s) for s in subsets]
        for seed in (0, 1)
    }
    again = [dv.ModelUtility(model, data, seed=0)(s) for s in subsets]
    assert values[0] == again
    assert values[0] != values[1]


def test_a_coalition_is_a_set_its_order_does_not_matter() -> None:
    data = _classification()
    utility = dv.ModelUtility(LogisticRegression(), data, scoring="neg_log_loss")
    rng = np.random.default_rng(2)
    for subset in _random_subsets(data.n, 20, seed=3):
        shuffled = rng.permutation(subset)
        assert utility(shuffled) == utility(subset)


def test_the_empty_coalition_scores_the_default_without_a_failure() -> None:
    utility = dv.ModelUtility(LogisticRegression(), _classification(), default=0.25)
    stats = EvalStats()
    assert utility.evaluate(np.empty(0, dtype=np.intp), stats) == 0.25
    assert (stats.n_evaluations, stats.n_failed) == (1, 0)


# --------------------------------------------------------------------------
# probability scorers on coalitions that lack a class


def _aligned_proba(fitted: Any, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    partial = fitted.predict_proba(x)
    full = np.zeros((len(x), len(classes)))
    full[:, np.searchsorted(classes, fitted.classes_)] = partial
    return full


def _direct_score(scoring: str, y: np.ndarray, proba: np.ndarray) -> float:
    labels = np.arange(proba.shape[1])
    if scoring == "neg_log_loss":
        return -float(log_loss(y, proba, labels=labels))
    return float(roc_auc_score(y, proba, multi_class="ovr", labels=labels))


@pytest.mark.parametrize("scoring", ["neg_log_loss", "roc_auc_ovr"])
def test_multiclass_proba_scorer_on_coalitions_missing_a_class(scoring: str) -> None:
    data = dv.Dataset.from_sklearn(load_iris(), train_size=60, random_state=0)
    classes = np.unique(data.y_train)
    utility = dv.ModelUtility(LogisticRegression(), data, scoring=scoring)
    rng = np.random.default_rng(0)
    stats = EvalStats()
    for kept in ([0, 1], [0, 2], [1, 2], [0, 1, 2]):
        candidates = np.flatnonzero(np.isin(data.y_train, kept))
        for _ in range(5):
            subset = np.sort(rng.choice(candidates, size=12, replace=False))
            if len(np.unique(data.y_train[subset])) < 2:
                continue
            fitted = clone(LogisticRegression()).fit(
                data.x_train[subset], data.y_train[subset]
            )
            proba = _aligned_proba(fitted, data.x_test, classes)
            expected = _direct_score(scoring, data.y_test, proba)
            with utility.context():
                got = utility.evaluate(subset, stats)
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert stats.n_failed == 0  # never the silent default


def test_binary_auc_of_a_one_class_coalition_is_chance_not_the_default() -> None:
    data = _classification()
    utility = dv.ModelUtility(
        DecisionTreeClassifier(), data, scoring="roc_auc", default=-1.0
    )
    one_class = np.flatnonzero(data.y_train == 1)[:5]
    stats = EvalStats()
    assert utility.evaluate(one_class, stats) == 0.5
    assert stats.n_failed == 0


# --------------------------------------------------------------------------
# failures and warnings


def test_nan_scores_count_as_failures_and_score_the_default() -> None:
    data = _classification()
    utility = dv.ModelUtility(
        FlakyClassifier(), data, scoring=nan_for_small_models, default=-7.0
    )
    stats = EvalStats()
    small, large = np.arange(4), np.arange(40)
    assert utility.evaluate(small, stats) == -7.0
    assert 0 < utility.evaluate(large, stats) < 1
    assert (stats.n_evaluations, stats.n_failed) == (2, 1)
    assert "nan" in (stats.first_failure or "")

    game = dv.FunctionUtility(nan_for_odd, 5, default=-1.0)
    game_stats = EvalStats()
    assert [game.evaluate(np.arange(k), game_stats) for k in range(4)] == [
        0.0,
        -1.0,
        2.0,
        -1.0,
    ]
    assert game_stats.n_failed == 2


def test_fit_warnings_are_counted_not_printed(recwarn: pytest.WarningsRecorder) -> None:
    utility = dv.ModelUtility(LogisticRegression(max_iter=1), _classification())
    stats = EvalStats()
    with utility.context():
        for subset in _random_subsets(utility.n, 30, seed=5):
            utility.evaluate(np.union1d(subset, [0, 1, 2, 3, 4, 5]), stats)
    kinds = [k for k in stats.warnings if k.startswith("ConvergenceWarning")]
    assert len(kinds) == 1 and stats.warnings[kinds[0]] == 30
    assert not [w for w in recwarn if issubclass(w.category, ConvergenceWarning)]


def test_warnings_are_counted_per_thread_when_threads_evaluate_at_once(
    recwarn: pytest.WarningsRecorder,
) -> None:
    """A worker with several threads: no warning lost, leaked or miscounted."""
    utility = dv.ModelUtility(LogisticRegression(max_iter=1), _classification())
    show, filters = warnings.showwarning, list(warnings.filters)
    stats = [EvalStats() for _ in range(4)]

    def work(own: EvalStats) -> None:
        with threadpool_limits(limits=1), utility.context():
            for _ in range(25):
                utility.evaluate(np.arange(10, 60), own)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(work, stats))
    assert [sum(s.warnings.values()) for s in stats] == [25] * 4
    assert warnings.showwarning is show and warnings.filters == filters
    assert not [w for w in recwarn if issubclass(w.category, ConvergenceWarning)]


def test_a_model_that_fails_on_some_coalitions_completes_on_the_cluster(
    client: Client,
) -> None:
    data = _classification(n_train=8)
    valuation = dv.ShapleyValuation(
        dv.ModelUtility(FlakyClassifier(), data), stop=dv.MaxSamples(4), seed=0
    )
    result = valuation.fit(client=client).result_
    assert result is not None and result.status == "completed"
    # every permutation fails at prefixes of 3 and 6 rows; u(N) has 8 rows
    assert result.n_evaluations == 2 + 4 * 7
    assert result.n_failed == 4 * 2
    assert "FlakyClassifier refuses" in result.metadata["first_failure"]
    # counted by kind, so a long run reports one line per kind of failure
    assert result.metadata["failures"] == {
        "ValueError: FlakyClassifier refuses 3 rows": 4,
        "ValueError: FlakyClassifier refuses 6 rows": 4,
    }
    assert np.isfinite(result.values).all()


def test_fit_warnings_on_the_cluster_are_summarised_once(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    data = _classification(n_train=10)
    utility = dv.ModelUtility(LogisticRegression(max_iter=1), data)
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(4), seed=0)
    with caplog.at_level(logging.WARNING, logger="daskval"):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            result = valuation.fit(client=client).result_
    assert result is not None
    counts = {
        k: v
        for k, v in result.metadata["warnings"].items()
        if k.startswith("ConvergenceWarning")
    }
    assert len(counts) == 1
    fits = result.n_evaluations - 1 - result.n_failed  # u(empty) fits nothing
    assert list(counts.values()) == [fits] and fits > 10
    assert not [w for w in seen if issubclass(w.category, ConvergenceWarning)]
    summaries = [r for r in caplog.records if "ConvergenceWarning" in r.getMessage()]
    assert len(summaries) == 1


# --------------------------------------------------------------------------
# pandas, groups, regression


def _frame_data() -> tuple[dv.Dataset, tuple[str, ...], tuple[str, ...]]:
    rng = np.random.default_rng(0)
    n = 40
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, size=n).astype("int32"),
            "score": rng.normal(size=n),
            "city": pd.Categorical(rng.choice(["oslo", "rome", "lima"], size=n)),
        },
        index=rng.permutation(n) + 1000,  # a non-default index must not matter
    )
    y = pd.Series((frame["score"] > 0).astype(int).to_numpy(), name="label")
    groups = np.repeat(["g0", "g1", "g2", "g3", "g4"], 6)
    data = dv.Dataset(frame[:30], y[:30], frame[30:], y[30:], groups=groups)
    return data, tuple(frame.columns), tuple(str(t) for t in frame.dtypes)


def test_pandas_columns_and_dtypes_reach_the_model() -> None:
    data, columns, dtypes = _frame_data()
    checker = dv.ModelUtility(ColumnCheckingClassifier(columns, dtypes), data)
    pipeline = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["city"]),
            (StandardScaler(), ["age", "score"]),
        ),
        LogisticRegression(),
    )
    by_name = dv.ModelUtility(pipeline, data)
    stats = EvalStats()
    with checker.context():
        for subset in ([0], [1, 3], [0, 1, 2, 3, 4]):
            checker.evaluate(np.array(subset), stats)
            by_name.evaluate(np.array(subset), stats)
    assert stats.n_failed == 0, stats.first_failure


def test_groups_are_the_players() -> None:
    data, _, _ = _frame_data()
    assert data.n == 5 and list(data.names) == ["g0", "g1", "g2", "g3", "g4"]
    model = make_pipeline(
        make_column_transformer((StandardScaler(), ["age", "score"])),
        LogisticRegression(),
    )
    utility = dv.ModelUtility(model, data, scoring="neg_log_loss")
    assert utility.n == 5
    rows = np.r_[6:12, 18:24]  # groups g1 and g3
    fitted = clone(model).fit(data.x_train.iloc[rows], data.y_train[rows])
    expected = get_scorer("neg_log_loss")(fitted, data.x_test, data.y_test)
    assert utility([3, 1]) == utility([1, 3]) == expected


def test_pandas_and_groups_on_the_cluster(client: Client) -> None:
    data, columns, dtypes = _frame_data()
    utility = dv.ModelUtility(ColumnCheckingClassifier(columns, dtypes), data)
    result = dv.LOOValuation(utility).fit(client=client).result_
    assert result is not None
    assert result.n_failed == 0, result.metadata["first_failure"]
    assert list(result.names) == ["g0", "g1", "g2", "g3", "g4"]
    assert result.n_evaluations == 6


def test_regression_r2_end_to_end_is_efficient(client: Client) -> None:
    data = _diabetes(40)
    utility = dv.ModelUtility(Ridge(alpha=0.1), data, scoring="r2")
    result = (
        dv.ShapleyValuation(utility, stop=dv.MaxSamples(10), seed=1)
        .fit(client=client)
        .result_
    )
    assert result is not None and result.n_failed == 0
    total = utility(np.arange(40)) - utility.default
    assert total > 0.3
    assert result.values.sum() == pytest.approx(total, abs=1e-9)


def test_regression_tmc_truncates_when_the_full_score_is_negative(
    client: Client,
) -> None:
    data = _diabetes(30)
    utility = dv.ModelUtility(Ridge(alpha=0.01), data, "neg_mean_squared_error")
    u_full = utility(np.arange(30))
    assert u_full < 0
    sampler = dv.PermutationSampler(truncation=dv.RelativeTruncation(rtol=0.1))
    result = (
        dv.ShapleyValuation(utility, sampler=sampler, stop=dv.MaxSamples(8), seed=0)
        .fit(client=client)
        .result_
    )
    assert result is not None and result.n_failed == 0
    assert result.n_samples == 8
    assert result.n_evaluations < 2 + 8 * 29  # some permutations were cut short
    assert np.isfinite(result.values).all()


# --------------------------------------------------------------------------
# fingerprints


FINGERPRINT_SCRIPT = """
import json
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
import daskval as dv

rng = np.random.default_rng(0)
x = rng.normal(size=(30, 4))
y = (x[:, 0] > 0).astype(int)
frame = pd.DataFrame(x, columns=list("abcd")).assign(
    c=lambda f: f["c"].astype("float32"), d=pd.Categorical(y)
)
numeric = dv.Dataset(x, y, x, y)
grouped = dv.Dataset(frame, y, frame, y, groups=np.arange(30) % 5)


def constant_scorer(value):
    def score(estimator, x, y):
        return value
    return score


fingerprints = {
    "pipeline": dv.ModelUtility(
        make_pipeline(StandardScaler(), LogisticRegression(C=0.3)), numeric
    ).fingerprint(),
    "pandas-groups": dv.ModelUtility(
        LogisticRegression(), grouped, scoring="neg_log_loss"
    ).fingerprint(),
    "lambda-step": dv.ModelUtility(
        make_pipeline(FunctionTransformer(lambda z: z + 1), LogisticRegression()),
        numeric,
    ).fingerprint(),
    "closure-scorer": dv.ModelUtility(
        LogisticRegression(), numeric, scoring=constant_scorer(0.5)
    ).fingerprint(),
    "function": dv.FunctionUtility(np.sum, 7).fingerprint(),
    "dataset": grouped.fingerprint(),
}
print(json.dumps(fingerprints))
"""


def test_fingerprints_are_stable_across_processes() -> None:
    """The same script, here and in a fresh interpreter with another hash seed."""
    out = subprocess.run(
        [sys.executable, "-c", FINGERPRINT_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    there = json.loads(out.stdout.strip().splitlines()[-1])
    namespace: dict[str, Any] = {"__name__": "__main__", "__package__": None}
    # compiled as `python -c` does: no __file__, no inherited __future__ flags
    exec(compile(FINGERPRINT_SCRIPT, "<string>", "exec", dont_inherit=True), namespace)
    assert there == namespace["fingerprints"]
    assert len(set(there.values())) == len(there)


def test_fingerprints_change_with_data_model_and_scorer() -> None:
    data = _classification()
    x, y = data.x_train.copy(), data.y_train.copy()
    x[0, 0] += 1e-9
    nudged = dv.Dataset(x, y, data.x_test, data.y_test)

    def make(**changes: Any) -> str:
        args: dict[str, Any] = {
            "model": make_pipeline(StandardScaler(), LogisticRegression()),
            "data": data,
            "scoring": "accuracy",
        }
        args.update(changes)
        return dv.ModelUtility(**args).fingerprint()

    base = make()
    variants = {
        "same": make(),
        "data": make(data=nudged),
        "param": make(model=make_pipeline(StandardScaler(), LogisticRegression(C=2))),
        "step": make(model=make_pipeline(LogisticRegression())),
        "scorer": make(scoring="balanced_accuracy"),
        "callable": make(scoring=nan_for_small_models),
        "default": make(default=0.5),
        "seed": make(seed=1),
    }
    assert variants.pop("same") == base
    assert len({base, *variants.values()}) == len(variants) + 1
    assert dv.FunctionUtility(additive, 7).fingerprint() != (
        dv.FunctionUtility(nan_for_odd, 7).fingerprint()
    )


def test_fingerprints_tell_lambdas_and_closures_apart() -> None:
    """Same name, different code: the engine shares broadcasts by fingerprint."""
    from sklearn.preprocessing import FunctionTransformer

    data = _classification()

    def with_step(step: Any) -> str:
        model = make_pipeline(FunctionTransformer(step), LogisticRegression())
        return dv.ModelUtility(model, data).fingerprint()

    assert with_step(lambda z: z) != with_step(lambda z: 2 * z)
    assert with_step(np.tanh) == with_step(np.tanh) != with_step(np.sinh)
    by_scorer = {
        dv.ModelUtility(LogisticRegression(), data, scoring=s).fingerprint()
        for s in (constant_scorer(1.0), constant_scorer(2.0), lambda e, x, y: 1.0)
    }
    assert len(by_scorer) == 3


# --------------------------------------------------------------------------
# a utility values what it was given, whatever the caller changes afterwards


def _loo_here(utility: dv.ModelUtility) -> np.ndarray:
    """Leave-one-out values evaluated in this process: u(N) - u(N minus i)."""
    everyone = np.arange(utility.n)
    full = utility(everyone)
    return np.array([full - utility(np.delete(everyone, i)) for i in everyone])


def _loo_there(utility: dv.ModelUtility, client: Client, memo: bool) -> np.ndarray:
    valuation = dv.LOOValuation(utility).fit(client=client, memo=memo)
    assert valuation.result_ is not None
    return np.asarray(valuation.result_.values)


@pytest.mark.parametrize("memo", [True, False])
def test_set_params_after_building_a_utility_changes_nothing(
    client: Client, memo: bool
) -> None:
    data = dv.Dataset(*_stale_arrays())
    model = LogisticRegression(C=1.0)
    before = dv.ModelUtility(model, data)
    model.set_params(C=0.001)  # after the utility was built
    genuine = dv.ModelUtility(LogisticRegression(C=0.001), data)
    assert before.fingerprint() != genuine.fingerprint()
    np.testing.assert_allclose(
        _loo_there(before, client, memo),
        _loo_here(dv.ModelUtility(LogisticRegression(C=1.0), data)),
    )
    np.testing.assert_allclose(_loo_there(genuine, client, memo), _loo_here(genuine))


@pytest.mark.parametrize("memo", [True, False])
def test_changing_the_callers_arrays_in_place_changes_nothing(
    client: Client, memo: bool
) -> None:
    x, y, x_test, y_test = _stale_arrays()
    data = dv.Dataset(x, y, x_test, y_test)
    truth = _loo_here(
        dv.ModelUtility(
            LogisticRegression(),
            dv.Dataset(x.copy(), y.copy(), x_test.copy(), y_test.copy()),
        )
    )
    first = _loo_there(dv.ModelUtility(LogisticRegression(), data), client, memo)
    y[:] = 1 - y  # the caller flips its labels in place
    y_test[:] = 1 - y_test
    again = dv.ModelUtility(LogisticRegression(), data)
    flipped = dv.ModelUtility(LogisticRegression(), dv.Dataset(x, y, x_test, y_test))
    np.testing.assert_allclose(first, truth)
    np.testing.assert_allclose(_loo_there(again, client, memo), truth)
    np.testing.assert_allclose(_loo_here(again), truth)
    np.testing.assert_allclose(_loo_there(flipped, client, memo), _loo_here(flipped))


def _stale_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A small classification problem whose values depend on C and labels,
    drawn afresh per test (the tests change them in place)."""
    x, y = make_classification(
        n_samples=40, n_features=4, n_informative=3, n_redundant=0, random_state=7
    )
    return x[:16].copy(), y[:16].copy(), x[16:].copy(), y[16:].copy()
