"""The KNN-Shapley family beyond the hard-label game, against brute-force
enumeration of each game's utility on small training sets (no Dask)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from distributed import Client
from helpers.enumeration import brute_force_shapley
from test_knn import in_process, plain_distance, small_problem

import daskval as dv
from daskval.methods.knn import (
    KNNRegressionShapleyValuation,
    KNNShapleyValuation,
    KNNUtility,
    PrecomputedKNNShapleyValuation,
    SoftLabelKNNShapleyValuation,
    ThresholdKNNShapleyValuation,
)


def plain_soft_utility(data: dv.Dataset, k: int, metric: str, rows: list[int]) -> float:
    """The soft-label KNN utility by plain Python: matches among the
    min(K, |S|) nearest, divided by min(K, |S|)."""
    if not rows:
        return 0.0
    x, y = np.asarray(data.x_train, float), np.asarray(data.y_train)
    total = 0.0
    for t, label in zip(
        np.asarray(data.x_test, float), np.asarray(data.y_test), strict=True
    ):
        ranked = sorted(rows, key=lambda r: (plain_distance(x[r], t, metric), r))
        nearest = ranked[:k]
        total += sum(y[r] == label for r in nearest) / len(nearest)
    return total / len(data.y_test)


@pytest.mark.parametrize(
    ("n", "k", "classes", "metric", "integer", "seed"),
    [
        (1, 3, 2, "euclidean", True, 0),  # one point
        (2, 1, 2, "euclidean", True, 1),
        (6, 1, 2, "euclidean", True, 2),
        (8, 3, 2, "euclidean", True, 3),
        (9, 3, 3, "euclidean", True, 4),  # multi-class, ties
        (7, 12, 2, "euclidean", True, 5),  # k > n
        (8, 8, 2, "euclidean", True, 6),  # k = n
        (10, 2, 4, "manhattan", True, 7),
        (8, 4, 3, "cosine", False, 8),
        (9, 5, 2, "sqeuclidean", False, 9),
    ],
)
def test_soft_label_equals_brute_force_enumeration(
    n: int, k: int, classes: int, metric: str, integer: bool, seed: int
) -> None:
    data = small_problem(n, 5, classes, seed, integer)
    valuation = SoftLabelKNNShapleyValuation(data, k, metric=metric)
    utility = valuation.utility
    for size in range(n + 1):
        for rows in itertools.islice(itertools.combinations(range(n), size), 12):
            assert utility(list(rows)) == pytest.approx(
                plain_soft_utility(data, k, metric, list(rows)), abs=1e-15
            )
    values, _ = in_process(valuation)  # type: ignore[arg-type]
    np.testing.assert_allclose(values, brute_force_shapley(utility), rtol=0, atol=1e-12)
    assert values.sum() == pytest.approx(utility(np.arange(n)), abs=1e-12)


def test_soft_label_is_another_game_than_the_hard_one() -> None:
    data = small_problem(9, 4, 2, 11)
    hard = dv.KNNShapleyValuation(data, 3)
    soft = SoftLabelKNNShapleyValuation(data, 3)
    assert hard.utility.fingerprint() != soft.utility.fingerprint()
    assert soft.describe()["labels"] == "soft"
    assert not np.allclose(in_process(hard)[0], in_process(soft)[0])  # type: ignore[arg-type]


def sharded_in_process(valuation: KNNShapleyValuation, rows: int) -> np.ndarray:
    """The values of the sharded path, its shards and join run here."""
    n_test = valuation.utility.n_test
    sharding = valuation.utility.split(rows)
    core = sharding.core
    parts = [core.shard_part(shard, 0, n_test) for shard in sharding.shards]  # type: ignore[attr-defined]
    moments = core.with_parts(0, n_test, parts).shapley_moments(0, n_test)  # type: ignore[attr-defined]
    return moments.mean


@pytest.mark.parametrize(
    "method",
    [
        SoftLabelKNNShapleyValuation,
        KNNRegressionShapleyValuation,
        ThresholdKNNShapleyValuation,
    ],
)
def test_shards_equal_the_broadcast_path(method: type[KNNShapleyValuation]) -> None:
    data = regression_problem(40, 7, 12, integer=False)
    if method is not KNNRegressionShapleyValuation:
        data = small_problem(40, 7, 3, 12, integer=False)
    valuation = method(data, 1.5 if method is ThresholdKNNShapleyValuation else 4)
    np.testing.assert_allclose(
        sharded_in_process(valuation, 9), in_process(valuation)[0], rtol=0, atol=1e-14
    )


def plain_regression_utility(
    data: dv.Dataset, k: int, metric: str, rows: list[int]
) -> float:
    """Minus the mean squared error of the mean target of the K nearest
    (divided by K when fewer), by plain Python."""
    x, y = np.asarray(data.x_train, float), np.asarray(data.y_train, float)
    total = 0.0
    for t, target in zip(
        np.asarray(data.x_test, float), np.asarray(data.y_test, float), strict=True
    ):
        ranked = sorted(rows, key=lambda r: (plain_distance(x[r], t, metric), r))
        total += (sum(y[r] for r in ranked[:k]) / k - target) ** 2
    return -total / len(data.y_test)


def regression_problem(
    n: int, n_test: int, seed: int, integer: bool = True
) -> dv.Dataset:
    """Features as in small_problem, normal targets."""
    rng = np.random.default_rng(seed)
    classes = small_problem(n, n_test, 2, seed, integer)
    return dv.Dataset(
        classes.x_train, rng.normal(size=n), classes.x_test, rng.normal(size=n_test)
    )


@pytest.mark.parametrize(
    ("n", "k", "metric", "integer", "seed"),
    [
        (1, 3, "euclidean", True, 0),
        (2, 1, "euclidean", True, 1),
        (3, 2, "euclidean", True, 2),
        (6, 1, "euclidean", True, 3),
        (8, 3, "euclidean", True, 4),  # ties
        (7, 12, "euclidean", True, 5),  # k > n
        (8, 8, "euclidean", True, 6),
        (10, 2, "manhattan", True, 7),
        (8, 4, "cosine", False, 8),
        (9, 5, "sqeuclidean", False, 9),
    ],
)
def test_regression_equals_brute_force_enumeration(
    n: int, k: int, metric: str, integer: bool, seed: int
) -> None:
    data = regression_problem(n, 5, seed, integer)
    valuation = KNNRegressionShapleyValuation(data, k, metric=metric)
    utility = valuation.utility
    for size in range(n + 1):
        for rows in itertools.islice(itertools.combinations(range(n), size), 12):
            assert utility(list(rows)) == pytest.approx(
                plain_regression_utility(data, k, metric, list(rows)), abs=1e-14
            )
    values, _ = in_process(valuation)  # type: ignore[arg-type]
    np.testing.assert_allclose(values, brute_force_shapley(utility), rtol=0, atol=1e-12)
    # efficiency: u(empty) = -mean(y_t^2)
    gain = utility(np.arange(n)) - utility(np.array([], dtype=int))
    assert values.sum() == pytest.approx(gain, abs=1e-12)


def test_regression_targets_are_refused_by_the_classifier_game() -> None:
    data = regression_problem(6, 3, 0)
    with pytest.raises(ValueError, match="KNNRegressionShapleyValuation"):
        KNNShapleyValuation(data, 2)
    with pytest.raises(ValueError, match="soft labels"):
        KNNUtility(data, 2, soft=True, regression=True)
    text = dv.Dataset(data.x_train, np.array(list("abcdef")), data.x_test, data.y_test)
    with pytest.raises(TypeError, match="numeric targets"):
        KNNRegressionShapleyValuation(text, 2)
    described = KNNRegressionShapleyValuation(data, 2).describe()
    assert described["target"] == "regression"


def plain_threshold_utility(
    data: dv.Dataset, tau: float, metric: str, classes: int, rows: list[int]
) -> float:
    """The threshold-KNN utility by plain Python (euclidean: squared
    distance against tau^2)."""
    x, y = np.asarray(data.x_train, float), np.asarray(data.y_train)
    radius = tau * tau if metric == "euclidean" else tau
    total = 0.0
    for t, label in zip(
        np.asarray(data.x_test, float), np.asarray(data.y_test), strict=True
    ):
        near = [r for r in rows if plain_distance(x[r], t, metric) <= radius]
        total += sum(y[r] == label for r in near) / len(near) if near else 1 / classes
    return total / len(data.y_test)


@pytest.mark.parametrize(
    ("n", "tau", "classes", "metric", "integer", "seed"),
    [
        (1, 2.0, 2, "euclidean", True, 0),
        (6, 1.0, 2, "euclidean", True, 1),  # points exactly at the radius
        (9, 2.0, 3, "euclidean", True, 2),
        (8, 0.0, 2, "euclidean", True, 3),  # only coincident points vote
        (10, 2.0, 4, "manhattan", True, 4),
        (8, 0.3, 3, "cosine", False, 5),
        (9, 2.0, 2, "sqeuclidean", False, 6),
        (9, 10.0, 2, "euclidean", False, 7),  # everyone votes
    ],
)
def test_threshold_equals_brute_force_enumeration(
    n: int, tau: float, classes: int, metric: str, integer: bool, seed: int
) -> None:
    data = small_problem(n, 5, classes, seed, integer)
    valuation = ThresholdKNNShapleyValuation(data, tau, metric=metric)
    utility = valuation.utility
    c = utility.n_classes
    for size in range(n + 1):
        for rows in itertools.islice(itertools.combinations(range(n), size), 12):
            assert utility(list(rows)) == pytest.approx(
                plain_threshold_utility(data, tau, metric, c, list(rows)), abs=1e-15
            )
    values, _ = in_process(valuation)
    np.testing.assert_allclose(values, brute_force_shapley(utility), rtol=0, atol=1e-12)
    assert values.sum() == pytest.approx(utility(np.arange(n)) - 1 / c, abs=1e-12)


def test_threshold_decides_the_radius_by_the_careful_distance() -> None:
    """Points placed at the radius up to rounding: the fast distances cannot
    tell, the careful ones decide, as in the oracle."""
    rng = np.random.default_rng(3)
    x_test = rng.normal(size=(4, 3)) * 100
    directions = rng.normal(size=(12, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    x_train = x_test[rng.integers(0, 4, 12)] + 0.7 * directions
    data = dv.Dataset(x_train, rng.integers(0, 2, 12), x_test, rng.integers(0, 2, 4))
    valuation = ThresholdKNNShapleyValuation(data, 0.7, n_classes=3)
    utility = valuation.utility
    dist = np.empty((4, 12))
    tolerance = utility._fast_distances(0, 4, dist)
    assert (np.abs(dist - utility.radius) <= tolerance[:, None]).any()
    values, _ = in_process(valuation)
    np.testing.assert_allclose(values, brute_force_shapley(utility), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="n_classes"):
        ThresholdKNNShapleyValuation(data, 0.7, n_classes=1)
    with pytest.raises(ValueError, match="threshold"):
        ThresholdKNNShapleyValuation(data, -1.0)


@pytest.mark.parametrize("groups", [False, True])
@pytest.mark.parametrize(
    "method",
    [
        SoftLabelKNNShapleyValuation,
        KNNRegressionShapleyValuation,
        ThresholdKNNShapleyValuation,
    ],
)
def test_on_a_cluster_broadcast_and_sharded_equal_in_process(
    client: Client, method: type[KNNShapleyValuation], groups: bool
) -> None:
    base = (
        regression_problem(300, 11, 21)
        if method is KNNRegressionShapleyValuation
        else small_problem(300, 11, 3, 21)
    )
    labels = np.arange(300) % 7 if groups else None
    data = dv.Dataset(
        base.x_train, base.y_train, base.x_test, base.y_test, groups=labels
    )
    parameter = 1.5 if method is ThresholdKNNShapleyValuation else 4
    expected, _ = in_process(method(data, parameter))
    broadcast = method(data, parameter).fit(client=client).result_
    sharded = method(data, parameter, train_chunk_size=70).fit(client=client).result_
    assert broadcast is not None and sharded is not None
    assert sharded.metadata["sharding"]["shards"] == 5
    np.testing.assert_allclose(broadcast.values, expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(sharded.values, expected, rtol=0, atol=1e-14)


def careful_distances(data: dv.Dataset) -> np.ndarray:
    """(n_test, n_train) squared euclidean distances, feature by feature."""
    x, t = np.asarray(data.x_train, float), np.asarray(data.x_test, float)
    return ((t[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)


@pytest.mark.parametrize(
    ("soft", "regression", "k", "seed"),
    [
        (False, False, 3, 0),
        (True, False, 2, 1),
        (False, True, 3, 2),
        (False, False, 9, 3),
    ],
)
def test_precomputed_equals_brute_force_and_the_feature_path(
    soft: bool, regression: bool, k: int, seed: int
) -> None:
    data = (
        regression_problem(8, 5, seed) if regression else small_problem(8, 5, 3, seed)
    )
    valuation = PrecomputedKNNShapleyValuation(
        careful_distances(data),
        data.y_train,
        data.y_test,
        k,
        soft=soft,
        regression=regression,
    )
    values, _ = in_process(valuation)  # type: ignore[arg-type]
    utility = valuation.utility
    np.testing.assert_allclose(values, brute_force_shapley(utility), rtol=0, atol=1e-12)
    method = (
        KNNRegressionShapleyValuation
        if regression
        else SoftLabelKNNShapleyValuation
        if soft
        else KNNShapleyValuation
    )
    np.testing.assert_allclose(
        values, in_process(method(data, k))[0], rtol=0, atol=1e-12
    )


def test_a_sparse_neighbour_graph_ranks_the_missing_points_last() -> None:
    from scipy import sparse

    data = small_problem(9, 4, 2, 5, integer=False)
    dense = careful_distances(data)
    kept = np.argsort(dense, axis=1)[:, :3]
    graph = sparse.lil_matrix(dense.shape)
    for t in range(4):
        graph[t, kept[t]] = dense[t, kept[t]]
    valuation = PrecomputedKNNShapleyValuation(
        graph.tocsr(), data.y_train, data.y_test, 2
    )
    values, _ = in_process(valuation)  # type: ignore[arg-type]
    np.testing.assert_allclose(
        values, brute_force_shapley(valuation.utility), rtol=0, atol=1e-12
    )
    with pytest.raises(ValueError, match=">= 0"):
        PrecomputedKNNShapleyValuation(-dense, data.y_train, data.y_test, 2)
    with pytest.raises(ValueError, match="training"):
        PrecomputedKNNShapleyValuation(dense[:, 1:], data.y_train, data.y_test, 2)
