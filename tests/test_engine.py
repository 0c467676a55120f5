"""The engine on real LocalClusters: what travels, handles, concurrency."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from distributed import Client
from helpers.processes import loopback_cluster
from sklearn.dummy import DummyClassifier

import daskval as dv
from daskval.engine.broadcast import plugin_name


def majority(players: np.ndarray) -> float:
    """A 6-player game with distinct values: weighted majority with weights 1..6."""
    weights = np.arange(1, 7)
    return float(weights[players].sum() > weights.sum() / 2)


def slow_majority(players: np.ndarray) -> float:
    time.sleep(0.002)
    return majority(players)


@contextmanager
def graph_bytes(client: Client) -> Iterator[list[tuple[set[str], int]]]:
    """Record (keys, serialized bytes) of every graph this client submits."""
    sent: list[tuple[set[str], int]] = []
    original = client._send_to_scheduler

    def spy(msg: dict[str, Any]) -> Any:
        if msg.get("op") == "update-graph":
            expr = msg["expr_ser"]
            size = sum(memoryview(f).nbytes for f in expr.frames)
            sent.append(({str(k) for k in msg["keys"]}, size))
        return original(msg)

    client._send_to_scheduler = spy  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        client._send_to_scheduler = original  # type: ignore[method-assign]


def _grouped_dataset(n_rows: int, n_features: int, n_groups: int) -> dv.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_rows, n_features))
    y = (x[:, 0] > 0).astype(int)
    groups = np.arange(n_rows) % n_groups
    return dv.Dataset(x, y, x[:50], y[:50], groups=groups)


def _leaf_bytes(client: Client, data: dv.Dataset) -> list[int]:
    utility = dv.ModelUtility(DummyClassifier(), data)
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(6), seed=0)
    with graph_bytes(client) as sent:
        valuation.fit(client=client, samples_per_task=1)
    leaves = [size for keys, size in sent if any("daskval-leaf" in k for k in keys)]
    assert len(leaves) == 6
    return leaves


def test_bytes_per_task_do_not_grow_with_the_dataset(client: Client) -> None:
    small = _grouped_dataset(200, 10, 8)
    large = _grouped_dataset(6250, 1000, 8)  # 50 MB of features
    assert large.x_train.nbytes >= 50_000_000
    small_sizes, large_sizes = _leaf_bytes(client, small), _leaf_bytes(client, large)
    assert max(large_sizes) < 20_000  # far below 1 MB
    # the same plan size whatever the data: only names and sample indices differ
    assert abs(np.median(large_sizes) - np.median(small_sizes)) < 200


def test_client_fetches_about_one_accumulator_per_check(client: Client) -> None:
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(slow_majority, 6), stop=dv.MaxSamples(300), seed=1
    )
    result = valuation.fit(client=client).result_
    assert result is not None
    meta = result.metadata
    assert 0 < meta["max_fetch_bytes"] <= 2 * meta["accumulator_bytes"]


def test_submit_returns_a_handle_that_finishes(client: Client) -> None:
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(majority, 6), stop=dv.MaxSamples(200), seed=2
    )
    handle = valuation.submit(client=client)
    result = handle.result(timeout=120)
    assert handle.done()
    assert handle.progress["status"] == "completed"
    assert handle.progress["n_samples"] == 200 == result.n_samples
    assert result.status == "completed"
    np.testing.assert_allclose(result.values.sum(), 1.0, atol=1e-12)  # efficiency


def test_cancel_keeps_a_prefix_of_samples(client: Client) -> None:
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(slow_majority, 6), stop=dv.MaxSamples(10**6), seed=3
    )
    handle = valuation.submit(client=client)
    deadline = time.monotonic() + 60
    while handle.progress["n_samples"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    handle.cancel()
    result = handle.result()
    assert result.status == "cancelled"
    assert 0 < result.n_samples < 10**6
    # a prefix [0, K): every player got exactly one marginal per sample
    assert (result.counts == result.n_samples).all()
    assert result.n_evaluations == 2 + 5 * result.n_samples


def test_concurrent_valuations_match_sequential_ones(client: Client) -> None:
    def make(seed: int) -> dv.ShapleyValuation:
        return dv.ShapleyValuation(
            dv.FunctionUtility(majority, 6), stop=dv.MaxSamples(150), seed=seed
        )

    handles = [make(seed).submit(client=client) for seed in (10, 11)]
    together = [h.result(timeout=120) for h in handles]
    for seed, result in zip((10, 11), together, strict=True):
        alone = make(seed).fit(client=client).result_
        assert alone is not None
        np.testing.assert_allclose(result.values, alone.values, rtol=0, atol=1e-12)


def test_max_time_stops_an_endless_run(client: Client) -> None:
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(slow_majority, 6), stop=dv.MaxTime(3), seed=4
    )
    begin = time.monotonic()
    # small tasks, so samples are merged well within the time limit
    result = valuation.fit(client=client, samples_per_task=5).result_
    assert result is not None
    assert time.monotonic() - begin < 30
    assert result.n_samples > 0 and result.status == "completed"


def test_a_worker_that_joins_mid_run_gets_the_utility_and_works() -> None:
    with loopback_cluster(1) as (cluster, client):
        utility = dv.FunctionUtility(slow_majority, 6)
        valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(1500), seed=5)
        handle = valuation.submit(client=client, samples_per_task=20)
        while handle.progress["n_samples"] == 0:
            time.sleep(0.1)
        cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        result = handle.result(timeout=300)
        name = plugin_name(utility)
        has_plugin = client.run(lambda dask_worker: name in dask_worker.plugins)
        assert len(has_plugin) == 2 and all(has_plugin.values())
        reference = dv.ShapleyValuation(utility, stop=dv.MaxSamples(1500), seed=5)
        reference.fit(client=client, samples_per_task=300)
        assert reference.result_ is not None
        np.testing.assert_allclose(
            result.values, reference.result_.values, rtol=0, atol=1e-12
        )


def test_a_failing_task_raises_a_valuation_error(client: Client) -> None:
    class Broken(dv.Utility):
        n = 4
        default = 0.0

        def evaluate(self, players: np.ndarray, stats: dv.EvalStats) -> float:
            raise SystemError("not caught by the utility")  # a bug, not a model failure

        def fingerprint(self) -> str:
            return "broken-utility"

    valuation = dv.ShapleyValuation(Broken(), stop=dv.MaxSamples(4), seed=0)
    with pytest.raises(dv.ValuationError, match="not caught by the utility"):
        valuation.fit(client=client)


def test_a_budget_the_anchors_use_up_is_refused_up_front() -> None:
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(majority, 6), stop=dv.MaxEvaluations(2), seed=0
    )
    # no client is given and none may be started: the check comes first
    with pytest.raises(ValueError, match="cannot pay for a single sample"):
        valuation.submit(client=object())


def test_exact_enumeration_sizes_its_tasks_from_a_timed_sample(client: Client) -> None:
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(majority, 6), sampler=dv.ExactSampler()
    )
    with graph_bytes(client) as sent:
        result = valuation.fit(client=client).result_
    assert result is not None
    leaves = [k for keys, _ in sent for k in keys if "daskval-leaf" in k]
    # 64 subsets of a microsecond game: one timed probe, then a few large tasks
    assert len(leaves) <= 6, leaves
    np.testing.assert_allclose(result.values.sum(), 1.0, atol=1e-12)


def _scheduler_errors(client: Client) -> list[str]:
    return [
        message
        for level, message in client.get_scheduler_logs(n=1000)
        if level in {"ERROR", "CRITICAL"} or "Traceback" in message
    ]


def test_runs_ending_beside_each_other_leave_the_client_and_its_futures(
    client: Client,
) -> None:
    """Issue 20.2: the end of a run released its futures with one cancel of
    finished leaves, combines and links, which tripped ``assert ts.who_wants``
    in the scheduler (about 1 round in 8), and the scheduler then dropped the
    client: a concurrent run failed and the user's own futures were lost."""
    own = client.submit(sum, [1, 2], key="the-users-own-future")
    assert own.result(timeout=30) == 3
    errors_before = set(_scheduler_errors(client))

    def make(seed: int) -> dv.ShapleyValuation:
        return dv.ShapleyValuation(
            dv.FunctionUtility(majority, 6),
            sampler=dv.PermutationSampler(truncation=dv.RelativeTruncation(0.05)),
            stop=dv.MaxSamples(120),
            seed=seed,
        )

    for round_ in range(8):
        # small tasks: many leaves, combines and links to release at the end
        handles = [
            make(seed).submit(client=client, samples_per_task=3)
            for seed in (2 * round_, 2 * round_ + 1)
        ]
        for handle in handles:
            result = handle.result(timeout=120)
            assert result.status == "completed" and result.n_samples == 120
    assert client.status == "running"
    assert own.status == "finished" and own.result(timeout=30) == 3
    new_errors = [e for e in _scheduler_errors(client) if e not in errors_before]
    assert new_errors == []


# --------------------------------------------------------------------------
# a long session: many distinct utilities on one cluster


def _utility_plugins(dask_worker: Any) -> int:
    return sum(1 for name in dask_worker.plugins if name.startswith("daskval-utility"))


def _worker_rss(dask_worker: Any) -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _fit_loo(client: Client, utility: dv.Utility) -> None:
    dv.LOOValuation(utility).fit(client=client)


def test_many_distinct_utilities_leave_plugins_and_memory_flat() -> None:
    from daskval.engine.broadcast import IDLE_BROADCASTS

    x = np.random.default_rng(0).normal(size=(6, 3))
    y = (x[:, 0] > 0).astype(int)
    data = dv.Dataset(x, y, x, y)

    def utility(i: int) -> dv.ModelUtility:
        return dv.ModelUtility(DummyClassifier(), data, default=i * 1e-6)

    with loopback_cluster(2) as (_, client):
        # noise: the workers' RSS over fits of one and the same utility
        same = utility(0)
        rss = []
        for _ in range(20):
            _fit_loo(client, same)
            rss.append(max(client.run(_worker_rss).values()))
        noise = max(rss) - min(rss)
        for i in range(1, 21):
            _fit_loo(client, utility(i))
        warm = max(client.run(_worker_rss).values())
        for i in range(21, 201):
            _fit_loo(client, utility(i))
        plugins = client.run(_utility_plugins)
        grown = max(client.run(_worker_rss).values()) - warm

    assert all(count <= IDLE_BROADCASTS for count in plugins.values()), plugins
    # 200 kept utilities grew worker RSS by ~70 MB (issue 16); allow the
    # measured noise three times over, plus 16 MiB of allocator slack
    assert grown < 3 * noise + 16 * 2**20, (grown, noise)


# --------------------------------------------------------------------------
# time budgets and cancel reach the tasks running on the workers


def _workers_are_free(client: Client) -> None:
    """A small run on the cluster finishes promptly: no thread is still busy."""
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(majority, 6), stop=dv.MaxSamples(8), seed=1
    )
    result = valuation.submit(client, samples_per_task=4).result(timeout=30)
    assert result.n_samples == 8


def test_a_time_budget_bounds_a_huge_task_and_frees_the_workers(
    client: Client,
) -> None:
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(slow_majority, 6), stop=dv.MaxTime(5), seed=0
    )
    began = time.monotonic()
    result = valuation.submit(client, samples_per_task=10**7).result(timeout=60)
    assert time.monotonic() - began < 5 + 5
    assert result.status == "completed"
    _workers_are_free(client)


def test_cancel_reaches_the_tasks_running_on_the_workers(client: Client) -> None:
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(slow_majority, 6), stop=dv.MaxSamples(10**9), seed=0
    )
    handle = valuation.submit(client, samples_per_task=10**7)
    time.sleep(3)
    began = time.monotonic()
    handle.cancel()
    assert time.monotonic() - began < 3
    _workers_are_free(client)
