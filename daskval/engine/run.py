"""The run loop: a sliding window of sample-range tasks and a streaming merge.

One run, seen from the client:

1. the utility is registered once per cluster as a worker plugin (broadcast);
2. the plan's anchor coalitions (u(empty), u(N), ...) are evaluated once;
3. tasks over contiguous ranges of global sample indices keep every worker
   thread busy (~3 tasks per thread in flight), each sized to run ~0.5 s;
4. finished ranges that continue the merged prefix ``[0, K)`` are appended to
   it by merge tasks on the workers, in sample order: the state is always
   "exactly the first K samples", so budgets are exact and values do not
   depend on workers, task sizes or completion order;
5. about once a second the client fetches the newest merged state (one
   accumulator), checks the stopping criterion and publishes progress.

A range counts once: its key names the run and the range, and a leaf enters
the prefix only through the single merge chain.

A utility too large to broadcast (or one whose caller asks for shards) runs
in the sharded mode of the same loop (``engine.shards``): its core is
broadcast, its rows are scattered in shards, and each leaf is one small task
per shard plus the leaf that joins them; the leaf's state, and everything
after it, is the same as in any run.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from distributed import Client, Future

from daskval.accumulate import CoalitionSums, Partial
from daskval.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_identity,
    check_structure,
    default_checkpoint_path,
    load_checkpoint,
    run_identity,
    save_checkpoint,
)
from daskval.engine.broadcast import ensure_broadcast, release_broadcast
from daskval.engine.chain import Reducer
from daskval.engine.cluster import resolve_client
from daskval.engine.faults import (
    PoisonIsolation,
    WorkerWatch,
    check_fits_in_memory,
    check_not_all_failed,
    is_killed_worker,
    wait_or_stop,
)
from daskval.engine.memo import MemoConfig, Placement, ensure_memo, run_metadata
from daskval.engine.packed import pack_call, submit_packed
from daskval.engine.progress import RunProgress
from daskval.engine.reduce import FANIN
from daskval.engine.shards import ShardSet, check_shardable, rows_per_shard
from daskval.engine.tasks import (
    UtilityRef,
    anchors_task,
    failed_sample_task,
    leaf_task,
    stop_run_on_workers,
)
from daskval.engine.window import TaskSizer
from daskval.exceptions import ValuationError
from daskval.plan import RunSpec, initial_partial
from daskval.result import ValuationResult
from daskval.stopping import planned_samples
from daskval.utility import EvalStats, ShardableUtility, Utility

if TYPE_CHECKING:
    from daskval.dashboard.monitor import RunMonitor

__all__ = ["RunSettings", "ValuationHandle", "check_run_options", "start_run"]

logger = logging.getLogger("daskval")

# seconds the end of a stopped run (time up, cancel, Ctrl-C) waits for a view
# of everything merged; past it, the run keeps the last state it fetched (a
# saturated scheduler ran the view after queued leaves for 30 s and more)
_END_WAIT = 5.0
# seconds a sharded run waits for a shard to show as lost when a task that
# depends on the shards was cancelled (the cancellations of a shard and of
# its dependents reach the client in one batch, read by another thread)
_SHARD_LOSS_WAIT = 2.0
# seconds past the end of a time budget after which its tasks stop on the workers
_TASK_DEADLINE_MARGIN = 2.0


@dataclass
class RunSettings:
    """Engine knobs; the defaults suit tasks of milliseconds to seconds."""

    samples_per_task: int | None = None
    target_task_seconds: float = 0.5
    tasks_per_thread: int = 3
    check_interval: float = 1.0
    merge_interval: float = 0.25
    # leaves past an evaluation budget's safe bound appended per chain link
    max_merge_fanin: int = 32
    # nodes per combine task of the merge tree (engine.reduce)
    tree_fanin: int = 8
    poll_interval: float = 0.2
    # True: the workers' memo as configured (defaults if none); False: bypass it
    memo: bool | MemoConfig = True
    # the file the merged state is saved to every checkpoint_interval seconds,
    # at the end and on interrupt (None: no checkpoints)
    checkpoint: Path | None = None
    checkpoint_interval: float = 60.0
    # the checkpoint this run continues from
    resume: Checkpoint | None = None
    # rows per shard of a sharded run (None: the utility is broadcast); the
    # engine sets it (engine.shards.rows_per_shard)
    rows_per_shard: int | None = None


class ValuationHandle:
    """A running valuation: poll it, wait for it, or cancel it.

    Returned by ``Valuation.submit()``; ``fit()`` is ``submit().result()``.
    """

    def __init__(
        self,
        spec: RunSpec,
        client: Client,
        settings: RunSettings,
        monitor: Callable[[str], RunMonitor] | None = None,
    ) -> None:
        self.spec = spec
        self.plan = spec.plan
        self.client = client
        self.settings = settings
        self.run_id = uuid.uuid4().hex[:12]
        # progress events, the dashboard and the console bar (daskval.dashboard)
        self._progress = RunProgress(
            spec.plan, spec.stop, None if monitor is None else monitor(self.run_id)
        )
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._workers = WorkerWatch()
        # the name of the utility's broadcast while the run holds it
        self._broadcast: str | None = None
        # set when a task of this run finishes (or on cancel): the loop wakes
        # at once instead of polling
        self._wake = threading.Event()
        # futures whose done-callback fired, for the loop to file
        self._finished: deque[Future] = deque()
        self._tree_combines = 0
        self._reducer: Reducer | None = None
        self._cancel_status = "cancelled"
        # with the memo on: which worker each block of an enumeration goes to
        self._placement: Placement | None = None
        # worker deaths: poison samples found so far, restarts of the merge chain
        self._isolation = PoisonIsolation()
        self._chain_generation = 0
        # a sharded run's shards on the cluster (None: broadcast)
        self._shards: ShardSet | None = None
        self._sharding: dict[str, Any] | None = None
        self._results: dict[str, ValuationResult] | None = None
        self._error: BaseException | None = None
        # checkpoints: what the run computes, its anchors, the newest state
        self._identity = (
            run_identity(spec, spec.plan)
            if settings.checkpoint is not None or settings.resume is not None
            else {}
        )
        self._anchor_values: list[float] = []
        self._anchor_evaluations = 0
        self._begin = time.monotonic()
        self._last_state: Partial | None = None
        self._saved: tuple[Partial, float] | None = None  # (state, when)
        self._checkpoint_error: str | None = None
        self._thread = threading.Thread(
            target=self._main, name=f"daskval-{self.run_id}", daemon=True
        )

    # -- public API -------------------------------------------------------------
    def start(self) -> ValuationHandle:
        self._thread.start()
        return self

    def done(self) -> bool:
        """True once the run has finished, failed or been cancelled."""
        return self._done.is_set()

    @property
    def dashboard_link(self) -> str | None:
        """The address of the ``/daskval`` page showing this run (None: off)."""
        monitor = self._progress.monitor
        return None if monitor is None else monitor.link

    @property
    def latest_event(self) -> dict[str, Any] | None:
        """The newest progress event of this run (see daskval.dashboard.events)."""
        monitor = self._progress.monitor
        return None if monitor is None else monitor.latest

    @property
    def progress(self) -> dict[str, Any]:
        """Samples and evaluations merged so far, completion in [0, 1], status."""
        return self._progress.as_dict()

    def result(self, timeout: float | None = None) -> ValuationResult:
        """Wait for the run and return its result (or raise its error).

        A KeyboardInterrupt while waiting stops the run and returns the
        samples merged so far, with status ``"interrupted"``. For a plan with
        several outputs (several semivalues from one run) this is the first;
        :meth:`results` has them all.
        """
        return next(iter(self.results(timeout).values()))

    def results(self, timeout: float | None = None) -> dict[str, ValuationResult]:
        """Wait for the run and return every output's result, by name."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._done.wait(0.1):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"valuation not finished after {timeout} s")
        except KeyboardInterrupt:
            self.cancel(status="interrupted")
        if self._error is not None:
            raise self._error
        assert self._results is not None
        return self._results

    def cancel(self, status: str = "cancelled") -> None:
        """Stop the run; the result holds the samples merged so far."""
        self._cancel_status = status
        self._cancel.set()
        self._wake.set()
        self._done.wait()

    # -- the loop ---------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._results = self._run()
        except BaseException as exc:
            self._error = self._explain_failure(exc)
            self._progress.status = "failed"
            self._progress.final(self._last_state, "failed")
        finally:
            self._shards = None  # the scattered shards go with the last reference
            self._release_broadcast()
            self._done.set()

    def _release_broadcast(self) -> None:
        """Let the utility's broadcast go (see ``engine.broadcast``)."""
        name, self._broadcast = self._broadcast, None
        if name is not None:
            release_broadcast(self.client, name)

    def _run(self) -> dict[str, ValuationResult]:
        begin = time.monotonic()
        settings, plan, client = self.settings, self.plan, self.client
        resumed = settings.resume
        if resumed is not None:
            begin -= resumed.elapsed_seconds  # time budgets go on from the checkpoint
        self._begin = self._progress.begin = begin
        stop = self.spec.stop
        if stop is not None:
            stop.reset()
        n_threads = sum(client.nthreads().values()) or 1
        if settings.samples_per_task is None:  # the plan's own, if it has one
            settings.samples_per_task = plan.samples_per_task(n_threads)
        memo = settings.memo is not False
        if memo:
            config = settings.memo if isinstance(settings.memo, MemoConfig) else None
            ensure_memo(client, config)
        self._broadcast = ensure_broadcast(client, self._broadcast_utility())
        plugin = UtilityRef(self._broadcast, memo, self.run_id, self._task_deadline())
        if self._shards is None and memo:
            self._placement = Placement.of(plan.sample_limit(), client)
        sizer = self._task_sizer(n_threads)
        self._progress.status = "running"

        if resumed is None:
            anchor_stats, seconds_per_eval = self._evaluate_anchors(plugin)
        else:
            # the saved anchors, bound without evaluating (or counting) them again
            anchor_stats, seconds_per_eval = EvalStats(), None
            if resumed.state.stop == 0:
                # the saved counters are the anchors' (a chain restart falls
                # back to them)
                anchor_stats += resumed.state.eval_stats
            self._anchor_values = [float(v) for v in resumed.anchors]
            self._anchor_evaluations = resumed.anchor_evaluations
            self._isolation.failed.update(resumed.failed_samples)
            if self._anchor_values:
                plan.bind_anchors(self._anchor_values)

        cap = self._sample_cap(self._anchor_evaluations)
        state = (
            initial_partial(plan, anchor_stats) if resumed is None else resumed.state
        )
        self._last_state = state
        # what a leaf task ships: its packed call (see engine.packed)
        task_bytes = len(pack_call(leaf_task, (plugin, plan, 0, 1), {})[0])
        seconds_per_sample = (
            None
            if seconds_per_eval is None
            else 0.5 * seconds_per_eval * plan.max_evaluations_per_sample()
        )
        if state.n_samples and state.compute_seconds > 0:
            seconds_per_sample = state.compute_seconds / state.n_samples

        in_flight: dict[Future, tuple[int, int]] = {}
        # the first link builds the empty state on a worker (no graph carries
        # an n-sized array); a resumed run's first link appends to the
        # restored state instead
        reducer = Reducer(
            client,
            self.run_id,
            plan,
            stop,
            plugin,
            anchor_stats if resumed is None else resumed.state,
            keep_costs=self._keep_costs(),
            wake=self._wake_up,
        )
        self._reducer = reducer
        next_start = state.stop
        # a resumed run may have nothing left to do
        ended = resumed is not None and self._progress.update(state, cap)
        if (
            not ended
            and seconds_per_sample is None
            and settings.samples_per_task is None
            and (cap is None or cap > next_start)
        ):
            # nothing timed yet (no anchors): time one sample before sizing
            # tasks (a long one: start one-sample tasks meanwhile)
            first = next_start
            probe = self._submit_slot(reducer, plugin, first, first + 1)
            seconds_per_sample = self._wait_for(
                probe, first, first + 1, sizer.task_seconds(n_threads)
            )
            in_flight[probe] = (first, first + 1)
            next_start = first + 1
        reducer.set_safe_stop(self._safe_stop(state, next_start))
        last_check = time.monotonic()
        status = "completed"
        time_up = False
        n_threads = sum(client.nthreads().values()) or 1
        threads_checked = time.monotonic()

        # a checkpoint every few seconds needs a fresh state as often
        check_every = settings.check_interval
        if settings.checkpoint is not None:
            check_every = min(check_every, settings.checkpoint_interval)

        # (a budget the anchors use up is refused up front)
        while cap != 0 and not ended:
            now = time.monotonic()
            if self._cancel.is_set():
                status = self._cancel_status
                break
            if now - threads_checked > 2.0:
                present = sum(client.nthreads().values())
                self._workers.check(present, now)
                n_threads = present or n_threads
                threads_checked = now

            # keep the window full
            window = max(2, settings.tasks_per_thread * n_threads)
            while (
                len(in_flight) < window
                and (cap is None or next_start < cap)
                and (not in_flight or sizer.sample_can_finish(seconds_per_sample))
            ):
                size = sizer.size(seconds_per_sample, cap, next_start, n_threads)
                end = next_start + size if cap is None else min(cap, next_start + size)
                if self._placement is not None:
                    end = self._placement.clip(next_start, end)
                leaf = self._submit_slot(reducer, plugin, next_start, end)
                in_flight[leaf] = (next_start, end)
                next_start = end
            if cap is not None and next_start >= cap:
                reducer.mark_final(reducer.grid.n_slots)

            # what finished since the last round (done-callbacks wake us and
            # queue the futures: no scan of everything in flight)
            self._wake.wait(settings.poll_interval)
            self._wake.clear()
            now = time.monotonic()
            if not self._recover_shards(
                state, anchor_stats, plugin, in_flight, reducer
            ):
                try:
                    self._collect_finished(plugin, in_flight, reducer)
                    if reducer.broken():
                        for slot in reducer.restart(state, anchor_stats):
                            self._run_again(
                                slot.start, slot.stop, plugin, in_flight, reducer
                            )
                except ValuationError:
                    # a task cancelled with a lost shard, seen before the shard
                    if not self._recover_shards(
                        state, anchor_stats, plugin, in_flight, reducer, suspect=True
                    ):
                        raise

            left = self._seconds_left()
            if left is not None and left <= 0:
                # a time budget ends the run by the client's clock, not at the
                # next fetched state (which was asked for up to a check
                # interval, plus the chain's lag, earlier)
                time_up = True
                break

            # fetch the newest merged state and decide
            all_merged = cap is not None and reducer.merged_stop >= cap
            if now - last_check >= check_every or all_merged:
                last_check = now
                reducer.request_state()
            fetched = reducer.fetched()
            if fetched is not None:
                self._progress.fetched(fetched)
            if fetched is not None and fetched.stop >= state.stop:
                if fetched.stop > state.stop:
                    reducer.note_progress()
                state = self._last_state = fetched
                reducer.set_safe_stop(self._safe_stop(state, next_start))
                check_not_all_failed(state.eval_stats)
                self._checkpoint_now(state, "running", periodic=True)
                if state.n_samples and state.compute_seconds > 0:
                    seconds_per_sample = state.compute_seconds / state.n_samples
                if self._progress.update(state, cap):
                    break

        if status != "completed" or time_up:
            # stopped early or on time: keep every sample merged so far, not
            # only the last state fetched
            newest = reducer.newest_state(timeout=_END_WAIT)
            if newest is not None and newest.stop >= state.stop:
                state = self._last_state = newest
            if time_up:
                check_not_all_failed(state.eval_stats)
                self._progress.update(state, cap)
        self._release(in_flight)
        self._tree_combines = reducer.grid.combines
        self._chain_generation = reducer.generation
        self._reducer = None
        if self._shards is not None:
            self._sharding = self._shards.describe()
            self._shards = None  # released with the last reference
        del in_flight, reducer
        if status == "completed":
            check_not_all_failed(state.eval_stats, finished=True)
        self._progress.status = status
        self._checkpoint_now(state, status)
        results = self._make_results(state, status, begin, task_bytes, client)
        self._progress.final(self._last_state, status)
        return results

    def _evaluate_anchors(self, plugin: UtilityRef) -> tuple[EvalStats, float | None]:
        """u of the plan's anchor coalitions, bound to the plan: their counters
        and the slowest call's seconds (None without anchors)."""
        plan = self.plan
        if not plan.anchors():
            return EvalStats(), None
        anchors = submit_packed(
            self.client,
            anchors_task,
            plugin,
            plan,
            key=f"daskval-anchors-{self.run_id}",
        )
        self._raise_if_stopped(anchors, "the anchor coalitions (u(empty), u(N), ...)")
        try:
            values, anchor_stats, seconds_per_eval = anchors.result()
        except Exception as exc:
            raise ValuationError(
                "evaluating the anchor coalitions (u(empty), u(N), ...) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        plan.bind_anchors(values)
        self._anchor_values = [float(v) for v in values]
        self._anchor_evaluations = anchor_stats.n_evaluations
        return anchor_stats, seconds_per_eval

    # -- checkpoints ------------------------------------------------------------
    def _checkpoint_now(
        self, state: Partial, status: str, periodic: bool = False
    ) -> None:
        """Save ``state`` to the checkpoint file (periodic: when it is due).

        A failed write is logged and recorded, never fatal: the run's samples
        are still on the cluster and in the result.
        """
        path = self.settings.checkpoint
        if path is None:
            return
        now = time.monotonic()
        if (
            periodic
            and self._saved is not None
            and (
                self._saved[0] is state
                or now - self._saved[1] < self.settings.checkpoint_interval
            )
        ):
            return
        checkpoint = Checkpoint(
            identity=self._identity,
            state=state,
            anchors=np.asarray(self._anchor_values, dtype=np.float64),
            anchor_evaluations=self._anchor_evaluations,
            elapsed_seconds=now - self._begin,
            status=status,
            run_id=self.run_id,
            failed_samples={
                i: m for i, m in self._isolation.failed.items() if i < state.stop
            },
        )
        try:
            save_checkpoint(path, checkpoint)
        except Exception as exc:
            self._checkpoint_error = f"{type(exc).__name__}: {exc}"
            logger.error("could not write the checkpoint %s: %s", path, exc)
            return
        self._checkpoint_error = None
        self._saved = (state, now)

    def _explain_failure(self, exc: BaseException) -> BaseException:
        """Save what was merged and say how to resume (or how to make that
        possible); a lost scheduler or client becomes a ValuationError."""
        if not isinstance(exc, Exception):
            return exc
        path = self.settings.checkpoint
        if path is not None and self._last_state is not None:
            self._checkpoint_now(self._last_state, "failed")
        lost = _cluster_lost(exc, self.client)
        if path is not None and self._saved is not None:
            hint = (
                f"the first {self._saved[0].stop} samples are saved in the "
                f"checkpoint {path}; continue the run with "
                f"fit(resume={str(path)!r}) (same utility, method, sampler, "
                "seed and stop) on a working cluster"
            )
        elif path is not None:
            hint = (
                f"no checkpoint was written to {path} (the run failed before "
                "any state was merged)"
            )
        elif lost:
            hint = (
                "checkpoints were off, so the merged samples are lost; pass "
                "fit(checkpoint=True) (or checkpoint='path.npz', with "
                "checkpoint_interval=seconds) to be able to resume such a run"
            )
        else:
            return exc
        if lost:
            error = ValuationError(
                "the Dask scheduler or the client was lost during the run "
                f"({type(exc).__name__}: {exc}); {hint}"
            )
            error.__cause__ = exc
            return error
        add_note = getattr(exc, "add_note", None)  # Python >= 3.11
        if add_note is not None:
            add_note(hint)
        return exc

    def _submit_leaf(
        self, plugin: UtilityRef, start: int, end: int, tag: str = ""
    ) -> Future:
        """Samples ``start .. end-1`` as a task whose key names the run and range
        (and ``tag``, for a range submitted again)."""
        key = f"daskval-leaf-{self.run_id}-{start}-{end}{tag and '-' + tag}"
        hint = None if self._placement is None else self._placement.hint(start)
        if self._shards is not None:
            future = self._shards.submit_leaf(plugin, self.plan, start, end, key)
        else:
            future = submit_packed(
                self.client,
                leaf_task,
                plugin,
                self.plan,
                start,
                end,
                key=key,
                submit_kwargs=hint,
            )
        future.add_done_callback(self._wake_up)
        return future

    def _broadcast_utility(self) -> Utility:
        """What every worker holds: the utility, or, in a sharded run, its
        core (the shards are scattered here, one worker each)."""
        utility, rows = self.spec.utility, self.settings.rows_per_shard
        if rows is None:
            return utility
        if not isinstance(utility, ShardableUtility):
            raise TypeError(f"{type(utility).__name__} cannot be sharded")
        sharding = utility.split(rows)
        check_shardable(self.plan, sharding)
        self._shards = ShardSet(self.client, sharding)
        return sharding.core

    def _recover_shards(
        self,
        state: Partial,
        anchor_stats: EvalStats,
        plugin: UtilityRef,
        in_flight: dict[Future, tuple[int, int]],
        reducer: Reducer,
        suspect: bool = False,
    ) -> bool:
        """A sharded run whose shard was lost with its worker: scatter it
        again, merge again from the fetched ``state``, and run every range
        after it again under new keys (True; False: no shard lost).

        Dask cancels every task that depended on a lost shard, finished ones
        and the chain's links included: nothing after ``state`` is kept. The
        old futures are dropped, never cancelled (see :meth:`_release`).
        ``suspect``: a task was cancelled; wait a moment for the shard's
        own cancellation.
        """
        shards = self._shards
        if shards is None:
            return False
        lost = shards.lost()
        deadline = time.monotonic() + (_SHARD_LOSS_WAIT if suspect else 0.0)
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
            lost = shards.lost()
        if not lost:
            return False
        shards.rescatter(lost)
        ranges = sorted(in_flight.values())
        in_flight.clear()
        self._finished.clear()
        slots = reducer.restart(state, anchor_stats, alive=lambda _: False)
        ranges += [(slot.start, slot.stop) for slot in slots]
        for start, stop in sorted(ranges):
            self._run_again(start, stop, plugin, in_flight, reducer)
        return True

    def _wake_up(self, future: Future) -> None:
        # runs on the client's event loop; deque.append is thread-safe
        self._finished.append(future)
        self._wake.set()

    def _keep_costs(self) -> bool:
        """Whether combined nodes keep their per-sample costs: an evaluation
        budget with a varying cost per sample is cut by the chain."""
        return (
            self.spec.stop is not None
            and self.plan.fixed_evaluations_per_sample() is None
        )

    def _safe_stop(self, state: Partial, next_start: int) -> int | None:
        """The samples that may be combined: none of them can pass a count
        budget, even at the plan's largest cost per sample (None: all)."""
        if not self._keep_costs():
            return None
        stop = self.spec.stop
        assert stop is not None
        most = self.plan.max_evaluations_per_sample()
        horizon = 2 * max(next_start - state.stop, 0) + 1024
        spent = state.n_evaluations + most * np.arange(horizon + 1, dtype=np.int64)
        cut = stop.count_stop(spent, state.stop)
        return state.stop + horizon if cut is None else max(cut, state.stop)

    def _submit_slot(
        self, reducer: Reducer, plugin: UtilityRef, start: int, end: int
    ) -> Future:
        """A new slot of the reduction, and the leaf task over it."""
        reducer.grid.add_slot(start, end)
        return self._submit_leaf(plugin, start, end)

    def _collect_finished(
        self,
        plugin: UtilityRef,
        in_flight: dict[Future, tuple[int, int]],
        reducer: Reducer,
    ) -> None:
        """File what finished since the last round: leaves go to the
        reduction (or are isolated), combine tasks report their errors."""
        while self._finished:
            future = self._finished.popleft()
            if not future.done():
                # lost with its worker since: Dask computes it again, and a
                # done-callback fires once, so ask for the next one
                future.add_done_callback(self._wake_up)
                continue
            if future in in_flight:
                start, end = in_flight.pop(future)
                if future.status == "finished":
                    reducer.leaf_done(start, end, future)
                    self._progress.leaf_done(future, end - start)
                else:  # a poison sample is isolated, any other error raised
                    self._recover_leaf(future, start, end, plugin, in_flight, reducer)
            else:
                reducer.combine_finished(future)

    def _run_again(
        self,
        start: int,
        stop: int,
        plugin: UtilityRef,
        in_flight: dict[Future, tuple[int, int]],
        reducer: Reducer,
    ) -> None:
        """Run ``[start, stop)`` again under new keys (its state was lost),
        around the samples already recorded as failed."""
        tag = self._isolation.tag()
        position = start
        for index in sorted(i for i in self._isolation.failed if start <= i < stop):
            if index > position:
                leaf = self._submit_leaf(plugin, position, index, tag=tag)
                in_flight[leaf] = (position, index)
            self._add_failed_sample(index, reducer)
            position = index + 1
        if position < stop:
            leaf = self._submit_leaf(plugin, position, stop, tag=tag)
            in_flight[leaf] = (position, stop)

    def _add_failed_sample(self, index: int, reducer: Reducer) -> None:
        """Sample ``index``, recorded as failed, goes to the reduction as its
        empty state (a fresh key each time: an earlier one may be lost)."""
        failed = submit_packed(
            self.client,
            failed_sample_task,
            self.plan,
            index,
            self._isolation.failed[index],
            key=f"daskval-failed-{self.run_id}-{index}-{self._isolation.tag()}",
        )
        reducer.leaf_done(index, index + 1, failed)

    def _release(self, in_flight: dict[Future, tuple[int, int]]) -> None:
        """Give up the run's remaining tasks.

        Only leaves not yet finished are cancelled (so that queued ones never
        take a thread): no leaf has a dependent before it finishes. Every
        other future (combines, links, views, finished leaves) is released
        by dropping the last reference to it. Cancelling a task together
        with its dependents (a chain of links, a leaf and its combine) makes
        the scheduler cancel the dependents first and then fail an
        assertion (``assert ts.who_wants`` in ``Scheduler.stimulus_cancel``),
        after which it drops the client: the user's own futures on it with
        it.
        """
        pending = [f for f in in_flight if not f.done()]
        self._finished.clear()
        if pending:
            self.client.cancel(pending)
        stop_run_on_workers(self.client, self.run_id)  # and those running

    def _task_deadline(self) -> float | None:
        """When the run's tasks stop by the wall clock: the end of its time
        budget, plus a margin for the loop to stop first (None: no budget)."""
        left = self._seconds_left()
        return None if left is None else time.time() + left + _TASK_DEADLINE_MARGIN

    def _sample_cap(self, anchor_evaluations: int) -> int | None:
        """An upper bound on the samples the run may hold (exact for fixed costs).

        With a varying cost per sample, evaluation budgets are cut exactly by
        the merge tasks, which see every sample's cost.
        """
        plan = self.plan
        return planned_samples(
            self.spec.stop,
            anchor_evaluations,
            plan.fixed_evaluations_per_sample(),
            plan.sample_limit(),
        )

    def _task_sizer(self, n_threads: int) -> TaskSizer:
        """Sizes the run's tasks from what it measures (after the broadcast:
        a sharded run bounds its tasks)."""
        settings, plan = self.settings, self.plan
        sizer = TaskSizer(
            n_players=plan.n,
            target_task_seconds=settings.target_task_seconds,
            samples_per_task=settings.samples_per_task,
            seconds_left=self._seconds_left,
        )
        if self._shards is not None:
            sizer.max_samples_per_task = self._shards.sharding.max_samples_per_task
        if settings.samples_per_task is None:
            sizer.threads_per_core = _threads_per_core(self.client, n_threads)
            sizer.state_bytes = _bytes_per_leaf(initial_partial(plan))
        return sizer

    def _seconds_left(self) -> float | None:
        stop = self.spec.stop
        if stop is None:
            return None
        return stop.seconds_left(time.monotonic() - self._begin)

    def _stop_reason(self) -> str | None:
        """Why the run must stop now: cancelled, or its time is up (or None)."""
        if self._cancel.is_set():
            return self._cancel_status
        left = self._seconds_left()
        return "time" if left is not None and left <= 0 else None

    def _raise_if_stopped(self, future: Future, what: str) -> None:
        """Wait for ``future``; a cancel or the end of the time budget first
        ends the run with an error naming ``what`` was still running."""
        reason = wait_or_stop(future, self._stop_reason)
        if reason is None:
            return
        self.client.cancel([future])
        when = "its time budget ran out" if reason == "time" else f"it was {reason}"
        raise ValuationError(
            f"the run stopped before any sample: {when} while {what} were being "
            "evaluated. If a fit may hang, bound each evaluation with "
            "ModelUtility(..., timeout=seconds)."
        )

    def _wait_for(
        self, future: Future, start: int, end: int, timeout: float
    ) -> float | None:
        """Wait for the probe leaf; its seconds per sample.

        None, and the loop starts one-sample tasks, when the probe has not
        finished after ``timeout`` (a task's target: its samples are longer,
        and one sample a task is their size; waiting for a sample of seconds
        would leave every other thread idle), when it killed its workers
        (the loop isolates it), or when the run is cancelled or out of time
        first (the loop then stops).
        """
        deadline = time.monotonic() + timeout

        def stop_or_long() -> str | None:
            return "long" if time.monotonic() >= deadline else self._stop_reason()

        if wait_or_stop(future, stop_or_long, poll=0.01) is not None:
            return None
        try:
            partial: Partial = future.result()
        except Exception:
            if is_killed_worker(future):
                return None
            self._raise_task_failure(future, start, end)
            raise
        return max(partial.compute_seconds / max(partial.n_samples, 1), 1e-6)

    def _recover_leaf(
        self,
        future: Future,
        start: int,
        end: int,
        plugin: UtilityRef,
        in_flight: dict[Future, tuple[int, int]],
        reducer: Reducer,
    ) -> None:
        """A leaf that did not finish: bisect it if its workers died, else raise.

        A range whose task ended in KilledWorker runs again as two halves
        (new keys), down to a single sample; one that keeps killing its
        workers is merged as a failed sample (see ``engine.faults``).
        """
        if not is_killed_worker(future):
            self._raise_task_failure(future, start, end)
        isolation = self._isolation
        ranges = isolation.next_ranges(start, end)
        logger.warning(
            "the task over samples [%d, %d) killed its workers (KilledWorker); %s",
            start,
            end,
            f"running {ranges} again" if ranges else f"sample {start} is failed",
        )
        for first, stop in ranges:
            leaf = self._submit_leaf(plugin, first, stop, tag=isolation.tag())
            in_flight[leaf] = (first, stop)
        if not ranges:
            self._add_failed_sample(start, reducer)

    def _raise_task_failure(self, future: Future, start: int, end: int) -> None:
        where = f"samples [{start}, {end})" if start >= 0 else "a merge"
        if future.status == "error":
            exc = future.exception()
            raise ValuationError(
                f"a task over {where} failed: {type(exc).__name__}: {exc}"
            ) from exc
        raise ValuationError(
            f"a task over {where} was {future.status}; was the "
            "cluster restarted or the client closed during the run?"
        )

    def _make_results(
        self, state: Partial, status: str, begin: float, task_bytes: int, client: Client
    ) -> dict[str, ValuationResult]:
        import dask
        import distributed
        import sklearn

        from daskval._version import __version__

        plan, spec = self.plan, self.spec
        outputs = plan.estimates(state.moments) or {
            spec.method_name: plan.estimate(state.moments)
        }
        stats = state.eval_stats
        _log_evaluation_problems(stats)
        first_values, first_stderr, _ = next(iter(outputs.values()))
        self._progress.trace.record(
            time.monotonic() - begin,
            state.stop,
            state.n_evaluations,
            first_values,
            first_stderr,
        )
        metadata = {
            **spec.describe(),
            "plan": plan.describe(),
            "utility": spec.utility.describe(),
            "utility_fingerprint": spec.utility.fingerprint(),
            "run_id": self.run_id,
            "n_workers": len(client.nthreads()),
            "elapsed_seconds": time.monotonic() - begin,
            "compute_seconds": state.compute_seconds,
            "task_bytes": task_bytes,
            "max_fetch_bytes": self._progress.max_fetch_bytes,
            "accumulator_bytes": initial_partial(plan).nbytes,
            "warnings": dict(stats.warnings),
            "n_failed": stats.n_failed,
            "memo": run_metadata(stats, self.settings.memo is not False, client),
            "failures": dict(stats.failures),
            "first_failure": stats.first_failure,
            "failed_samples": self._isolation.failed_before(state.stop),
            "merge_chain_restarts": self._chain_generation,
            "sharding": self._sharding,
            "tree_combines": self._tree_combines,
            "trace": self._progress.trace.to_dict(),
            "budget_exhausted": state.exhausted,
            "checkpoint": _checkpoint_metadata(self.settings, self._checkpoint_error),
            "versions": {
                "daskval": __version__,
                "dask": dask.__version__,
                "distributed": distributed.__version__,
                "scikit-learn": sklearn.__version__,
                "numpy": np.__version__,
            },
        }
        names = getattr(getattr(spec.utility, "data", None), "names", None)
        return {
            output: ValuationResult(
                values,
                stderr,
                counts,
                names=names,
                n_samples=state.stop,
                n_evaluations=stats.n_evaluations,
                n_failed=stats.n_failed,
                status=status,
                metadata={**metadata, "output": output},
            )
            for output, (values, stderr, counts) in outputs.items()
        }


def _checkpoint_metadata(settings: RunSettings, error: str | None) -> dict[str, Any]:
    """Where the run saved its state, where it resumed from, and any failure."""
    resume = settings.resume
    return {
        "path": None if settings.checkpoint is None else str(settings.checkpoint),
        "interval_seconds": settings.checkpoint_interval,
        "resumed_from": None if resume is None else str(resume.path),
        "resumed_samples": None if resume is None else resume.n_samples,
        "error": error,
    }


def _cluster_lost(exc: BaseException, client: Client) -> bool:
    """True when ``exc`` says the scheduler or this client went away (not a
    task's own error)."""
    import asyncio
    import concurrent.futures

    from distributed.comm.core import CommClosedError

    if getattr(client, "status", "running") not in ("running", "newly-created"):
        return True
    lost_types = (
        concurrent.futures.CancelledError,
        asyncio.CancelledError,
        CommClosedError,
    )
    seen: BaseException | None = exc
    for _ in range(10):  # the chain of causes, bounded
        if seen is None:
            return False
        if isinstance(seen, lost_types):
            return True
        seen = seen.__cause__
    return False


def _bytes_per_leaf(empty: Partial) -> int:
    """The state bytes one leaf makes the reduction move and merge.

    A statistic that travels as its samples (CoalitionSums) is dense only in
    the chain's prefix, which takes a group of FANIN**2 leaves per link: per
    leaf, a FANIN**2-th of its dense form (the samples' own bytes are small
    beside it). Any other statistic is its full size in every leaf.
    """
    total = 0
    for statistic in empty.moments.values():
        if isinstance(statistic, CoalitionSums):
            total += statistic.dense_nbytes // FANIN**2
        else:
            total += statistic.nbytes
    return total


def _threads_per_core(client: Client, n_threads: int) -> float:
    """Worker threads per core of the hosts they run on (1 if unknown):
    above 1 when threads share cores, as in a simulation with sleeping
    calls, and the engine's own CPU then has fewer cores than threads."""
    from urllib.parse import urlsplit

    try:
        counts = client.run(os.cpu_count)
    except Exception:
        return 1.0
    cores: dict[str, int] = {}
    for address, count in counts.items():
        host = urlsplit(str(address)).hostname or str(address)
        cores[host] = max(cores.get(host, 0), int(count or 1))
    return max(1.0, n_threads / max(1, sum(cores.values())))


def _log_evaluation_problems(stats: EvalStats) -> None:
    """One line per kind of failure and warning, not one per evaluation."""
    if stats.n_failed:
        logger.warning(
            "%d of %d utility evaluations failed and scored the default",
            stats.n_failed,
            stats.n_evaluations,
        )
        for kind, count in stats.failures.items():
            logger.warning("  %d x %s", count, kind)
        logger.debug("the first failure:\n%s", stats.first_failure)
    for message, count in stats.warnings.items():
        logger.warning("model warnings during the run: %s (%d times)", message, count)


def _check_budget_pays_for_a_sample(spec: RunSpec) -> None:
    """Refuse a count budget that the one-off anchor evaluations already use up."""
    stop, plan = spec.stop, spec.plan
    if stop is None:
        return
    anchors = len(plan.anchors())
    cheapest = plan.fixed_evaluations_per_sample() or 0
    spent = np.array([anchors, anchors + cheapest])
    if stop.count_stop(spent, 0) == 0:
        raise ValueError(
            f"stop={stop.describe()} cannot pay for a single sample: the run "
            f"spends {anchors} evaluations on u(empty) and u(N) first and "
            f"{cheapest or 'at least 1'} per sample; raise the budget"
        )


def _checkpoint_path(value: Any, name: str, spec: RunSpec) -> Path | None:
    """``value`` of argument ``name`` as an absolute path (True: the default one)."""
    import os

    if value is None or value is False:
        return None
    if value is True:
        return default_checkpoint_path(spec)
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise TypeError(
            f"{name} must be a file path, True (the default location) or None, "
            f"got {type(value).__name__}"
        )
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        raise ValueError(f"{name}={str(value)!r} is a directory; name a file")
    return path


def _checkpoint_settings(
    spec: RunSpec,
    checkpoint: Any,
    checkpoint_interval: Any,
    resume: Any,
) -> tuple[Path | None, float, Checkpoint | None]:
    """Check the checkpoint arguments (before any cluster work).

    ``resume`` is loaded and checked against this run; ``checkpoint=None``
    then keeps writing to the resumed file.
    """
    from daskval._validation import check_positive_number

    interval = check_positive_number(checkpoint_interval, "checkpoint_interval")
    target = _checkpoint_path(checkpoint, "checkpoint", spec)
    source = _checkpoint_path(resume, "resume", spec)
    restored = None
    if source is not None:
        try:
            restored = load_checkpoint(source)
            check_identity(restored, run_identity(spec, spec.plan))
            check_structure(restored, spec.plan)
        except CheckpointError as exc:
            raise CheckpointError(f"resume={str(resume)!r}: {exc}") from exc
        if checkpoint is None:
            target = source
    if target is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"checkpoint={str(target)!r}: cannot create its directory: {exc}"
            ) from exc
    return target, interval, restored


def check_run_options(
    spec: RunSpec,
    *,
    samples_per_task: int | None = None,
    memo: bool | MemoConfig | None = None,
    checkpoint: str | os.PathLike[str] | bool | None = None,
    checkpoint_interval: float = 60.0,
    resume: str | os.PathLike[str] | bool | None = None,
    progress: bool | None = False,
    dashboard: bool | str = True,
) -> tuple[RunSettings, str, bool | None]:
    """Every option of a run checked, before any client is looked up or
    started: the settings, the dashboard mode and the bar's mode."""
    from daskval.dashboard.monitor import check_dashboard, check_progress

    if not isinstance(spec, RunSpec):
        raise TypeError(f"the engine runs a RunSpec, got {type(spec).__name__}")
    progress = check_progress(progress)
    dashboard_mode = check_dashboard(dashboard)
    if samples_per_task is not None:
        from daskval._validation import check_positive_int

        check_positive_int(samples_per_task, "samples_per_task")
    _check_budget_pays_for_a_sample(spec)
    path, interval, restored = _checkpoint_settings(
        spec, checkpoint, checkpoint_interval, resume
    )
    if memo is None:
        memo = spec.default_memo
    if not isinstance(memo, (bool, MemoConfig)):
        raise TypeError(
            f"memo must be True, False, None or a MemoConfig, got {type(memo).__name__}"
        )
    settings = RunSettings(
        samples_per_task=samples_per_task,
        memo=memo,
        checkpoint=path,
        checkpoint_interval=interval,
        resume=restored,
    )
    return settings, dashboard_mode, progress


def start_run(spec: RunSpec, *, client: Any = None, **options: Any) -> ValuationHandle:
    """Validate, connect and start a run in a background thread (the options
    are those of :func:`check_run_options`)."""
    settings, dashboard_mode, progress = check_run_options(spec, **options)
    resolved = resolve_client(client)
    # the engine decides: broadcast the utility, or shard it (too large to
    # broadcast, or the utility asks for shards)
    settings.rows_per_shard = rows_per_shard(resolved, spec.utility)
    if settings.rows_per_shard is None:
        # a dataset the workers cannot hold is refused before the dashboard
        # or the broadcast touches the cluster
        check_fits_in_memory(resolved, spec.utility)
    monitor = functools.partial(_make_monitor, spec, resolved, dashboard_mode, progress)
    return ValuationHandle(spec, resolved, settings, monitor).start()


def _make_monitor(
    spec: RunSpec,
    client: Client,
    dashboard: str,
    progress: bool | None,
    run_id: str,
) -> RunMonitor:
    """The run's monitor: the dashboard connected (or its fallback started)
    and the console bar decided, before the run's thread starts."""
    from daskval.dashboard.monitor import make_monitor

    stop = spec.stop
    return make_monitor(
        client,
        run_id=run_id,
        method=spec.method_name,
        utility=spec.utility.describe(),
        stop="none" if stop is None else stop.describe(),
        names=spec.names,
        dashboard=dashboard,
        progress=progress,
        quiet=progress is False,
    )
