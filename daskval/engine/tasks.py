"""Functions that run on the workers.

Tasks carry the name of the broadcast utility, never the utility itself: the
bytes shipped per task do not grow with the dataset or the model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from distributed import WorkerPlugin, get_worker

from daskval.accumulate import Partial
from daskval.engine.memo import MemoizedUtility, worker_memo
from daskval.plan import Plan, evaluate_anchors, evaluate_range, initial_partial
from daskval.stopping import StoppingCriterion
from daskval.utility import EvalStats, Utility

__all__ = [
    "UtilityPlugin",
    "UtilityRef",
    "anchors_task",
    "failed_sample_task",
    "leaf_task",
    "merge_task",
]


@dataclass(frozen=True)
class UtilityRef:
    """What a task names to get its utility on a worker.

    Attributes
    ----------
    plugin : str
        The name the utility was broadcast under.
    memo : bool
        Evaluate through the worker's memo (when the worker has one).
    """

    plugin: str
    memo: bool = False


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


def worker_utility(ref: UtilityRef | str) -> Utility:
    """The utility broadcast under ``ref`` to this worker (through the memo
    when ``ref.memo``)."""
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
    return evaluate_anchors(plan, worker_utility(plugin_name))


def leaf_task(
    plugin_name: UtilityRef | str, plan: Plan, start: int, stop: int
) -> Partial:
    """Samples ``start .. stop-1`` as a partial state."""
    return evaluate_range(plan, worker_utility(plugin_name), start, stop)


def failed_sample_task(plan: Plan, index: int, message: str) -> Partial:
    """Sample ``index`` recorded as failed (it killed its workers): an empty
    range that keeps the merged ranges contiguous (see ``engine.faults``)."""
    from daskval.engine.faults import failed_partial

    return failed_partial(plan, index, message)


def merge_task(
    prefix: Partial | EvalStats,
    stop: StoppingCriterion | None,
    plugin_name: UtilityRef | str,
    plan: Plan,
    *leaves: Partial,
) -> Partial:
    """Append adjacent ``leaves`` to ``prefix``, in sample order.

    The first merge of a run gets the anchors' counters instead of a state
    and starts from the empty state.

    When sample and evaluation counts decide where the run ends
    (``stop.count_stop``), the state is cut at exactly that sample: a leaf
    that reaches past it is re-run up to it, and the state is marked
    exhausted, so the result never depends on which task finished first.
    """
    state = initial_partial(plan, prefix) if isinstance(prefix, EvalStats) else prefix
    for leaf in leaves:
        if state.exhausted:
            break
        end = _count_stop(stop, state, leaf)
        if end is None or end >= leaf.stop:
            state = state.merge(leaf)
        elif end > leaf.start:
            utility = worker_utility(plugin_name)
            state = state.merge(evaluate_range(plan, utility, leaf.start, end))
        if end is not None:
            # never mutate a task's input: Dask may hold (or recompute from) it
            state = replace(state, exhausted=True)
    return replace(state, sample_evaluations=None)


def _count_stop(
    stop: StoppingCriterion | None, state: Partial, leaf: Partial
) -> int | None:
    """Where counts end the run, judged on the samples up to the end of ``leaf``."""
    if stop is None:
        return None
    assert leaf.sample_evaluations is not None
    spent = state.n_evaluations + np.concatenate(
        ([0], np.cumsum(leaf.sample_evaluations, dtype=np.int64))
    )
    end = stop.count_stop(spent, state.stop)
    return None if end is None else max(end, state.stop)
