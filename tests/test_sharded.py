"""The sharded mode of the engine, through KNN-Shapley with its training set
split over the workers: a run like any other (handles, progress events,
checkpoints, one metadata schema), and one that survives the loss of a
worker holding a shard.

Reference values are those of the broadcast path, or computed in this
process over all test points in one range (``evaluate_range``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from distributed import Client

# the fault tests' cluster (nannies restart a killed worker, empty; KilledWorker
# after two deaths), a separate one for this module
from helpers.processes import kill_worker_mid_run
from test_faults import _wait_for_workers, fault_client  # noqa: F401

import daskval as dv
from daskval.checkpoint import load_checkpoint
from daskval.dashboard import events
from daskval.methods.knn import KNNShapleyPlan, KNNShapleyValuation
from daskval.plan import evaluate_range


def _data(n: int, n_test: int, seed: int) -> dv.Dataset:
    """Integer features (many exact ties), three classes."""
    rng = np.random.default_rng(seed)
    return dv.Dataset(
        rng.integers(-3, 4, (n, 3)).astype(float),
        rng.integers(0, 3, n),
        rng.integers(-3, 4, (n_test, 3)).astype(float),
        rng.integers(0, 3, n_test),
    )


def _in_process(data: dv.Dataset, k: int) -> tuple[np.ndarray, np.ndarray]:
    valuation = KNNShapleyValuation(data, k)
    plan = valuation.make_plan()
    assert isinstance(plan, KNNShapleyPlan)
    partial = evaluate_range(plan, valuation.utility, 0, plan.n_test)
    values, stderr, _ = plan.estimate(partial.moments)
    return values, stderr


def _assert_same(result: dv.ValuationResult, reference: dv.ValuationResult) -> None:
    np.testing.assert_allclose(result.values, reference.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.stderr, reference.stderr, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(result.counts, reference.counts)
    assert result.n_samples == reference.n_samples
    assert result.n_evaluations == reference.n_evaluations
    assert result.status == reference.status == "completed"


# -- a run like any other --------------------------------------------------------


def test_a_sharded_submit_shows_progress_and_equals_the_broadcast_run(
    client: Client,
) -> None:
    data = _data(500, 40, 1)
    broadcast = KNNShapleyValuation(data, 5).fit(client=client, progress=False)
    handle = KNNShapleyValuation(data, 5, train_chunk_size=100).submit(
        client, samples_per_task=3
    )
    result = handle.result(timeout=120)
    assert broadcast.result_ is not None
    _assert_same(result, broadcast.result_)
    assert result.metadata["sharding"] == {
        "shards": 5,
        "rows_per_shard": 100,
        "rescattered": 0,
    }
    # the handle and the events of every run
    assert handle.progress["status"] == "completed"
    assert handle.progress["n_samples"] == 40
    assert handle.dashboard_link is not None
    assert handle.dashboard_link.endswith("/daskval")
    mine = [
        msg
        for _, msg in client.get_events(events.TOPIC)
        if msg["run_id"] == handle.run_id
    ]
    assert mine and mine[-1]["status"] == "completed"
    assert mine[-1]["n_samples"] == 40 and mine[-1]["completion"] == 1.0
    assert handle.latest_event is not None
    assert handle.latest_event["status"] == "completed"


def test_one_metadata_schema_for_sharded_and_broadcast_runs(client: Client) -> None:
    data = _data(90, 12, 2)
    broadcast = KNNShapleyValuation(data, 3).fit(client=client, progress=False)
    sharded = KNNShapleyValuation(data, 3, train_chunk_size=40).fit(
        client=client, progress=False
    )
    assert broadcast.result_ is not None and sharded.result_ is not None
    _assert_same(sharded.result_, broadcast.result_)
    meta, sharded_meta = broadcast.result_.metadata, sharded.result_.metadata
    assert set(meta) == set(sharded_meta)
    assert meta["sharding"] is None
    assert sharded_meta["sharding"]["shards"] == 3
    for key in ("method", "plan", "utility", "utility_fingerprint", "k"):
        assert meta[key] == sharded_meta[key]
    assert sharded_meta["trace"]["n_samples"][-1] == 12


def test_a_sharded_run_checkpoints_and_resumes(client: Client, tmp_path: Path) -> None:
    data, path = _data(300, 240, 3), tmp_path / "sharded.npz"

    def make() -> KNNShapleyValuation:
        return KNNShapleyValuation(data, 4, train_chunk_size=80)

    handle = make().submit(
        client, checkpoint=path, checkpoint_interval=0.05, samples_per_task=1
    )
    deadline = time.monotonic() + 60
    while handle.progress["n_samples"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    handle.cancel(status="interrupted")
    partial = handle.result()
    saved = load_checkpoint(path)
    assert saved.status == partial.status == "interrupted"
    assert 0 < saved.n_samples == partial.n_samples < 240
    assert partial.metadata["sharding"]["shards"] == 4

    resumed = make().fit(client=client, resume=path, samples_per_task=5)
    reference = KNNShapleyValuation(data, 4).fit(client=client, progress=False)
    assert resumed.result_ is not None and reference.result_ is not None
    _assert_same(resumed.result_, reference.result_)
    assert resumed.result_.metadata["checkpoint"]["resumed_samples"] == saved.n_samples
    assert load_checkpoint(path).status == "completed"


# -- a worker holding a shard dies ---------------------------------------------


def _shard_holders(dask_scheduler: object) -> dict[str, list[str]]:
    """Run on the scheduler: the workers holding scattered data."""
    return {
        str(ts.key): [ws.address for ws in ts.who_has or ()]
        for ts in dask_scheduler.tasks.values()  # type: ignore[attr-defined]
        if ts.run_spec is None and ts.state == "memory"
    }


def test_killing_a_worker_holding_a_shard_loses_nothing(
    fault_client: Client,  # noqa: F811 (the fixture imported above)
) -> None:
    client = fault_client
    _wait_for_workers(client, 2)
    n_test = 800
    data = _data(400, n_test, 4)
    expected, expected_se = _in_process(data, 5)
    valuation = KNNShapleyValuation(data, 5, train_chunk_size=100)
    handle = valuation.submit(client, samples_per_task=2)

    def shard_holder() -> str | None:
        holders = client.run_on_scheduler(_shard_holders)
        held = [w for workers in holders.values() for w in workers]
        return held[0] if held else None

    _, at_kill, removed_before_the_end = kill_worker_mid_run(
        client, handle, 60, shard_holder
    )
    result = handle.result(timeout=240)

    # the kill landed mid-run, on a worker holding shards
    assert 0 < at_kill < n_test
    assert removed_before_the_end
    assert result.metadata["sharding"]["rescattered"] >= 1
    assert result.metadata["merge_chain_restarts"] >= 1
    # nothing lost, nothing counted twice
    assert result.status == "completed"
    assert result.n_samples == result.n_evaluations == n_test
    np.testing.assert_array_equal(result.counts, n_test)
    assert result.n_failed == 0 and result.metadata["failed_samples"] == []
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.stderr, expected_se, rtol=1e-9, atol=1e-15)
