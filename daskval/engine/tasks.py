"""Functions that run on the workers.

Tasks carry the name of the broadcast utility, never the utility itself: the
bytes shipped per task do not grow with the dataset or the model.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from distributed import WorkerPlugin, get_worker

from daskval.accumulate import Partial
from daskval.engine.memo import MemoizedUtility, worker_memo
from daskval.engine.reduce import FANIN, Layout
from daskval.plan import Plan, evaluate_anchors, evaluate_range, initial_partial
from daskval.stopping import StoppingCriterion
from daskval.utility import EvalStats, Utility, UtilityChain, WrappedUtility

__all__ = [
    "UtilityPlugin",
    "StoppableUtility",
    "TaskStopped",
    "UserCodeInterrupted",
    "UtilityRef",
    "anchors_task",
    "combine_task",
    "failed_sample_task",
    "fold",
    "leaf_task",
    "merge_task",
    "stop_run_on_workers",
    "user_code",
    "view_task",
]


class UserCodeInterrupted(RuntimeError):
    """A utility raised a BaseException that is not an Exception (SystemExit,
    KeyboardInterrupt, ...) on a worker; the message carries its traceback.

    Raised in the worker thread in place of the original: Dask reports an
    Exception as the task's error, while a SystemExit escaping a worker
    thread leaves the task running forever, and the run waiting on it.
    """


@contextlib.contextmanager
def user_code() -> Iterator[None]:
    """Turn a BaseException from the utility into :class:`UserCodeInterrupted`."""
    try:
        yield
    except Exception:
        raise
    except BaseException as exc:
        raise UserCodeInterrupted(
            f"the utility raised {type(exc).__name__} on a worker (a "
            "BaseException, not an Exception, so it was not counted as a "
            f"failed evaluation):\n{traceback.format_exc()}"
        ) from None


@dataclass(frozen=True)
class UtilityRef:
    """What a task names to get its utility on a worker.

    Attributes
    ----------
    plugin : str
        The name the utility was broadcast under.
    memo : bool
        Evaluate through the worker's memo (when the worker has one).
    run : str or None
        The run's id: once the run is over (:func:`stop_run_on_workers`),
        its tasks still running stop at their next evaluation.
    deadline : float or None
        Wall-clock seconds (``time.time()``) after which the run's tasks
        stop at their next evaluation: a time budget bounds a task's run
        time, however many samples it holds.
    """

    plugin: str
    memo: bool = False
    run: str | None = None
    deadline: float | None = None


class UtilityPlugin(WorkerPlugin):
    """Holds one utility (data, model, scorer) on every worker.

    The scheduler keeps registered worker plugins and sets them up on every
    worker that joins or restarts, so the utility reaches late workers too,
    and, unlike scattered data, is never trimmed by the Active Memory Manager
    nor lost with a worker.
    """

    idempotent = True

    def __init__(self, utility: Utility, name: str) -> None:
        self.utility = utility
        self.name = name

    def setup(self, worker: Any) -> None:
        self.worker_address = worker.address

    def memoized(self, worker: Any) -> Utility:
        """The utility seen through the worker's memo (made once, then shared
        by the worker's threads); the plain utility if the worker has none."""
        memo = worker_memo(worker)
        if memo is None:
            return self.utility
        # plugins arrive unpickled without the lock: make it on first use
        lock = self.__dict__.setdefault("_memo_lock", threading.Lock())
        with lock:
            wrapped = self.__dict__.get("_memoized")
            if wrapped is None or wrapped.memo is not memo:
                wrapped = MemoizedUtility(self.utility, memo)
                self.__dict__["_memoized"] = wrapped
        return wrapped

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_memo_lock", None)
        state.pop("_memoized", None)
        return state


class TaskStopped(RuntimeError):
    """A task of a run that is over (cancelled, out of time or finished)
    stopped at its next evaluation; nothing waits for its result."""


# runs over, whose tasks still running stop (bounded: the newest kept)
_STOPPED_RUNS: dict[str, None] = {}
_MAX_STOPPED_RUNS = 1000


async def _mark_stopped(run: str) -> None:
    """Run on each worker: the tasks of ``run`` stop at their next evaluation.

    A coroutine: ``client.run(..., wait=False)`` accepts nothing else (a
    plain function fails on every worker with "Combination not supported",
    logged by the scheduler as an error).
    """
    _STOPPED_RUNS[run] = None
    while len(_STOPPED_RUNS) > _MAX_STOPPED_RUNS:
        del _STOPPED_RUNS[next(iter(_STOPPED_RUNS))]


def stop_run_on_workers(client: Any, run: str) -> None:
    """Tell every worker, without waiting, that ``run`` is over: a task of
    it still running (a leaf of ``samples_per_task=10**7``, say) gives its
    thread back at its next evaluation instead of computing for nothing."""
    with contextlib.suppress(Exception):  # a closed client: no workers to tell
        client.run(_mark_stopped, run, wait=False)


class StoppableUtility(WrappedUtility):
    """A utility that raises :class:`TaskStopped` instead of evaluating once
    its run is over or past its deadline."""

    def __init__(self, utility: Utility, run: str | None, deadline: float | None):
        super().__init__(utility)
        self.run = run
        self.deadline = deadline

    def check(self) -> None:
        """Raise :class:`TaskStopped` if the run is over or out of time."""
        if self.run is not None and self.run in _STOPPED_RUNS:
            raise TaskStopped(f"run {self.run} is over")
        if self.deadline is not None and time.time() > self.deadline:
            raise TaskStopped(f"run {self.run} is past its time budget")

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        self.check()
        return self.utility.evaluate(players, stats)

    def chain(self) -> UtilityChain:
        chain = self.utility.chain()
        if type(chain) is UtilityChain:
            return UtilityChain(self)
        return _StoppableChain(self, chain)


class _StoppableChain(UtilityChain):
    """A path-dependent chain, checked before each of its evaluations."""

    def __init__(self, owner: StoppableUtility, chain: UtilityChain) -> None:
        super().__init__(owner)
        self._owner, self._chain = owner, chain

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        self._owner.check()
        return self._chain.evaluate(players, stats)

    def __getattr__(self, name: str) -> Any:
        if name in ("_owner", "_chain"):
            raise AttributeError(name)
        return getattr(self._chain, name)


def worker_utility(ref: UtilityRef | str) -> Utility:
    """The utility broadcast under ``ref`` to this worker (through the memo
    when ``ref.memo``; stoppable when ``ref`` names its run)."""
    utility = _broadcast_utility(ref)
    if isinstance(ref, UtilityRef) and (ref.run is not None or ref.deadline):
        return StoppableUtility(utility, ref.run, ref.deadline)
    return utility


def _broadcast_utility(ref: UtilityRef | str) -> Utility:
    """The utility broadcast under ``ref`` to this worker, as it is there."""
    if isinstance(ref, str):
        ref = UtilityRef(ref)
    worker = get_worker()
    plugin: Any = worker.plugins.get(ref.plugin)
    if plugin is None:
        raise RuntimeError(
            f"worker {worker.address} has no daskval utility "
            f"{ref.plugin!r}; was it unregistered during the run?"
        )
    if ref.memo:
        memoized: Utility = plugin.memoized(worker)
        return memoized
    utility: Utility = plugin.utility
    return utility


def anchors_task(
    plugin_name: UtilityRef | str, plan: Plan
) -> tuple[list[float], EvalStats, float]:
    """Evaluate the plan's anchor coalitions once."""
    with user_code():
        return evaluate_anchors(plan, worker_utility(plugin_name))


def leaf_task(
    plugin_name: UtilityRef | str, plan: Plan, start: int, stop: int
) -> Partial:
    """Samples ``start .. stop-1`` as a partial state."""
    with user_code():
        return evaluate_range(plan, worker_utility(plugin_name), start, stop)


def failed_sample_task(plan: Plan, index: int, message: str) -> Partial:
    """Sample ``index`` recorded as failed (it killed its workers): an empty
    range that keeps the merged ranges contiguous (see ``engine.faults``)."""
    from daskval.engine.faults import failed_partial

    return failed_partial(plan, index, message)


def fold(parts: list[Partial] | tuple[Partial, ...]) -> Partial:
    """Adjacent states merged left to right: the one fold every node of the
    reduction uses, so a unit combined on one worker and a unit folded inside
    a merge on another are the same bits."""
    state = parts[0]
    for part in parts[1:]:
        state = state.merge(part)
    return state


def combine_task(keep_costs: bool, *parts: Partial) -> Partial:
    """Adjacent ``parts`` folded into one, in sample order (a slot's pieces,
    a unit or a group of the reduction, see ``engine.reduce``).

    With ``keep_costs`` the utility calls per sample are kept, concatenated
    (4 bytes a sample), so the chain can still cut an evaluation budget
    exactly at the end of the combined range.
    """
    costs: np.ndarray | None = None
    if keep_costs:
        arrays = [part.sample_evaluations for part in parts]
        if any(a is None for a in arrays):
            raise ValueError("a part without its per-sample costs")
        costs = np.concatenate(arrays)  # type: ignore[arg-type]
    return replace(fold(parts), sample_evaluations=costs)


def merge_task(
    prefix: Partial | EvalStats,
    stop: StoppingCriterion | None,
    plugin_name: UtilityRef | str,
    plan: Plan,
    layout: Layout,
    *parts: Partial,
) -> Partial:
    """Append ``parts`` (laid out as ``layout`` says) to ``prefix``: a link
    of the chain, or a view.

    The first link of a run gets the anchors' counters instead of a state
    and starts from the empty state.

    When sample and evaluation counts decide where the run ends
    (``stop.count_stop``), the state is cut at exactly that sample: the
    units before it are appended, then its unit's slots, and the slot it
    falls in is re-run up to it; the state is marked exhausted, so the
    result never depends on which task finished first.
    """
    state = initial_partial(plan, prefix) if isinstance(prefix, EvalStats) else prefix
    if state.exhausted or not parts:
        return replace(state, sample_evaluations=None)
    units = _units(layout, parts)
    end = _count_stop(stop, state, parts, plan)
    if end is None or end >= parts[-1].stop:
        if layout.whole:
            state = state.merge(fold([fold(unit) for unit in units]))
        else:
            state = _append_units(state, units, parts[-1].stop)
    elif end > state.stop:
        state = _append_units(state, units, end, plugin_name, plan)
    if end is not None:
        # never mutate a task's input: Dask may hold (or recompute from) it
        state = replace(state, exhausted=True)
    return replace(state, sample_evaluations=None)


def view_task(
    prefix: Partial | EvalStats,
    stop: StoppingCriterion | None,
    plugin_name: UtilityRef | str,
    plan: Plan,
    layout: Layout,
    *parts: Partial,
) -> Partial:
    """A view: :func:`merge_task`'s state, expanded for the client to read
    (the client would otherwise expand pending samples itself, serially,
    at every progress update)."""
    return merge_task(prefix, stop, plugin_name, plan, layout, *parts).expanded()


def _units(layout: Layout, parts: tuple[Partial, ...]) -> list[list[Partial]]:
    """The parts grouped per unit (a combined unit or group: a list of one)."""
    if not layout.sizes:
        return [list(parts)]
    units, position = [], 0
    for size in layout.sizes:
        count = max(size, 1)
        units.append(list(parts[position : position + count]))
        position += count
    if position != len(parts):
        raise ValueError(f"layout {layout} does not match {len(parts)} parts")
    return units


def _append_units(
    state: Partial,
    units: list[list[Partial]],
    end: int,
    plugin_name: UtilityRef | str | None = None,
    plan: Plan | None = None,
) -> Partial:
    """Append the samples before ``end``: each full unit's value, then the
    slots of the unit ``end`` falls in, the last one re-run up to ``end``."""
    for unit in units:
        if unit[-1].stop <= end and (len(unit) == 1 or len(unit) == FANIN):
            state = state.merge(fold(unit))
            continue
        for part in unit:
            if part.stop <= end:
                state = state.merge(part)
                continue
            if part.start < end:
                # the budget ends inside this task's range (or, were the safe
                # bound wrong, inside a combined unit: still exact, only
                # slower)
                assert plugin_name is not None and plan is not None
                utility = worker_utility(plugin_name)
                with user_code():
                    tail = evaluate_range(plan, utility, part.start, end)
                state = state.merge(tail)
            return state
    return state


def _count_stop(
    stop: StoppingCriterion | None,
    state: Partial,
    parts: tuple[Partial, ...],
    plan: Plan,
) -> int | None:
    """Where counts end the run, judged on the samples up to the last part's
    end (combined parts of a plan with a constant cost keep no costs)."""
    if stop is None:
        return None
    fixed = plan.fixed_evaluations_per_sample()
    costs = []
    for part in parts:
        if part.sample_evaluations is not None:
            costs.append(part.sample_evaluations)
        else:
            assert fixed is not None, "a varying-cost range without its costs"
            costs.append(np.full(part.n_samples, fixed, dtype=np.int64))
    spent = state.n_evaluations + np.concatenate(
        ([0], np.cumsum(np.concatenate(costs), dtype=np.int64))
    )
    end = stop.count_stop(spent, state.stop)
    return None if end is None else max(end, state.stop)
