"""Exact KNN-Shapley against brute force, a plain reference loop, and itself
on 1 and 2 workers.

The brute-force values enumerate all 2^n coalitions of the KNN utility (each
checked against a plain-Python utility written here) and weigh marginals
with the Shapley weights |S|! (n-|S|-1)! / n!; the reference loop is the
recursion of Jia et al. (2019b) written out point by point.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from helpers.enumeration import brute_force_shapley

import daskval as dv
from daskval.methods.knn import (
    KNNShapleyPlan,
    KNNShapleyValuation,
    KNNUtility,
    _order,
    _Workspace,
)
from daskval.plan import evaluate_range


def in_process(valuation: KNNShapleyValuation) -> tuple[np.ndarray, np.ndarray]:
    """Values and standard errors of all test points in one range, no Dask."""
    plan = valuation.make_plan()
    assert isinstance(plan, KNNShapleyPlan)
    partial = evaluate_range(plan, valuation.utility, 0, plan.n_test)
    values, stderr, counts = plan.estimate(partial.moments)
    np.testing.assert_array_equal(counts, plan.n_test)
    assert partial.eval_stats.n_evaluations == plan.n_test
    return values, stderr


def plain_distance(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    if metric in ("euclidean", "sqeuclidean"):
        return float(sum((float(p) - float(q)) ** 2 for p, q in zip(a, b, strict=True)))
    if metric == "manhattan":
        return float(sum(abs(float(p) - float(q)) for p, q in zip(a, b, strict=True)))
    dot = sum(float(p) * float(q) for p, q in zip(a, b, strict=True))
    return 1.0 - dot / (math.sqrt(a @ a) * math.sqrt(b @ b))


def plain_utility(data: dv.Dataset, k: int, metric: str, rows: list[int]) -> float:
    """The KNN utility by plain Python: nearest by (distance, row index)."""
    if not rows:
        return 0.0
    x, y = np.asarray(data.x_train, float), np.asarray(data.y_train)
    total = 0.0
    for t, label in zip(
        np.asarray(data.x_test, float), np.asarray(data.y_test), strict=True
    ):
        ranked = sorted(rows, key=lambda r: (plain_distance(x[r], t, metric), r))
        total += sum(y[r] == label for r in ranked[:k]) / k
    return total / len(data.y_test)


def small_problem(
    n: int, n_test: int, classes: int, seed: int, integer: bool = True
) -> dv.Dataset:
    """Features on a small integer grid (many exact ties) or continuous."""
    rng = np.random.default_rng(seed)
    if integer:
        x_train = rng.integers(-2, 3, (n, 2)).astype(float)
        x_test = rng.integers(-2, 3, (n_test, 2)).astype(float)
    else:
        x_train, x_test = rng.normal(size=(n, 3)), rng.normal(size=(n_test, 3))
    y_train = rng.integers(0, classes, n)
    y_test = rng.integers(0, classes, n_test)
    return dv.Dataset(x_train, y_train, x_test, y_test)


def reference_values(data: dv.Dataset, k: int) -> np.ndarray:
    """The recursion of Jia et al., one test point and one training point at
    a time (ties: the smaller row index is nearer)."""
    x, y = np.asarray(data.x_train, float), np.asarray(data.y_train)
    n = len(y)
    total = np.zeros(n)
    for t, label in zip(
        np.asarray(data.x_test, float), np.asarray(data.y_test), strict=True
    ):
        dist = np.zeros(n)
        for f in range(x.shape[1]):  # feature by feature, as daskval sums them
            dist += (x[:, f] - t[f]) ** 2
        alpha = np.lexsort((np.arange(n), dist))
        match = (y[alpha] == label).astype(float)
        s = np.zeros(n)
        s[n - 1] = match[n - 1] / k * min(k, n) / n  # m_N / N when n >= k
        for i in range(n - 2, -1, -1):
            rank = i + 1
            s[i] = s[i + 1] + (match[i] - match[i + 1]) / k * min(k, rank) / rank
        total[alpha] += s
    return total / len(data.y_test)


# -- exactness -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k", "classes", "metric", "integer", "seed"),
    [
        (6, 1, 2, "euclidean", True, 0),
        (8, 3, 2, "euclidean", True, 1),
        (9, 3, 3, "euclidean", True, 2),  # multi-class, ties
        (7, 12, 2, "euclidean", True, 3),  # k > n
        (10, 2, 4, "manhattan", True, 4),
        (8, 4, 3, "cosine", False, 5),
        (9, 5, 2, "sqeuclidean", False, 6),
    ],
)
def test_equals_brute_force_enumeration(
    n: int, k: int, classes: int, metric: str, integer: bool, seed: int
) -> None:
    data = small_problem(n, 5, classes, seed, integer)
    valuation = KNNShapleyValuation(data, k, metric=metric)
    utility = valuation.utility
    # the oracle itself agrees with a plain-Python KNN utility
    for size in range(n + 1):
        for rows in itertools.islice(itertools.combinations(range(n), size), 12):
            assert utility(list(rows)) == pytest.approx(
                plain_utility(data, k, metric, list(rows)), abs=1e-15
            )
    values, _ = in_process(valuation)
    np.testing.assert_allclose(values, brute_force_shapley(utility), rtol=0, atol=1e-12)
    # efficiency with u(empty) = 0
    assert values.sum() == pytest.approx(utility(np.arange(n)), abs=1e-12)


def test_ties_go_to_the_smaller_row_index() -> None:
    # two identical training points, one test point on top of them: with
    # K = 1 the first is the nearest, so it alone scores for coalitions
    # holding both
    data = dv.Dataset([[0.0], [0.0], [5.0]], [1, 1, 0], [[0.0]], [1])
    utility = KNNUtility(data, 1)
    assert utility([0, 1]) == 1.0 and utility([1, 2]) == 1.0
    values, _ = in_process(KNNShapleyValuation(data, 1))
    np.testing.assert_allclose(values, brute_force_shapley(utility), atol=1e-15)
    np.testing.assert_allclose(values, [0.5, 0.5, 0.0], atol=1e-15)


def test_equals_reference_loop_on_thousands_of_points() -> None:
    rng = np.random.default_rng(11)
    n, n_test = 3000, 25
    x_train = rng.normal(size=(n, 4))
    x_train[100:200] = x_train[:100]  # duplicates: exact ties
    x_train[300:350] = np.round(x_train[300:350], 1)
    x_test = rng.normal(size=(n_test, 4))
    x_test[:5] = np.round(x_test[:5], 1)
    data = dv.Dataset(
        x_train, rng.integers(0, 3, n), x_test, rng.integers(0, 3, n_test)
    )
    for k in (1, 5, 40, 5000):
        values, _ = in_process(KNNShapleyValuation(data, k))
        np.testing.assert_allclose(
            values, reference_values(data, k), rtol=0, atol=1e-12
        )


def test_sub_blocks_do_not_change_the_values() -> None:
    data = small_problem(400, 37, 3, 12, integer=False)
    whole, whole_se = in_process(KNNShapleyValuation(data, 3))
    # one test point per sub-block
    tiny, tiny_se = in_process(KNNShapleyValuation(data, 3, memory_budget=1))
    np.testing.assert_allclose(tiny, whole, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tiny_se, whole_se, rtol=1e-9)


def test_stderr_is_that_of_the_mean_over_test_points() -> None:
    data = small_problem(300, 20, 2, 13, integer=False)
    valuation = KNNShapleyValuation(data, 5)
    values, stderr = in_process(valuation)
    per_point = valuation.utility.point_values(0, 20)
    np.testing.assert_allclose(values, per_point.mean(axis=0), atol=1e-15)
    expected = per_point.std(axis=0, ddof=1) / np.sqrt(20)
    np.testing.assert_allclose(stderr, expected, rtol=1e-7, atol=1e-15)


@pytest.mark.parametrize("noise", [0.0, 1e-9])
def test_sort_order_is_exact_from_approximate_distances(noise: float) -> None:
    """_order gets the exact (careful distance, position) order from fast
    distances within the tolerance, also when truncated keys collide."""
    rng = np.random.default_rng(3)
    base = np.array([0.0, 1.0, 1.0 + 2**-52, 1.0 + 2**-50, 2.0, 1e-300, 5e-324])
    rows = [
        rng.permutation(
            np.concatenate([base, base, 1 + 1e-9 * rng.random(9), rng.random(20)])
        )
        for _ in range(6)
    ]
    exact = np.array(rows)
    tolerance = np.full(len(exact), 2 * noise)
    fast = np.maximum(exact + rng.uniform(-noise, noise, exact.shape), 0.0)
    n = exact.shape[1]
    work = _Workspace(len(exact), n)
    order = _order(fast, tolerance, 40, work, lambda r, p: exact[r, p])  # 40 bits
    for row, got in zip(exact, order, strict=True):
        np.testing.assert_array_equal(got, np.lexsort((np.arange(n), row)))


# -- on the cluster ----------------------------------------------------------------


def test_same_values_on_one_and_two_workers_and_in_process(
    client: Client, client1: Client
) -> None:
    data = small_problem(500, 61, 3, 21, integer=False)
    valuation = KNNShapleyValuation(data, 4)
    expected, expected_se = in_process(valuation)
    for c in (client, client1):
        # through the workers' memo (its wrapper forwards shapley_moments)
        valuation = KNNShapleyValuation(data, 4)
        result = valuation.fit(client=c, samples_per_task=7, memo=True).result_
        assert result is not None and result.status == "completed"
        assert result.n_samples == 61 and result.n_evaluations == 61
        np.testing.assert_array_equal(result.counts, 61)
        np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.stderr, expected_se, rtol=1e-9)
        assert result.metadata["method"] == "knn_shapley"
        assert result.metadata["k"] == 4
    # the default task sizes, without the memo (the default)
    result = KNNShapleyValuation(data, 4).fit(client=client).result_
    assert result is not None
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-12)


# -- groups ------------------------------------------------------------------------


def test_a_group_is_valued_as_the_sum_of_its_members(client: Client) -> None:
    base = small_problem(60, 9, 3, 31, integer=True)
    groups = np.repeat(["c", "a", "b", "d"], 15)
    grouped = dv.Dataset(
        base.x_train, base.y_train, base.x_test, base.y_test, groups=groups
    )
    points, _ = in_process(KNNShapleyValuation(base, 3))
    expected = [points[groups == g].sum() for g in ("a", "b", "c", "d")]
    values, _ = in_process(KNNShapleyValuation(grouped, 3))
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-13)
    result = KNNShapleyValuation(grouped, 3).fit(client=client).result_
    assert result is not None
    assert list(result.names) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-12)
    assert result.metadata["group_values"] == "sum of member values"
    # efficiency still holds: the group game's u(everyone) is the points'
    assert values.sum() == pytest.approx(KNNUtility(grouped, 3)(np.arange(4)))


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be >= 1"),
        ({"k": 2.5}, ValueError, "k must be a whole number"),
        ({"k": "5"}, TypeError, "k must be an integer"),
        ({"k": True}, TypeError, "k must be an integer"),
        ({"k": 3, "metric": "minkowski"}, ValueError, "metric must be one of"),
        ({"k": 3, "metric": None}, ValueError, "metric must be one of"),
        ({"k": 3, "memory_budget": 0}, ValueError, "memory_budget must be >= 1"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    data = small_problem(10, 3, 2, 0)
    with pytest.raises(error, match=match):
        KNNShapleyValuation(data, **kwargs)


def test_bad_data() -> None:
    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(20, 2)), rng.normal(size=(5, 2))
    with pytest.raises(TypeError, match=r"data must be a daskval\.Dataset"):
        KNNShapleyValuation((x, x), 3)  # type: ignore[arg-type]
    regression = dv.Dataset(x, rng.normal(size=20), x_test, rng.normal(size=5))
    with pytest.raises(ValueError, match="KNNRegressionShapleyValuation"):
        KNNShapleyValuation(regression, 3)
    x_nan = x.copy()
    x_nan[3, 1] = np.nan
    with_nan = dv.Dataset(
        x_nan, np.arange(20) % 2, x_test, [0, 1, 0, 1, 0], allow_nan=True
    )
    with pytest.raises(ValueError, match="x_train contains NaN"):
        KNNShapleyValuation(with_nan, 3)
    frame = pd.DataFrame({"a": x[:, 0], "b": ["u", "v"] * 10})
    text = dv.Dataset(frame, np.arange(20) % 2, frame.iloc[:5], [0, 1, 0, 1, 0])
    with pytest.raises(TypeError, match="needs numeric features"):
        KNNShapleyValuation(text, 3)
    zero = x.copy()
    zero[0] = 0.0
    origin = dv.Dataset(zero, np.arange(20) % 2, x_test, [0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="zero norm"):
        KNNShapleyValuation(origin, 3, metric="cosine")
    KNNShapleyValuation(origin, 3)  # fine for euclidean distances


# -- training set chunked over the workers ----------------------------------------


@pytest.mark.parametrize("groups", [False, True])
def test_chunked_training_set_equals_the_broadcast_path(
    client: Client, groups: bool
) -> None:
    base = small_problem(700, 23, 3, 41, integer=True)  # many exact ties
    labels = np.arange(700) % 9 if groups else None
    data = dv.Dataset(
        base.x_train, base.y_train, base.x_test, base.y_test, groups=labels
    )
    broadcast = KNNShapleyValuation(data, 5).fit(client=client).result_
    chunked = (
        KNNShapleyValuation(data, 5, train_chunk_size=123).fit(client=client).result_
    )
    assert broadcast is not None and chunked is not None
    assert chunked.metadata["sharding"]["shards"] == 6
    assert chunked.metadata["sharding"]["rows_per_shard"] == 123
    assert broadcast.metadata["sharding"] is None
    np.testing.assert_allclose(chunked.values, broadcast.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(chunked.stderr, broadcast.stderr, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(chunked.counts, broadcast.counts)
    assert list(chunked.names) == list(broadcast.names)
    assert chunked.n_samples == chunked.n_evaluations == 23


def test_train_chunk_size_is_checked() -> None:
    with pytest.raises(ValueError, match="train_chunk_size must be >= 1"):
        KNNShapleyValuation(small_problem(10, 3, 2, 0), 3, train_chunk_size=0)
    with pytest.raises(TypeError, match="train_chunk_size must be an integer"):
        KNNShapleyValuation(small_problem(10, 3, 2, 0), 3, train_chunk_size="4")  # type: ignore[arg-type]


def test_data_too_large_to_broadcast_is_chunked() -> None:
    from daskval.engine.shards import rows_per_shard as chunk_size_for

    class Scheduler:
        def __init__(self, limit: int) -> None:
            self.limit = limit

        def scheduler_info(self, n_workers: int = 0) -> dict:
            return {"workers": {"w": {"memory_limit": self.limit}}}

    utility = KNNUtility(small_problem(1000, 10, 2, 0, integer=False), 3)
    assert chunk_size_for(Scheduler(10**9), utility) is None  # type: ignore[arg-type]
    size = chunk_size_for(Scheduler(20_000), utility)  # type: ignore[arg-type]
    assert size is not None and 1 <= size < 1000
    # a hint is the engine's choice whatever the memory
    hinted = KNNUtility(small_problem(30, 4, 2, 0), 3, rows_per_shard=7)
    assert chunk_size_for(Scheduler(10**9), hinted) == 7  # type: ignore[arg-type]


def test_chunked_path_takes_every_engine_option(client: Client) -> None:
    data = small_problem(60, 5, 2, 3)
    chunked = KNNShapleyValuation(data, 3, train_chunk_size=25)
    result = chunked.fit(
        client, progress=False, dashboard=False, memo=True, samples_per_task=2
    ).result_
    assert result is not None and result.metadata["sharding"]["shards"] == 3
    expected, _ = in_process(KNNShapleyValuation(data, 3))
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("options", "match"),
    [({"samples_per_task": 0}, "samples_per_task"), ({"memo": "yes"}, "memo")],
)
def test_bad_engine_options_are_refused_before_a_client_is_looked_up(
    options: dict, match: str
) -> None:
    """fit() routes between the broadcast and the chunked path by the
    workers' memory, but checks the engine's options first."""
    valuation = KNNShapleyValuation(small_problem(12, 3, 2, seed=0), 3)
    with pytest.raises((TypeError, ValueError), match=match):
        valuation.fit(client="not a client", **options)
