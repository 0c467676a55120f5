"""Data-OOB against a plain loop over the same bootstraps, noisy-label
detection, determinism across workers, failures, groups and bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from distributed import Client
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import daskval as dv
from daskval.exceptions import ValuationError
from daskval.methods.oob import DataOOBValuation
from daskval.plan import evaluate_range

SEED = 7

# --------------------------------------------------------------------------
# helpers (module level: workers import them)


def neg_abs_error(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return -np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float))


def cancer(n_train: int, flip: float = 0.0, seed: int = 0) -> tuple[dv.Dataset, Any]:
    """Breast-cancer rows (shuffled), with a fraction of training labels flipped;
    also returns the mask of flipped rows."""
    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    y_train = y[:n_train].copy()
    flipped = np.zeros(n_train, dtype=bool)
    flipped[rng.choice(n_train, int(flip * n_train), replace=False)] = True
    y_train[flipped] = 1 - y_train[flipped]
    data = dv.Dataset(x[:n_train], y_train, x[n_train:], y[n_train:])
    return data, flipped


def diabetes(n_train: int) -> dv.Dataset:
    x, y = load_diabetes(return_X_y=True)
    return dv.Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def in_process(valuation: DataOOBValuation) -> tuple[np.ndarray, ...]:
    """Values, stderr, counts and failures of every bootstrap, run here."""
    plan = valuation.make_plan()
    partial = evaluate_range(plan, valuation.utility, 0, valuation.n_estimators)
    values, stderr, counts = plan.estimate(partial.moments)
    return values, stderr, counts, np.array(partial.eval_stats.n_failed)


def on_cluster(
    valuation: DataOOBValuation, client: Client, **fit: Any
) -> dv.ValuationResult:
    result = valuation.fit(client=client, **fit).result_
    assert result is not None
    assert result.status == "completed"
    assert result.n_samples == valuation.n_estimators
    assert result.n_evaluations == valuation.n_estimators  # one fit per bootstrap
    return result


def reference(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_estimators: int,
    size: int,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    groups: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Data-OOB by its definition: a plain loop over the documented bootstraps.

    Bootstrap j draws ``size`` players with replacement from
    ``default_rng(SeedSequence(seed, spawn_key=(j,)))``, whose next integer
    in [0, 2**31) is the model's random_state; the model is fitted on the
    drawn rows, repeated, in row order, and scores the players not drawn.
    With groups, a drawn group brings all its rows, and a group's score is
    the mean of its rows' scores.
    """
    units = [np.array([i]) for i in range(len(y))] if groups is None else groups
    n = len(units)
    scores: list[list[float]] = [[] for _ in range(n)]
    for j in range(n_estimators):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(j,)))
        drawn = rng.integers(0, n, size=size)
        model_seed = int(rng.integers(2**31))
        rows = np.sort(np.concatenate([units[u] for u in drawn]))
        fitted = clone(model)
        if "random_state" in fitted.get_params():
            fitted.set_params(random_state=model_seed)
        fitted.fit(x[rows], y[rows])
        for u in sorted(set(range(n)) - set(drawn.tolist())):
            rows_u = units[u]
            per_row = score(y[rows_u], fitted.predict(x[rows_u]))
            scores[u].append(float(np.mean(per_row)))
    values = np.array([np.mean(s) if s else np.nan for s in scores])
    counts = np.array([len(s) for s in scores])
    stderr = np.array(
        [np.std(s, ddof=1) / np.sqrt(len(s)) if len(s) > 1 else np.inf for s in scores]
    )
    return values, stderr, counts


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return (y_true == y_pred).astype(float)


def neg_squared(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return -((y_true - y_pred) ** 2)


# --------------------------------------------------------------------------
# the definition


def test_equals_a_plain_loop_over_the_same_bootstraps(client: Client) -> None:
    data, _ = cancer(120, flip=0.1)
    model = DecisionTreeClassifier(max_features="sqrt", max_depth=4, random_state=0)
    valuation = DataOOBValuation(
        data, model, n_estimators=40, max_samples=0.8, seed=SEED, weighting="repeat"
    )
    result = on_cluster(valuation, client, samples_per_task=3)
    values, stderr, counts = reference(
        model,
        data.x_train,
        data.y_train,
        seed=SEED,
        n_estimators=40,
        size=96,
        score=accuracy,
    )
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_allclose(result.values, values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.stderr, stderr, rtol=0, atol=1e-12)
    assert result.n_failed == 0
    assert list(result.names) == list(data.names)
    assert result.metadata["method"] == "data_oob"
    assert result.metadata["plan"]["bootstrap_size"] == 96


def test_sample_weight_fits_equal_repeated_rows_for_classification_trees() -> None:
    data, _ = cancer(150, flip=0.2)
    model = DecisionTreeClassifier(max_features="sqrt", random_state=0)
    repeat = DataOOBValuation(data, model, n_estimators=25, seed=1, weighting="repeat")
    weighted = DataOOBValuation(data, model, n_estimators=25, seed=1)
    assert weighted.weighting == "sample_weight"  # "auto": the tree accepts weights
    for got, want in zip(in_process(weighted), in_process(repeat), strict=True):
        np.testing.assert_array_equal(got, want)


def test_regressors_and_a_custom_score_equal_the_loop() -> None:
    data = diabetes(80)
    x, y = data.x_train, data.y_train
    for model, score, custom in [
        (LinearRegression(), neg_squared, None),
        (DecisionTreeRegressor(max_depth=3, random_state=0), neg_abs_error, True),
    ]:
        valuation = DataOOBValuation(
            data,
            model,
            n_estimators=30,
            seed=SEED,
            weighting="repeat",
            score=neg_abs_error if custom else None,
        )
        values, stderr, counts, failed = in_process(valuation)
        want = reference(model, x, y, seed=SEED, n_estimators=30, size=80, score=score)
        np.testing.assert_array_equal(counts, want[2])
        # squared errors of ~1e4: equal to rounding (1e-12 relative)
        np.testing.assert_allclose(values, want[0], rtol=1e-12)
        np.testing.assert_allclose(stderr, want[1], rtol=1e-9)
        assert failed == 0
        assert np.nanmax(values) <= 0.0


def test_custom_score_on_the_cluster(client: Client) -> None:
    data = diabetes(60)
    valuation = DataOOBValuation(
        data,
        LinearRegression(),
        n_estimators=12,
        seed=3,
        score=lambda t, p: -(np.abs(t - p) ** 1.5),  # travels by value
    )
    result = on_cluster(valuation, client)
    want = reference(
        LinearRegression(),
        data.x_train,
        data.y_train,
        seed=3,
        n_estimators=12,
        size=60,
        score=lambda t, p: -(np.abs(t - p) ** 1.5),
    )
    # LinearRegression accepts sample_weight: the weighted least-squares
    # optimum equals the repeated-rows one up to rounding
    np.testing.assert_array_equal(result.counts, want[2])
    np.testing.assert_allclose(result.values, want[0], rtol=1e-8)


def test_pandas_inputs_give_the_values_of_arrays() -> None:
    import pandas as pd

    data, _ = cancer(80, flip=0.2)
    columns = [f"f{i}" for i in range(data.x_train.shape[1])]
    frames = dv.Dataset(
        pd.DataFrame(data.x_train, columns=columns),
        pd.Series(data.y_train),
        pd.DataFrame(data.x_test, columns=columns),
        pd.Series(data.y_test),
    )
    model = DecisionTreeClassifier(max_features="sqrt", random_state=0)
    arrays = in_process(DataOOBValuation(data, model, n_estimators=10, seed=2))
    tables = in_process(DataOOBValuation(frames, model, n_estimators=10, seed=2))
    for got, want in zip(tables, arrays, strict=True):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------
# what it is for


def test_flipped_labels_get_low_values(client: Client) -> None:
    data, flipped = cancer(400, flip=0.2)
    valuation = DataOOBValuation(
        data, DecisionTreeClassifier(random_state=0), n_estimators=200, seed=SEED
    )
    result = on_cluster(valuation, client)
    auroc = roc_auc_score(flipped, -result.values)
    # what a random valuation scores on the same labels
    rng = np.random.default_rng(0)
    random_auroc = np.mean(
        [roc_auc_score(flipped, rng.random(len(flipped))) for _ in range(200)]
    )
    print(f"Data-OOB AUROC {auroc:.3f}; random valuation {random_auroc:.3f}")
    assert abs(random_auroc - 0.5) < 0.02
    assert auroc >= 0.9
    assert np.all(result.counts > 0)
    assert np.all(np.isfinite(result.stderr))


def test_stderr_is_calibrated_over_seeds() -> None:
    # the spread of the values over seeds against the stderr each run reports
    data, _ = cancer(60, flip=0.2)
    model = DecisionTreeClassifier(max_depth=2, random_state=0)
    runs = [
        in_process(DataOOBValuation(data, model, n_estimators=30, seed=seed))
        for seed in range(120)
    ]
    values = np.array([r[0] for r in runs])
    stderr = np.array([r[1] for r in runs])
    assert np.isfinite(values).all() and np.isfinite(stderr).all()
    reported = np.sqrt(np.mean(stderr**2))
    empirical = np.sqrt(np.mean(values.var(axis=0, ddof=1)))
    print(f"stderr calibration: reported / empirical = {reported / empirical:.3f}")
    assert 0.8 <= reported / empirical <= 1.25, (reported, empirical)


# --------------------------------------------------------------------------
# determinism


def test_same_values_in_process_on_one_and_two_workers(
    client: Client, client1: Client
) -> None:
    data, _ = cancer(100, flip=0.2)
    model = DecisionTreeClassifier(max_features="sqrt", random_state=0)

    def make() -> DataOOBValuation:
        return DataOOBValuation(data, model, n_estimators=30, seed=11)

    here = in_process(make())
    results = [
        on_cluster(make(), client1),
        on_cluster(make(), client, samples_per_task=4),
        on_cluster(make(), client, samples_per_task=7, memo=False),
    ]
    for result in results:
        np.testing.assert_array_equal(result.counts, here[2])
        np.testing.assert_allclose(result.values, here[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.stderr, here[1], rtol=0, atol=1e-12)
    other_seed = in_process(DataOOBValuation(data, model, n_estimators=30, seed=12))
    assert not np.array_equal(other_seed[2], here[2])


def test_a_checkpoint_resumes_to_the_same_values(client: Client, tmp_path: Any) -> None:
    data, _ = cancer(60, flip=0.2)
    path = tmp_path / "oob.npz"

    def make() -> DataOOBValuation:
        model = DecisionTreeClassifier(random_state=0)
        return DataOOBValuation(data, model, n_estimators=12, seed=5)

    first = on_cluster(make(), client, checkpoint=path)
    again = make().fit(client=client, resume=path).result_
    assert again is not None
    assert again.n_samples == 12 and again.n_evaluations == 12
    np.testing.assert_array_equal(again.values, first.values)
    np.testing.assert_array_equal(again.counts, first.counts)


# --------------------------------------------------------------------------
# failures and points never out of bag


def test_failing_fits_are_counted_not_fatal(client: Client) -> None:
    # one positive among eight rows: a bootstrap that misses it has one class,
    # and LogisticRegression refuses to fit it
    x = np.arange(16.0).reshape(8, 2)
    y = np.array([0, 0, 0, 1, 0, 0, 0, 0])
    data = dv.Dataset(x, y, x, y)
    n_estimators = 40
    valuation = DataOOBValuation(
        data, LogisticRegression(), n_estimators=n_estimators, seed=SEED
    )
    result = on_cluster(valuation, client)
    expected = 0
    for j in range(n_estimators):
        rng = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(j,)))
        drawn = set(rng.integers(0, 8, size=8).tolist())
        expected += 3 not in drawn  # (then row 3 is out of bag: a fit is tried)
    assert 0 < expected < n_estimators
    assert result.n_failed == expected
    assert any("class" in kind for kind in result.metadata["failures"])
    assert result.metadata["first_failure"]


def test_every_fit_failing_stops_with_the_reason(client: Client) -> None:
    x = np.arange(16.0).reshape(8, 2)
    y = np.zeros(8, dtype=int)
    data = dv.Dataset(x, y, x, y)
    valuation = DataOOBValuation(data, LogisticRegression(), n_estimators=10, seed=0)
    with pytest.raises(ValuationError, match="class"):
        valuation.fit(client=client)


def test_points_never_out_of_bag_get_nan_and_count_zero(client: Client) -> None:
    data, _ = cancer(30)
    valuation = DataOOBValuation(
        data, DecisionTreeClassifier(random_state=0), n_estimators=1, seed=SEED
    )
    result = on_cluster(valuation, client)
    rng = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(0,)))
    drawn = np.zeros(30, dtype=bool)
    drawn[rng.integers(0, 30, size=30)] = True
    np.testing.assert_array_equal(result.counts, (~drawn).astype(int))
    assert np.isnan(result.values[drawn]).all()
    assert np.isfinite(result.values[~drawn]).all()
    assert np.isinf(result.stderr).all()  # one score per point at most


def test_non_finite_scores_are_failures() -> None:
    data = diabetes(40)

    def always_nan_later(t: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.full(len(t), np.nan) if len(t) > 3 else np.zeros(len(t))

    values, _, counts, failed = in_process(
        DataOOBValuation(
            data, LinearRegression(), n_estimators=5, seed=0, score=always_nan_later
        )
    )
    assert failed == 5
    assert (counts == 0).all() and np.isnan(values).all()


def test_model_warnings_are_counted_not_shown() -> None:
    import warnings

    data, _ = cancer(60)
    valuation = DataOOBValuation(
        data, LogisticRegression(max_iter=1), n_estimators=3, seed=0
    )
    plan = valuation.make_plan()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a shown warning would raise here
        partial = evaluate_range(plan, valuation.utility, 0, 3)
    assert partial.eval_stats.n_failed == 0
    assert any("ConvergenceWarning" in k for k in partial.eval_stats.warnings)


def test_the_utility_is_also_a_game() -> None:
    # u(S): the mean per-point score on the scoring split of the model fitted on S
    data, _ = cancer(60)
    model = DecisionTreeClassifier(random_state=0)
    utility = DataOOBValuation(data, model).utility
    fitted = clone(model).set_params(random_state=0).fit(data.x_train, data.y_train)
    want = float(np.mean(fitted.predict(data.x_test) == data.y_test))
    assert utility(np.arange(60)) == want
    assert utility([]) == utility.default == 0.0


# --------------------------------------------------------------------------
# groups


def test_groups_are_bootstrapped_as_units(client: Client) -> None:
    base, _ = cancer(90, flip=0.2)
    labels = np.repeat(np.arange(30), 3)[np.random.default_rng(0).permutation(90)]
    data = dv.Dataset(
        base.x_train, base.y_train, base.x_test, base.y_test, groups=labels
    )
    model = DecisionTreeClassifier(max_depth=3, random_state=0)
    valuation = DataOOBValuation(
        data, model, n_estimators=25, max_samples=20, seed=SEED, weighting="repeat"
    )
    result = on_cluster(valuation, client)
    groups = [np.flatnonzero(labels == g) for g in range(30)]
    values, stderr, counts = reference(
        model,
        base.x_train,
        base.y_train,
        seed=SEED,
        n_estimators=25,
        size=20,
        score=accuracy,
        groups=groups,
    )
    assert len(result.values) == 30
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_allclose(result.values, values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.stderr, stderr, rtol=0, atol=1e-12)
    assert list(result.names) == [str(g) for g in range(30)]
    # counts as weights over the groups' rows: the same trees
    weighted = DataOOBValuation(data, model, n_estimators=25, max_samples=20, seed=SEED)
    np.testing.assert_allclose(
        in_process(weighted)[0], result.values, rtol=0, atol=1e-12
    )


# --------------------------------------------------------------------------
# bad input: refused in __init__, before any cluster work


@pytest.fixture(scope="module")
def small() -> dv.Dataset:
    return cancer(40)[0]


def _raises_in_init(
    error: type[Exception], match: str, data: Any, model: Any, **kwargs: Any
) -> None:
    with pytest.raises(error, match=match):
        DataOOBValuation(data, model, **kwargs)


TREE = DecisionTreeClassifier()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_estimators": 0}, ValueError, "n_estimators"),
        ({"n_estimators": -3}, ValueError, "n_estimators"),
        ({"n_estimators": 2.5}, ValueError, "n_estimators"),
        ({"n_estimators": True}, TypeError, "n_estimators"),
        ({"max_samples": 0}, ValueError, "max_samples"),
        ({"max_samples": 41}, ValueError, "max_samples"),
        ({"max_samples": 0.0}, ValueError, "max_samples"),
        ({"max_samples": 1.5}, ValueError, "max_samples"),
        ({"max_samples": float("nan")}, ValueError, "max_samples"),
        ({"max_samples": "all"}, TypeError, "max_samples"),
        ({"max_samples": True}, TypeError, "max_samples"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.0}, TypeError, "seed"),
        ({"score": "accuracy"}, TypeError, "score must be a callable"),
        ({"score": lambda t, p: float(np.mean(t == p))}, ValueError, "one value"),
        ({"score": lambda t: t}, ValueError, "score.*raised"),
        ({"score": lambda t, p: np.full(len(t), np.inf)}, ValueError, "non-finite"),
        ({"weighting": "bogus"}, ValueError, "weighting"),
        ({"weighting": None}, ValueError, "weighting"),
        ({"stop": 10}, TypeError, "stop"),
    ],
)
def test_bad_arguments(
    small: dv.Dataset, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    _raises_in_init(error, match, small, TREE, **kwargs)


def test_bad_data_and_models(small: dv.Dataset) -> None:
    _raises_in_init(TypeError, "data must be a daskval.Dataset", (1, 2), TREE)
    one = dv.Dataset([[1.0]], [0], [[1.0]], [0])
    _raises_in_init(ValueError, "at least 2 players", one, TREE)
    _raises_in_init(TypeError, "estimator instance", small, DecisionTreeClassifier)
    _raises_in_init(TypeError, "predict", small, PCA())
    _raises_in_init(ValueError, "neither a classifier nor a regressor", small, KMeans())
    _raises_in_init(
        ValueError,
        "sample_weight",
        small,
        KNeighborsClassifier(),
        weighting="sample_weight",
    )
    x = np.random.default_rng(0).normal(size=(30, 3))
    continuous = dv.Dataset(x, x[:, 0], x, x[:, 0])
    _raises_in_init(ValueError, "continuous", continuous, TREE)
    # the fixes work
    DataOOBValuation(small, KMeans(n_init=1), score=lambda t, p: np.zeros(len(t)))
    assert DataOOBValuation(small, KNeighborsClassifier()).weighting == "repeat"
