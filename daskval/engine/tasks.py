"""Functions that run on the workers.

Tasks carry the name of the broadcast utility, never the utility itself: the
bytes shipped per task do not grow with the dataset or the model.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from distributed import WorkerPlugin, get_worker

from daskval.accumulate import Partial
from daskval.plan import Plan, evaluate_anchors, evaluate_range, initial_partial
from daskval.stopping import StoppingCriterion
from daskval.utility import EvalStats, Utility

__all__ = ["UtilityPlugin", "anchors_task", "leaf_task", "merge_task"]


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


def worker_utility(plugin_name: str) -> Utility:
    """The utility broadcast under ``plugin_name`` to this worker."""
    worker = get_worker()
    plugin: Any = worker.plugins.get(plugin_name)
    if plugin is None:
        raise RuntimeError(
            f"worker {worker.address} has no daskval utility "
            f"{plugin_name!r}; was it unregistered during the run?"
        )
    utility: Utility = plugin.utility
    return utility


def anchors_task(plugin_name: str, plan: Plan) -> tuple[list[float], EvalStats, float]:
    """Evaluate the plan's anchor coalitions once."""
    return evaluate_anchors(plan, worker_utility(plugin_name))


def leaf_task(plugin_name: str, plan: Plan, start: int, stop: int) -> Partial:
    """Samples ``start .. stop-1`` as a partial state."""
    return evaluate_range(plan, worker_utility(plugin_name), start, stop)


def merge_task(
    prefix: Partial | EvalStats,
    stop: StoppingCriterion | None,
    plugin_name: str,
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
