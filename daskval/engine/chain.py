"""The reduction on the cluster: combine tasks, the chain of links, views,
and restarts after a lost worker (the shape is ``engine.reduce``'s).

The run loop hands this object its slots and finished leaves; it submits
the combine tasks the grid asks for, appends every complete group to the
chain, and, when asked, fetches the newest state without ever blocking the
loop: a view (the newest link followed by what is finished after it), or
the newest link itself when nothing follows.

A link lost with its worker would be recomputed from its lineage, which
reaches back through every link to the run's first leaf. The chain is
dropped instead and started again from the state the client fetched last
(:meth:`Reducer.restart`); the slots after it are combined again, and those
whose states went into dropped units run again. Every range still enters
the new chain exactly once, in order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from distributed import Client, Future

from daskval.accumulate import Partial
from daskval.engine.faults import chain_is_broken, is_killed_worker
from daskval.engine.packed import submit_packed
from daskval.engine.reduce import Layout, Slot, SlotGrid
from daskval.engine.tasks import UtilityRef, combine_task, merge_task, view_task
from daskval.exceptions import ValuationError
from daskval.plan import Plan
from daskval.stopping import StoppingCriterion
from daskval.utility import EvalStats

__all__ = ["Reducer"]

logger = logging.getLogger("daskval")

# restarts without a fetched state past the last one before giving up
_MAX_RESTARTS = 20
# seconds to wait for a finished state (lost meanwhile: try again later)
_FETCH_TIMEOUT = 30.0
# Combines, links and views run before any queued leaf: the chain is serial,
# and a link queued behind a worker's backlog of leaves (the loop keeps a few
# per thread in flight) would wait that backlog out at every step; at 128
# threads that made the chain, not the leaves, set the pace.
_REDUCTION_PRIORITY = {"priority": 100}


def _not_erred(future: Future) -> bool:
    return bool(future.status != "error")


def _base_task(state: Partial) -> Partial:
    """The state a restarted chain starts from (its graph carries it once)."""
    return state


class Reducer:
    """One run's reduction on the cluster.

    Parameters
    ----------
    client : distributed.Client
    run_id : str
        Names the run's task keys.
    plan, stop, plugin
        What the merge tasks need (the plan's statistics, the count budget,
        the utility for re-running the slot a budget ends in).
    base : Partial or EvalStats
        The state before the first slot: a resumed state, or the anchors'
        counters (the first link then starts from the empty state).
    keep_costs : bool
        Combined states keep their per-sample costs (an evaluation budget
        with a varying cost per sample).
    wake : callable
        Called (as a done-callback) with every combine, link and view
        future, so the loop wakes when one finishes.
    """

    def __init__(
        self,
        client: Client,
        run_id: str,
        plan: Plan,
        stop: StoppingCriterion | None,
        plugin: UtilityRef,
        base: Partial | EvalStats,
        *,
        keep_costs: bool,
        wake: Callable[[Future], None],
    ) -> None:
        self.client, self.run_id, self.plan = client, run_id, plan
        self.stop, self.plugin = stop, plugin
        self.keep_costs = keep_costs
        self._wake = wake
        start = base.stop if isinstance(base, Partial) else 0
        self.grid = SlotGrid(self._combine, start=start)
        # the newest link (or the base state: embedded in the first link)
        self._prefix: Future | Partial | EvalStats = base
        self.links: deque[Future] = deque()  # oldest first
        self._fetch: Future | None = None  # a view or link being fetched
        self._seq = 0  # makes every combine and view key unique
        self._restarts_in_a_row = 0
        self._combine_failed = False
        self.generation = 0  # restarts of the chain so far

    # -- feeding ----------------------------------------------------------------
    def leaf_done(self, start: int, stop: int, future: Future) -> None:
        """A finished task over ``[start, stop)``; appends what it completes."""
        self.grid.piece_done(start, stop, future)
        self._append_complete_groups()

    def combine_finished(self, future: Future) -> bool:
        """File a finished (or erred) future: True if it was a combine task.

        A combine that died with its workers makes the next round restart
        the chain; any other error of one is raised.
        """
        if not self.grid.finished(str(future.key)):
            return False
        if future.status == "error":
            if not is_killed_worker(future):
                exc = future.exception()
                raise ValuationError(
                    f"a combine task failed: {type(exc).__name__}: {exc}"
                ) from exc
            self._combine_failed = True
        return True

    def set_safe_stop(self, safe_stop: int | None) -> None:
        self.grid.set_safe_stop(safe_stop)
        self._append_complete_groups()

    def mark_final(self, n_slots: int) -> None:
        """No slot follows the ``n_slots``-th: the last group may be short."""
        if self.grid.final is None:
            self.grid.final = n_slots
            self._append_complete_groups()

    @property
    def merged_stop(self) -> int:
        """The end of the newest link's range."""
        return self.grid.chain_stop

    def _combine(self, futures: list[Any], label: str) -> Future:
        self._seq += 1
        future = submit_packed(
            self.client,
            combine_task,
            self.keep_costs,
            *futures,
            key=f"daskval-combine-{self.run_id}-{label}-{self._seq}",
            submit_kwargs=_REDUCTION_PRIORITY,
        )
        future.add_done_callback(self._wake)
        return future

    def _append_complete_groups(self) -> None:
        while (link := self.grid.next_link()) is not None:
            layout, parts, end = link
            key = f"daskval-merge-{self.run_id}-{end}{self._suffix()}"
            future = self._submit_merge(layout, parts, key)
            self.links.append(future)
            self._prefix = future

    # -- fetching ---------------------------------------------------------------
    def request_state(self) -> None:
        """Start fetching the newest state, unless a fetch is under way."""
        if self._fetch is None:
            self._fetch = self._newest()

    def _newest(self) -> Future | None:
        """A view of everything merged without a gap, or the newest link
        when nothing follows it (None: nothing to fetch yet)."""
        view = self.grid.view()
        if view is None:
            return self.links[-1] if self.links else None
        layout, parts, end = view
        self._seq += 1
        return self._submit_merge(
            layout, parts, f"daskval-view-{self.run_id}-{end}-{self._seq}", view=True
        )

    def _submit_merge(
        self, layout: Layout, parts: list[Any], key: str, view: bool = False
    ) -> Future:
        """A merge task appending ``parts`` to the newest link: a link of
        the chain, or a view."""
        future = submit_packed(
            self.client,
            view_task if view else merge_task,
            self._prefix,
            self.stop,
            self.plugin,
            self.plan,
            layout,
            *parts,
            key=key,
            submit_kwargs=_REDUCTION_PRIORITY,
        )
        future.add_done_callback(self._wake)
        return future

    def fetched(self) -> Partial | None:
        """The state being fetched, once it is there (never blocks long)."""
        future = self._fetch
        if future is None or not future.done():
            return None
        self._fetch = None
        if future.status != "finished":
            return None  # the next round sees why (broken)
        try:
            # bounded: a result lost meanwhile would otherwise be awaited
            # through a recomputation of the whole chain
            state: Partial = future.result(timeout=_FETCH_TIMEOUT)
        except Exception:
            return None
        # links and slots the state covers are no longer needed by the client
        while len(self.links) > 1 and self.links[0] is not future:
            self.links.popleft()
        self.grid.forget_before(state.stop)
        return state

    def newest_state(self, timeout: float = 30.0) -> Partial | None:
        """Everything merged now, waited for (the end of a run stopped early)."""
        # a fetch under way is dropped, not cancelled: it may be the newest
        # link itself, which the new view needs
        self._fetch = None
        future = self._newest()
        if future is None:
            return None
        try:
            state: Partial = future.result(timeout=timeout)
        except Exception:
            return None
        return state

    # -- losses -----------------------------------------------------------------
    def broken(self) -> bool:
        """Whether a link lost its result, or a link or combine died with
        its workers (any other failure of a link is raised)."""
        return self._combine_failed or chain_is_broken(list(self.links))

    def note_progress(self) -> None:
        """A fetched state moved past the last: restarts in a row start over."""
        self._restarts_in_a_row = 0

    def restart(
        self,
        state: Partial,
        anchor_stats: EvalStats,
        alive: Callable[[Future], bool] | None = None,
    ) -> list[Slot]:
        """Start the chain again from the fetched ``state``; the slots to
        run again (their states were lost with dropped units, or erred, or
        are not ``alive``: by default every slot whose task did not err)."""
        self._restarts_in_a_row += 1
        if self._restarts_in_a_row > _MAX_RESTARTS:
            raise ValuationError(
                f"merged states were lost {self._restarts_in_a_row} times without "
                f"progress past sample {state.stop}; are workers dying repeatedly?"
            )
        self.generation += 1
        logger.warning(
            "a merged state was lost with its worker; merging again from the "
            "fetched state of %d samples",
            state.stop,
        )
        # dropped, not cancelled: cancelling a chain of links together makes
        # the scheduler fail an assertion and drop the client (see
        # ValuationHandle._release); unwanted, the scheduler forgets them
        self.links.clear()
        self._fetch = None
        self._combine_failed = False
        if state.stop == 0:
            self._prefix = anchor_stats
        else:
            # the state came from the cluster: a graph carries it this once
            self._prefix = submit_packed(
                self.client,
                _base_task,
                state,
                key=f"daskval-base-{self.run_id}-{self.generation}",
            )
        if alive is None:
            alive = _not_erred
        lost = self.grid.rebase(state.stop, alive=alive)
        self._append_complete_groups()
        return lost

    def _suffix(self) -> str:
        """Keys of a restarted chain differ from the dropped one's."""
        return f"-c{self.generation}" if self.generation else ""
