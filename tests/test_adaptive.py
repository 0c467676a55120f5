"""Elastic clusters: a worker that joins mid-fit gets the utility and the memo
and takes tasks; one that leaves mid-fit loses nothing; the values are those
of a fixed-size cluster."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from distributed import Client
from helpers.processes import loopback_cluster

import daskval as dv

pytestmark = pytest.mark.timeout(240)

N_PLAYERS, BUDGET = 16, 40


def slow_majority(players: np.ndarray) -> float:
    """Weighted majority (weights 1..16), 20 ms per evaluation."""
    time.sleep(0.02)
    weights = np.arange(1, N_PLAYERS + 1)
    return float(weights[players].sum() > weights.sum() / 2)


def valuation() -> dv.ShapleyValuation:
    return dv.ShapleyValuation(
        dv.FunctionUtility(slow_majority, N_PLAYERS),
        sampler=dv.PermutationSampler(),
        stop=dv.MaxSamples(BUDGET),
        seed=11,
    )


def leaf_workers(client: Client, since: float) -> dict[str, int]:
    """Leaf tasks per worker, from the scheduler's task stream."""
    counts: dict[str, int] = {}
    for record in client.get_task_stream(start=since):
        if str(record["key"]).startswith("daskval-leaf"):
            counts[record["worker"]] = counts.get(record["worker"], 0) + 1
    return counts


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_worker_joining_and_leaving_mid_fit(client: Client) -> None:
    fixed = valuation().fit(client=client, progress=False, dashboard=False).result_
    with loopback_cluster(1) as (cluster, elastic):
        (first,) = elastic.scheduler_info()["workers"]
        began = time.time()
        elastic.get_task_stream()  # the scheduler records tasks from now on
        handle = valuation().submit(client=elastic, dashboard=False, samples_per_task=1)
        wait_until(lambda: handle.progress["n_samples"] > 0, 60, "the first samples")
        cluster.scale(2)
        elastic.wait_for_workers(2, timeout=60)
        (joined,) = set(elastic.scheduler_info()["workers"]) - {first}
        assert not handle.done(), "the run ended before the worker joined"
        samples_when_joined = handle.progress["n_samples"]
        wait_until(
            lambda: leaf_workers(elastic, began).get(joined, 0) > 0 or handle.done(),
            60,
            "a task on the new worker",
        )
        # the new worker got the memo too (its counters saw the evaluations)
        memo = dv.memo_stats(elastic, per_worker=True)["per_worker"][joined]
        # and a worker that leaves mid-run loses nothing
        left_mid_run = not handle.done()
        elastic.retire_workers([first])
        result = handle.result(timeout=120)
        ran = leaf_workers(elastic, began)
    assert samples_when_joined < BUDGET
    assert ran.get(joined, 0) >= 1, ran
    assert memo is not None and memo["misses"] > 0
    assert left_mid_run
    assert result.status == "completed" and result.n_samples == BUDGET
    np.testing.assert_allclose(result.values, fixed.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.stderr, fixed.stderr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.counts, fixed.counts)
