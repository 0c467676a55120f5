"""The sharded mode of the engine: a utility's rows split over the workers.

A utility that one worker cannot hold (or whose caller asks for shards, see
:class:`daskval.utility.ShardableUtility`) is split into a small *core*,
broadcast like any utility (``engine.broadcast``), and *shards* of
consecutive rows, each scattered to one worker (round robin, ``hash=False``).
A task over samples ``[start, stop)`` then becomes one small task per shard,
which runs on its shard's worker (pinned there, so that no shard is ever
copied to a second worker) and computes the shard's part of the range
(``shard_part_task``), and the leaf that joins the parts and runs the plan
(``sharded_leaf_task``). The leaf returns the same ``Partial`` as a broadcast
leaf: everything after it (the reduction, progress, the dashboard,
checkpoints, the result) is the code every run uses.

Scattered data is lost with its worker, and Dask then cancels every task
that depended on it, finished ones included (verified: a finished leaf and
its dependents turn ``cancelled`` with ``FutureCancelledError``). The run
loop therefore checks the shards' futures every round (:meth:`ShardSet.lost`);
when one is lost it re-scatters it from the client's copy to a live worker
and starts the reduction again from the last state it fetched, running
every range after it again under new keys (``ValuationHandle._recover_shards``),
so that every range is still merged exactly once.

Limits (not done yet): a sharded run serves plans without anchor coalitions
and with a fixed cost per sample (KNN-Shapley's); a range split by the
isolation of a sample that kills its workers (``engine.faults``) while a
shard is lost keeps its finished pieces, which are then cancelled, and the
run fails instead of recovering.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from distributed import Client, Future

from daskval.accumulate import Partial
from daskval.engine.faults import _MEMORY_SHARE, utility_nbytes
from daskval.engine.packed import submit_packed
from daskval.engine.tasks import UtilityRef, worker_utility
from daskval.plan import Plan, evaluate_range
from daskval.utility import ShardableUtility, ShardCore, Sharding, Utility

__all__ = [
    "ShardSet",
    "rows_per_shard",
    "shard_part_task",
    "sharded_leaf_task",
]

logger = logging.getLogger("daskval")

# a shard takes at most this share of what a worker may give a broadcast: a
# worker holds several shards, and the joined parts of its tasks
_SHARDS_PER_SHARE = 4
# seconds to wait for a scatter to a worker that may be going away
_SCATTER_TIMEOUT = 30.0


def rows_per_shard(client: Client, utility: Utility) -> int | None:
    """Rows per shard for a run of ``utility``, or None to broadcast it.

    The utility's own hint when it gives one; else, for a shardable utility
    larger than the share of the smallest worker's memory limit that a
    broadcast may take (:func:`daskval.engine.faults.check_fits_in_memory`),
    shards of a quarter of that share.
    """
    if not isinstance(utility, ShardableUtility):
        return None
    if utility.rows_per_shard_hint is not None:
        return int(utility.rows_per_shard_hint)
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:
        info = client.scheduler_info()
    limits = [
        int(w["memory_limit"])
        for w in info.get("workers", {}).values()
        if w.get("memory_limit")
    ]
    if not limits:
        return None
    share = _MEMORY_SHARE * min(limits)
    size = max(utility.shard_nbytes(), utility_nbytes(utility))
    if size <= share:
        return None
    per_row = max(1, size // max(1, utility.shard_row_count()))
    return max(1, int(share // _SHARDS_PER_SHARE // per_row))


def check_shardable(plan: Plan, sharding: Sharding) -> None:
    """Refuse a plan the core alone cannot serve (see ShardableUtility)."""
    if plan.anchors() or plan.fixed_evaluations_per_sample() is None:
        raise ValueError(
            f"a sharded run of {type(sharding.core).__name__} needs a plan "
            "without anchor coalitions and with a fixed cost per sample"
        )
    if not isinstance(sharding.core, ShardCore):
        raise TypeError(
            f"{type(sharding.core).__name__} is no ShardCore (shard_part, with_parts)"
        )


# -- on the workers ---------------------------------------------------------------


def _core(ref: UtilityRef) -> ShardCore:
    core = worker_utility(ref)
    assert isinstance(core, ShardCore) or hasattr(core, "shard_part")
    return core  # type: ignore[return-value]


def shard_part_task(ref: UtilityRef, shard: Any, start: int, stop: int) -> Any:
    """Shard ``shard``'s part of samples ``start .. stop-1`` (next to it)."""
    return _core(ref).shard_part(shard, start, stop)


def sharded_leaf_task(
    ref: UtilityRef, plan: Plan, start: int, stop: int, *parts: Any
) -> Partial:
    """Samples ``start .. stop-1`` as a partial state, from every shard's part."""
    utility = _core(ref).with_parts(start, stop, parts)
    return evaluate_range(plan, utility, start, stop)


# -- on the client ------------------------------------------------------------------


class ShardSet:
    """A run's shards on the cluster: their futures, the client's copies,
    and the tasks over them.

    Parameters
    ----------
    client : distributed.Client
    sharding : Sharding
        The split utility (the core is broadcast by the caller).
    """

    def __init__(self, client: Client, sharding: Sharding) -> None:
        self.client = client
        self.sharding = sharding
        self.rescattered = 0
        self._turn = 0
        self._holders: list[str] = []
        self.futures: list[Future] = []
        workers = self._workers()
        for shard in sharding.shards:
            future, address = self._scatter(shard, workers)
            self.futures.append(future)
            self._holders.append(address)

    def _workers(self, avoid: Sequence[str] = ()) -> list[str]:
        workers = sorted(self.client.nthreads())
        alive = [w for w in workers if w not in avoid]
        return alive or workers

    def _scatter(self, shard: Any, workers: list[str]) -> tuple[Future, str]:
        """``shard`` on the next worker in turn (another if that one fails)."""
        error: Exception | None = None
        for _ in range(max(1, len(workers))):
            address = workers[self._turn % len(workers)] if workers else ""
            self._turn += 1
            try:
                future = self.client.scatter(
                    shard,
                    workers=[address] if address else None,
                    hash=False,
                    timeout=_SCATTER_TIMEOUT,
                )
            except Exception as exc:  # the worker went away meanwhile
                error = exc
                continue
            return future, address
        assert error is not None
        raise error

    def describe(self) -> dict[str, Any]:
        """The ``"sharding"`` entry of the result's metadata."""
        return {
            "shards": len(self.futures),
            "rows_per_shard": self.sharding.rows_per_shard,
            "rescattered": self.rescattered,
        }

    def lost(self) -> list[int]:
        """The shards whose data is gone (their worker died)."""
        return [i for i, f in enumerate(self.futures) if f.status != "finished"]

    def rescatter(self, indices: Sequence[int]) -> None:
        """Put the shards ``indices`` on live workers again, from the
        client's copies (new keys; the lost futures are dropped)."""
        avoid = [self._holders[i] for i in indices]
        workers = self._workers(avoid)
        for index in indices:
            future, address = self._scatter(self.sharding.shards[index], workers)
            self.futures[index], self._holders[index] = future, address
            self.rescattered += 1
        logger.warning(
            "shards %s of the training rows were lost with their worker; "
            "scattered again from the client's copies",
            list(indices),
        )

    def submit_leaf(
        self,
        ref: UtilityRef,
        plan: Plan,
        start: int,
        stop: int,
        key: str,
        submit_kwargs: dict[str, Any] | None = None,
    ) -> Future:
        """The tasks over samples ``[start, stop)``: one per shard, then the
        leaf ``key`` joining them (the only future returned: the parts are
        kept by the scheduler while the leaf needs them)."""
        parts = [
            submit_packed(
                self.client,
                shard_part_task,
                ref,
                shard,
                start,
                stop,
                key=f"{key.replace('daskval-leaf-', 'daskval-part-', 1)}-s{i}",
                # next to the shard, never elsewhere: a copy of the shard on
                # another worker would undo the sharding (memory)
                submit_kwargs=(
                    {"workers": [self._holders[i]], "allow_other_workers": False}
                    if self._holders[i]
                    else None
                ),
            )
            for i, shard in enumerate(self.futures)
        ]
        return submit_packed(
            self.client,
            sharded_leaf_task,
            ref,
            plan,
            start,
            stop,
            *parts,
            key=key,
            submit_kwargs=submit_kwargs,
        )
