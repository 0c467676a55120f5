"""Faults on a real cluster: a killed worker, a sample that kills its worker,
models that fail.

The cluster of this module is its own (workers are killed here), with
``distributed.scheduler.allowed-failures`` at 1 so that a task that killed
two workers ends in ``KilledWorker`` quickly. Its workers have nannies, which
restart a killed worker process.

Reference values are computed in this process, sample by sample
(``evaluate_range``): the engine must reproduce them exactly whatever died.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream, get_worker
from helpers.processes import BLAS_ONE_THREAD, kill_worker_mid_run, loopback_cluster
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

import daskval as dv
from daskval.accumulate import Moments, Partial
from daskval.engine.broadcast import plugin_name
from daskval.engine.faults import (
    POISON_STRIKES,
    PoisonIsolation,
    check_not_all_failed,
    failed_partial,
    utility_nbytes,
)
from daskval.games import WeightedVotingGame
from daskval.plan import evaluate_range, initial_partial
from daskval.utility import EvalStats

N_PLAYERS = 16
_VOTING = WeightedVotingGame(list(range(1, N_PLAYERS + 1)))


def _on_worker() -> bool:
    try:
        get_worker()
    except ValueError:
        return False
    return True


def slow_voting(players: np.ndarray) -> float:
    """A voting game that takes ~1.5 ms per call on a worker (instant here)."""
    if _on_worker():
        time.sleep(0.0015)
    return _VOTING.value(players)


class PoisonVoting:
    """A voting game whose evaluation of one coalition kills the worker process.

    Evaluated in the test process (the reference), it just scores.
    """

    def __init__(self, n: int, poison: frozenset[int]) -> None:
        self.game = WeightedVotingGame(list(range(1, n + 1)))
        self.poison = poison

    def __call__(self, players: np.ndarray) -> float:
        if _on_worker() and frozenset(players.tolist()) == self.poison:
            os.kill(os.getpid(), signal.SIGKILL)  # a segfaulting fit, say
        return self.game.value(players)


def always_fails(players: np.ndarray) -> float:
    raise RuntimeError(f"this model never fits ({len(players)} players)")


def fails_on_odd_sizes(players: np.ndarray) -> float:
    """Raises on odd sizes, NaN on size 2: both score the default."""
    if len(players) % 2:
        raise ValueError(f"odd coalition of {len(players)}")
    if len(players) == 2:
        return float("nan")
    return float(np.sum(players))


class AlwaysFailingClassifier(ClassifierMixin, BaseEstimator):
    """A classifier whose fit always raises."""

    def fit(self, x: Any, y: Any) -> AlwaysFailingClassifier:
        raise MemoryError("the model ran out of memory")

    def predict(self, x: Any) -> np.ndarray:
        return np.zeros(len(x))


# --------------------------------------------------------------------------
# the cluster


@pytest.fixture(scope="module")
def fault_client() -> Iterator[Client]:
    """Two single-threaded worker processes with nannies; KilledWorker after
    two deaths."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.CRITICAL,
            env=dict(BLAS_ONE_THREAD),
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def _wait_for_workers(client: Client, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(client.nthreads()) < n:
        assert time.monotonic() < deadline, f"fewer than {n} workers"
        time.sleep(0.1)


def _merge_holders(dask_scheduler: Any) -> dict[str, list[str]]:
    """Run on the scheduler: which workers hold each merged state in memory."""
    return {
        str(ts.key): [ws.address for ws in ts.who_has or ()]
        for ts in dask_scheduler.tasks.values()
        if str(ts.key).startswith("daskval-merge-") and ts.state == "memory"
    }


def _newest_merge_holder(client: Client, run_id: str) -> str | None:
    """The only worker holding the newest merged state of the run, if any."""
    holders = {
        key: workers
        for key, workers in client.run_on_scheduler(_merge_holders).items()
        if run_id in key and len(workers) == 1
    }
    if not holders:
        return None
    newest = max(holders, key=lambda key: int(key.split("-")[3]))
    return holders[newest][0]


# --------------------------------------------------------------------------
# reference runs in this process


def _bound_plan(valuation: dv.Valuation, utility: dv.Utility) -> Any:
    plan = valuation.make_plan()
    plan.bind_anchors([utility(a) for a in plan.anchors()])
    return plan


def _reference(
    valuation: dv.Valuation, utility: dv.Utility, k: int, failed: tuple[int, ...] = ()
) -> tuple[np.ndarray, int]:
    """Values and evaluations (anchors included) of the first ``k`` samples,
    with the samples ``failed`` recorded as failed."""
    plan = _bound_plan(valuation, utility)
    state = initial_partial(plan)
    state.eval_stats.n_evaluations = len(plan.anchors())
    start = 0
    for index in [*sorted(failed), k]:
        if index > start:
            state = state.merge(evaluate_range(plan, utility, start, index))
        if index < k:
            state = state.merge(failed_partial(plan, index, "failed"))
        start = index + 1
    values, _, _ = plan.estimate(state.moments)
    return values, state.n_evaluations


class _Recorder(dv.Utility):
    """Records the coalitions each sample evaluates."""

    def __init__(self, n: int) -> None:
        self.n, self.default = n, 0.0
        self.seen: list[frozenset[int]] = []

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        stats.n_evaluations += 1
        self.seen.append(frozenset(players.tolist()))
        return float(len(players))

    def fingerprint(self) -> str:
        return "recorder"


def _unique_coalition(valuation: dv.Valuation, n: int, j: int, k: int) -> frozenset:
    """A coalition of sample ``j`` that no other of the first ``k`` samples
    evaluates (so that only sample ``j`` is poisoned)."""
    recorder = _Recorder(n)
    plan = _bound_plan(valuation, recorder)
    per_sample = []
    for index in range(k):
        recorder.seen = []
        evaluate_range(plan, recorder, index, index + 1)
        per_sample.append(set(recorder.seen))
    others = set().union(*(s for i, s in enumerate(per_sample) if i != j))
    candidates = [c for c in per_sample[j] - others if 0 < len(c) < n]
    assert candidates, "no coalition unique to the poisoned sample"
    return max(candidates, key=len)


# --------------------------------------------------------------------------
# unit tests of the bookkeeping


def test_isolation_bisects_down_to_one_sample_and_strikes_it_twice() -> None:
    isolation = PoisonIsolation()
    assert isolation.next_ranges(8, 16) == [(8, 12), (12, 16)]
    assert isolation.next_ranges(12, 14) == [(12, 13), (13, 14)]
    assert POISON_STRIKES == 2
    assert isolation.next_ranges(13, 14) == [(13, 14)]  # a second chance
    assert isolation.next_ranges(13, 14) == []
    assert list(isolation.failed) == [13]
    assert "sample 13" in isolation.failed[13]
    assert isolation.failed_before(13) == []
    assert [f["index"] for f in isolation.failed_before(20)] == [13]
    assert isolation.tag() != isolation.tag()  # resubmitted keys are new


def test_a_failed_sample_contributes_nothing_and_counts_its_evaluations() -> None:
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(slow_voting, N_PLAYERS), stop=dv.MaxSamples(5), seed=0
    )
    plan = valuation.make_plan()
    partial = failed_partial(plan, 3, "KilledWorker: sample 3")
    assert (partial.start, partial.stop) == (3, 4)
    per_sample = plan.fixed_evaluations_per_sample()
    assert per_sample == N_PLAYERS - 1
    assert partial.eval_stats.n_evaluations == partial.eval_stats.n_failed == per_sample
    assert any(k.startswith("KilledWorker") for k in partial.eval_stats.failures)
    empty = initial_partial(plan)
    merged = Partial(0, 3, empty.moments).merge(partial)
    for name, statistic in merged.moments.items():
        assert isinstance(statistic, Moments)
        before = empty.moments[name]
        assert isinstance(before, Moments)
        np.testing.assert_array_equal(statistic.count, before.count)


def test_all_failed_is_judged_after_enough_failures_or_at_the_end() -> None:
    stats = EvalStats(n_evaluations=4, n_failed=3, first_failure="Traceback: boom")
    check_not_all_failed(stats)  # too few failures to judge a running run
    with pytest.raises(dv.ValuationError, match="boom"):
        check_not_all_failed(stats, finished=True)
    stats = EvalStats(n_evaluations=40, n_failed=38)
    check_not_all_failed(stats, finished=True)  # two successes: not all failed
    stats = EvalStats(n_evaluations=40, n_failed=39, first_failure="Traceback: x")
    with pytest.raises(dv.ValuationError, match="every utility evaluation failed"):
        check_not_all_failed(stats)


def test_the_payload_size_of_a_model_utility_is_its_arrays() -> None:
    x = np.zeros((100, 4))
    y = np.zeros(100, dtype=int)
    y[::2] = 1
    utility = dv.ModelUtility(LogisticRegression(), dv.Dataset(x, y, x, y))
    assert utility_nbytes(utility) == 2 * (x.nbytes + y.nbytes)
    assert 0 < utility_nbytes(dv.FunctionUtility(slow_voting, 4)) < 10_000


# --------------------------------------------------------------------------
# a killed worker


def test_killing_a_worker_mid_run_loses_nothing(fault_client: Client) -> None:
    client = fault_client
    _wait_for_workers(client, 2)
    budget = 250
    utility = dv.FunctionUtility(slow_voting, N_PLAYERS)
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(budget), seed=11)
    before = set(client.nthreads())

    with get_task_stream(client=client) as stream:
        handle = valuation.submit(client, samples_per_task=4)
        # wait until a good part, not all, of the samples is merged, then kill
        # the worker holding the newest merged state (its chain must restart,
        # not replay the run from its first sample)
        victim, at_kill, removed_before_the_end = kill_worker_mid_run(
            client, handle, 40, lambda: _newest_merge_holder(client, handle.run_id)
        )
        result = handle.result(timeout=120)

    # the kill landed mid-run: the scheduler removed the worker while the
    # run went on, with part of the samples merged
    assert 0 < at_kill < budget
    assert removed_before_the_end
    removals = [
        msg
        for _, msg in client.get_events(victim)
        if isinstance(msg, dict) and msg.get("action") == "remove-worker"
    ]
    assert removals and not removals[0]["expected"]

    # nothing lost, nothing counted twice
    values, evaluations = _reference(valuation, utility, budget)
    assert result.status == "completed"
    assert result.n_samples == budget
    assert result.n_evaluations == evaluations
    assert result.n_failed == 0
    np.testing.assert_allclose(result.values, values, rtol=0, atol=1e-12)
    assert result.metadata["failed_samples"] == []
    # the merged states the worker held were not recomputed from the run's
    # first sample: the chain restarted from the last fetched state
    lost = [k for k in removals[0]["lost-computed-tasks"] if "-merge-" in str(k)]
    assert lost, "the kill lost no merged state (the restart went untested)"
    assert result.metadata["merge_chain_restarts"] >= 1
    # ... so the leaves of the state fetched before the kill ran once, but
    # for the few Dask may start before the loop sees the loss (~0.2 s)
    runs: dict[str, int] = {}
    for task in stream.data:
        key = str(task["key"])
        if key.startswith(f"daskval-leaf-{handle.run_id}-"):
            runs[key] = runs.get(key, 0) + 1
    early = [k for k in runs if int(k.split("-")[4]) <= at_kill]
    assert len(early) >= 10
    assert sum(runs[k] > 1 for k in early) <= 3

    # the nanny's new worker holds the utility and computes leaves
    _wait_for_workers(client, 2)
    new = set(client.nthreads()) - before
    assert new, "the killed worker was not restarted"
    name = plugin_name(utility)
    has_plugin = client.run(lambda dask_worker: name in dask_worker.plugins)
    assert all(has_plugin[w] for w in new)
    with get_task_stream(client=client) as again:
        handle = valuation.submit(client, samples_per_task=2)
        handle.result(timeout=60)
    workers = {t["worker"] for t in again.data if handle.run_id in str(t["key"])}
    assert workers & new


def slower_voting(players: np.ndarray) -> float:
    """An 11-player voting game that takes ~2 ms per call on a worker."""
    if _on_worker():
        time.sleep(0.002)
    return _VOTING_11.value(players)


_VOTING_11 = WeightedVotingGame(list(range(1, 12)))


def test_a_placed_exact_run_survives_a_killed_worker(fault_client: Client) -> None:
    """Exact enumerations send each block to one worker (``workers=`` hints,
    for the memo); with that worker dead its blocks run elsewhere."""
    client = fault_client
    _wait_for_workers(client, 2)
    utility = dv.FunctionUtility(slower_voting, 11)
    valuation = dv.ShapleyValuation(utility, sampler=dv.ExactSampler(), seed=0)
    handle = valuation.submit(client)
    while handle.progress["n_samples"] == 0:
        assert not handle.done(), "the run ended before the kill"
        time.sleep(0.05)
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    at_kill = handle.progress["n_samples"]
    os.kill(pids[victim], signal.SIGKILL)
    while victim in client.nthreads():
        time.sleep(0.01)
    removed_before_the_end = not handle.done()
    result = handle.result(timeout=120)

    assert 0 < at_kill < 2**11 and removed_before_the_end
    assert result.metadata["memo"]["enabled"]
    plan = _bound_plan(valuation, utility)
    local = evaluate_range(plan, utility, 0, 2**11)
    values, _, _ = plan.estimate(local.moments)
    assert (result.n_samples, result.n_evaluations) == (2**11, 2**11)
    np.testing.assert_allclose(result.values, values, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------
# a sample that kills its worker


def test_a_sample_that_kills_its_worker_is_isolated_and_recorded_failed(
    fault_client: Client,
) -> None:
    client = fault_client
    _wait_for_workers(client, 2)
    n, budget, poisoned = 10, 24, 9
    probe = dv.ShapleyValuation(
        dv.FunctionUtility(slow_voting, n), stop=dv.MaxSamples(budget), seed=3
    )
    coalition = _unique_coalition(probe, n, poisoned, budget)
    utility = dv.FunctionUtility(PoisonVoting(n, coalition), n)
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(budget), seed=3)

    began = time.monotonic()
    # bounded: a cluster that never restarts its workers must fail this test
    # with a TimeoutError, not hang the suite (seen once on a loaded machine)
    result = valuation.submit(client, samples_per_task=2).result(timeout=240)
    elapsed = time.monotonic() - began

    assert result.status == "completed"
    assert [f["index"] for f in result.metadata["failed_samples"]] == [poisoned]
    values, evaluations = _reference(valuation, utility, budget, (poisoned,))
    per_sample = n - 1
    assert result.n_samples == budget
    assert result.n_evaluations == evaluations
    assert result.n_failed == per_sample  # only the poisoned sample's calls
    kinds = result.metadata["failures"]
    assert [k for k in kinds if k.startswith("KilledWorker")] and sum(
        kinds.values()
    ) == per_sample
    assert f"sample {poisoned}" in result.metadata["first_failure"]
    np.testing.assert_allclose(result.values, values, rtol=0, atol=1e-12)
    assert elapsed < 60


# --------------------------------------------------------------------------
# failing models


def test_a_model_failing_on_every_evaluation_stops_early_with_its_traceback(
    fault_client: Client,
) -> None:
    budget = 100_000
    valuation = dv.ShapleyValuation(
        dv.FunctionUtility(always_fails, 8), stop=dv.MaxSamples(budget), seed=0
    )
    handle = valuation.submit(fault_client, samples_per_task=8)
    with pytest.raises(dv.ValuationError) as info:
        handle.result(timeout=60)
    message = str(info.value)
    assert "every utility evaluation failed" in message
    assert "Traceback" in message and "this model never fits" in message
    assert handle.progress["n_samples"] < budget / 100


def test_a_model_whose_fit_always_raises_stops_early(fault_client: Client) -> None:
    x = np.random.default_rng(0).normal(size=(12, 2))
    y = (x[:, 0] > 0).astype(int)
    utility = dv.ModelUtility(
        AlwaysFailingClassifier(), dv.Dataset(x, y, x, y), scoring="accuracy"
    )
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(50_000), seed=0)
    with pytest.raises(dv.ValuationError, match="MemoryError: the model ran out"):
        valuation.fit(fault_client, samples_per_task=4)


def test_failures_and_nan_on_some_coalitions_score_the_default_and_count(
    fault_client: Client,
) -> None:
    budget = 60
    utility = dv.FunctionUtility(fails_on_odd_sizes, 7, default=-1.0)
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(budget), seed=5)
    result = valuation.fit(fault_client, samples_per_task=8).result_
    assert result is not None

    plan = _bound_plan(valuation, utility)
    stats = EvalStats()
    for a in plan.anchors():
        utility.evaluate(a, stats)
    local = evaluate_range(plan, utility, 0, budget)
    stats += local.eval_stats
    values, _, _ = plan.estimate(local.moments)
    assert (result.n_evaluations, result.n_failed) == (
        stats.n_evaluations,
        stats.n_failed,
    )
    assert 0 < result.n_failed < result.n_evaluations
    kinds = result.metadata["failures"]
    assert any("odd coalition" in k for k in kinds)
    assert any("nan" in k for k in kinds)
    np.testing.assert_allclose(result.values, values, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------
# hanging fits, time limits, cancel, and BaseExceptions from user code


def _tiny_data(n: int) -> dv.Dataset:
    x = np.random.default_rng(1).normal(size=(n, 2))
    y = (x[:, 0] > 0).astype(int)
    return dv.Dataset(x, y, x, y)


def _helper_processes() -> int:
    """Run on a worker: its live helper processes (children evaluating timed
    utilities)."""
    import psutil

    children = psutil.Process().children(recursive=True)
    return sum(
        1
        for child in children
        if child.is_running()
        and child.status() != psutil.STATUS_ZOMBIE
        and "_helper_main" in " ".join(child.cmdline())
    )


def _reclaim_hung_threads(client: Client) -> None:
    """Restart the workers: a fit hanging without a timeout holds its worker
    thread until its process ends (the price of running without a limit)."""
    client.restart(wait_for_workers=False)
    _wait_for_workers(client, 2)


def test_a_fit_past_the_timeout_is_a_counted_timeout_and_its_process_killed(
    fault_client: Client,
) -> None:
    from helpers.slow_games import HangingClassifier

    n, budget = 6, 2
    utility = dv.ModelUtility(HangingClassifier(3), _tiny_data(n), timeout=1.0)
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(budget), seed=0)
    result = valuation.submit(fault_client, samples_per_task=1).result(timeout=120)
    assert result.status == "completed" and result.n_samples == budget
    kinds = result.metadata["failures"]
    timeouts = sum(c for k, c in kinds.items() if k.startswith("Timeout"))
    # u(N) and, per permutation, the prefixes of 4 and 5 rows hang
    assert timeouts == 1 + 2 * budget == result.n_failed
    assert np.all(np.isfinite(result.values))
    # each killed helper is gone: at most one idle helper per worker thread
    assert all(count <= 1 for count in fault_client.run(_helper_processes).values())


def test_max_time_ends_a_run_whose_fits_all_hang(fault_client: Client) -> None:
    from helpers.slow_games import HangingClassifier

    utility = dv.ModelUtility(HangingClassifier(0), _tiny_data(6))
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxTime(3), seed=0)
    began = time.monotonic()
    handle = valuation.submit(fault_client)
    try:
        with pytest.raises(dv.ValuationError, match="time budget ran out"):
            handle.result(timeout=60)
        assert time.monotonic() - began < 3 + 5
    finally:
        _reclaim_hung_threads(fault_client)


def test_cancel_returns_promptly_while_the_anchors_hang(fault_client: Client) -> None:
    from helpers.slow_games import HangingClassifier

    utility = dv.ModelUtility(HangingClassifier(3), _tiny_data(6))
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(100), seed=0)
    handle = valuation.submit(fault_client)
    try:
        time.sleep(2)  # the anchor u(N) hangs by now
        began = time.monotonic()
        handle.cancel()
        assert time.monotonic() - began < 3
        assert handle.done()
    finally:
        _reclaim_hung_threads(fault_client)


def exits_on_size_three(players: np.ndarray) -> float:
    """A utility that calls ``sys.exit`` on coalitions of three players."""
    if len(players) == 3:
        raise SystemExit(f"bye from a coalition of {len(players)}")
    return float(len(players))


class InterruptingUtility(dv.Utility):
    """A custom utility raising KeyboardInterrupt on coalitions of two."""

    def __init__(self, n: int) -> None:
        self.n, self.default = n, 0.0

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        stats.n_evaluations += 1
        if len(players) == 2:
            raise KeyboardInterrupt("interrupted inside the utility")
        return float(len(players))

    def fingerprint(self) -> str:
        return f"interrupting-{self.n}"


def test_a_utility_raising_system_exit_counts_a_failure_of_that_kind(
    fault_client: Client,
) -> None:
    utility = dv.FunctionUtility(exits_on_size_three, 6)
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(20), seed=0)
    result = valuation.submit(fault_client, samples_per_task=4).result(timeout=60)
    assert result.status == "completed" and result.n_samples == 20
    kinds = result.metadata["failures"]
    assert sum(c for k, c in kinds.items() if k.startswith("SystemExit")) == 20
    assert "Traceback" in result.metadata["first_failure"]


def test_a_custom_utility_raising_keyboard_interrupt_ends_with_its_traceback(
    fault_client: Client,
) -> None:
    valuation = dv.ShapleyValuation(
        InterruptingUtility(6), stop=dv.MaxSamples(20), seed=0
    )
    handle = valuation.submit(fault_client, samples_per_task=4)
    with pytest.raises(dv.ValuationError) as info:
        handle.result(timeout=60)
    message = str(info.value)
    assert "KeyboardInterrupt" in message and "Traceback" in message
    assert "interrupted inside the utility" in message


# --------------------------------------------------------------------------
# several poison samples, and a cluster left with no workers


class ManyPoisonVoting:
    """A voting game whose evaluation of any of several coalitions kills the
    worker process (a segfaulting fit, say); here it just scores."""

    def __init__(self, n: int, poison: list[frozenset[int]]) -> None:
        self.game = WeightedVotingGame(list(range(1, n + 1)))
        self.poison = set(poison)

    def __call__(self, players: np.ndarray) -> float:
        if _on_worker() and frozenset(players.tolist()) in self.poison:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.game.value(players)


@pytest.mark.xfail(
    strict=False,
    reason="issue 20.3, open: in the merged suite (2026-12-08) the nanny "
    "cluster had no workers for 30 s while 4 poison samples kept killing "
    "them, and the no-workers watch ended the run; it passed alone on the "
    "reliability branch. Not yet understood: see the session note",
)
def test_several_poison_samples_are_isolated_exactly(fault_client: Client) -> None:
    _wait_for_workers(fault_client, 2)
    n, budget, poisoned = 10, 40, (5, 17, 18, 33)
    probe = dv.ShapleyValuation(
        dv.FunctionUtility(slow_voting, n), stop=dv.MaxSamples(budget), seed=4
    )
    coalitions = [_unique_coalition(probe, n, j, budget) for j in poisoned]
    utility = dv.FunctionUtility(ManyPoisonVoting(n, coalitions), n)
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(budget), seed=4)
    result = valuation.submit(fault_client, samples_per_task=4).result(timeout=400)

    assert result.status == "completed" and result.n_samples == budget
    assert [f["index"] for f in result.metadata["failed_samples"]] == list(poisoned)
    values, evaluations = _reference(valuation, utility, budget, poisoned)
    assert result.n_evaluations == evaluations
    assert result.n_failed == (n - 1) * len(poisoned)
    np.testing.assert_allclose(result.values, values, rtol=0, atol=1e-12)


def test_a_cluster_left_with_no_workers_ends_the_run_with_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daskval.engine import faults

    monkeypatch.setattr(faults, "NO_WORKERS_GRACE", 5.0)
    utility = dv.FunctionUtility(slower_voting, 11)
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(10**6), seed=4)
    with loopback_cluster(1) as (cluster, client):
        handle = valuation.submit(client, samples_per_task=2)
        deadline = time.monotonic() + 60
        while handle.progress["n_samples"] < 2:
            assert time.monotonic() < deadline and not handle.done()
            time.sleep(0.1)
        cluster.scale(0)  # every worker gone, none coming
        began = time.monotonic()
        with pytest.raises(dv.ValuationError, match="no workers"):
            handle.result(timeout=60)
        assert time.monotonic() - began < 5.0 + 10
