"""What the run loop does when workers die, samples kill them, or models fail.

Three kinds of trouble, three answers:

* **A worker dies** (preempted, killed, out of memory for reasons of its own).
  Dask reruns the tasks it was running and recomputes the keys it held from
  their lineage. Leaves are cheap to recompute, but the merge chain is not:
  each merge depends on the one before, so losing the newest merged state
  would replay the whole run. The loop therefore keeps the leaves merged
  since its last fetch and, when a merge of the chain is lost, restarts the
  chain from the state it fetched last (:func:`chain_is_broken`).
* **A sample kills its worker** (a segfaulting or memory-exploding fit).
  After ``distributed.scheduler.allowed-failures`` retries its task ends in
  :class:`distributed.KilledWorker`. :class:`PoisonIsolation` splits the
  range in halves, resubmitted under new keys, until one sample is left,
  and records that sample as failed (see :func:`failed_partial`).
* **A model fails on every coalition.** Each failed evaluation scores the
  utility's default and is counted; when nothing but failures comes back
  the run stops with the first traceback (:func:`check_not_all_failed`)
  instead of spending its budget on defaults.

A failed sample
---------------
A sample whose task killed its worker ``POISON_STRIKES`` times on its own
contributes nothing to the statistics: its range ``[j, j+1)`` is merged as
an empty range, so ranges stay contiguous, ``n_samples`` still counts it
and budgets in samples stay exact. It counts as the plan's fixed number of
evaluations per sample (one when that varies), all failed, of the kind
``KilledWorker``. For Monte Carlo estimates (means over samples) this drops
one sample, which leaves them unbiased as long as the failure does not
depend on the values being estimated; for exact enumerations the sample's
term is missing from the sums, so the affected values are not exact. The
failed samples are listed in ``result.metadata["failed_samples"]``.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from distributed import Future, KilledWorker

from daskval.accumulate import Partial
from daskval.exceptions import ValuationError
from daskval.utility import EvalStats

if TYPE_CHECKING:
    from distributed import Client

    from daskval.plan import Plan
    from daskval.utility import Utility

__all__ = [
    "POISON_STRIKES",
    "PoisonIsolation",
    "chain_is_broken",
    "check_fits_in_memory",
    "check_not_all_failed",
    "failed_partial",
    "is_killed_worker",
    "utility_nbytes",
    "WorkerWatch",
    "wait_or_stop",
]

# a single-sample task must end in KilledWorker this many times before the
# sample is recorded as failed: a healthy sample that merely shared a worker
# with the culprit (Dask marks every task processing on a dead worker as
# suspicious) gets a second chance
POISON_STRIKES = 2

# the workers hold the utility once in the plugin and, briefly, once more as
# the bytes it arrived in: refuse a payload above this share of their memory
_MEMORY_SHARE = 0.5

# fewer failures than this prove little (a first sample of tiny coalitions);
# a run that ends with nothing but failures is refused whatever their number
_MIN_FAILURES_TO_STOP = 8

# a KilledWorker message names the cause; the kind groups them in EvalStats
KILLED_WORKER_KIND = "KilledWorker: the sample's task killed its worker process"


# seconds a run waits for a cluster with no workers before giving up (nannies
# restart a killed worker within a few seconds; an adaptive cluster scales up)
NO_WORKERS_GRACE = 30.0


@dataclass
class WorkerWatch:
    """Ends a run whose cluster has had no workers for too long.

    A run whose every worker died (no nannies, or samples that kill each
    worker that starts) would otherwise wait for workers that never come.

    Attributes
    ----------
    grace : float
        Seconds without workers tolerated.
    since : float or None
        When the workers were first seen gone (None: there are workers).
    """

    grace: float = field(default_factory=lambda: NO_WORKERS_GRACE)
    since: float | None = None

    def check(self, n_threads: int, now: float) -> None:
        """Note the cluster's thread count; raise once it was 0 too long."""
        if n_threads > 0:
            self.since = None
            return
        if self.since is None:
            self.since = now
        if now - self.since > self.grace:
            raise ValuationError(
                f"the cluster has had no workers for {now - self.since:.0f} s "
                "(they died, or were never started, and none joined); the run "
                "stopped. If samples kill their workers, start the workers "
                "with nannies (which restart them) or fix the utility."
            )


def wait_or_stop(
    future: Future, stop_reason: Callable[[], str | None], poll: float = 0.1
) -> str | None:
    """Wait for ``future`` unless the run must stop first.

    The run loop never waits on a worker without a deadline: a fit that
    hangs would otherwise hold a cancel, or a time budget, forever.

    Parameters
    ----------
    future : Future
        What to wait for (finished, erred or cancelled: all end the wait).
    stop_reason : callable
        Why the run must stop now (``"cancelled"``, ``"time"``), or None.
    poll : float
        Seconds between looks.

    Returns
    -------
    str or None
        None once ``future`` is done, else the reason the wait ended.
    """
    while not future.done():
        reason = stop_reason()
        if reason is not None:
            return reason
        time.sleep(poll)
    return None


def is_killed_worker(future: Future) -> bool:
    """Whether ``future`` erred because the workers running it died."""
    if future.status != "error":
        return False
    return isinstance(future.exception(), KilledWorker)


@dataclass
class PoisonIsolation:
    """Bisects ranges whose tasks ended in KilledWorker, down to one sample.

    Attributes
    ----------
    strikes : dict of int to int
        KilledWorker endings of single-sample tasks, per sample index.
    failed : dict of int to str
        Samples recorded as failed, with the message of their failure.
    attempts : int
        Resubmitted tasks so far (their keys carry it, so each is new).
    """

    strikes: dict[int, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    attempts: int = 0

    def next_ranges(self, start: int, end: int) -> list[tuple[int, int]]:
        """What to run next for a range whose task ended in KilledWorker.

        Two halves for a longer range; the sample again until it has
        :data:`POISON_STRIKES` strikes; an empty list once it is recorded
        as failed (:attr:`failed`).
        """
        if end - start > 1:
            middle = (start + end) // 2
            return [(start, middle), (middle, end)]
        strikes = self.strikes.get(start, 0) + 1
        self.strikes[start] = strikes
        if strikes < POISON_STRIKES:
            return [(start, end)]
        self.failed[start] = (
            f"KilledWorker: sample {start} killed the worker process running it "
            f"in {strikes} separate tasks of that sample alone (each after "
            "distributed.scheduler.allowed-failures retries); the coalition is "
            "not known, since the process died before reporting it. The sample "
            "is recorded as failed and contributes nothing."
        )
        return []

    def tag(self) -> str:
        """A fresh suffix for the key of a resubmitted task."""
        self.attempts += 1
        return f"r{self.attempts}"

    def failed_before(self, stop: int) -> list[dict[str, Any]]:
        """The failed samples among the first ``stop``, for result metadata."""
        return [
            {"index": index, "message": message}
            for index, message in sorted(self.failed.items())
            if index < stop
        ]


def failed_partial(plan: Plan, index: int, message: str) -> Partial:
    """The state of sample ``index`` recorded as failed: no contribution, its
    evaluations counted as failed (runs on a worker: the statistics are
    n-sized, and no graph carries them)."""
    evaluations = plan.fixed_evaluations_per_sample() or 1
    stats = EvalStats(
        n_evaluations=evaluations,
        n_failed=evaluations,
        first_failure=message,
        failures={KILLED_WORKER_KIND: evaluations},
    )
    return Partial(
        index,
        index + 1,
        plan.empty_statistics(),
        stats,
        np.array([evaluations], dtype=np.int32),
    )


def chain_is_broken(merges: list[Future]) -> bool:
    """Whether a merge of the chain lost its result or died with its workers.

    Either way Dask would recompute it from its lineage, which reaches back
    to the first merge of the run; the caller restarts the chain from its
    last fetched state instead. Any other failure of a merge is raised.
    """
    for future in merges:
        if future.status == "lost" or is_killed_worker(future):
            return True
        if future.status in ("error", "cancelled"):
            raise _merge_failure(future)
    return False


def _merge_failure(future: Future) -> ValuationError:
    if future.status == "error":
        exc = future.exception()
        error = ValuationError(f"a merge task failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
    return ValuationError(
        f"a merge task was {future.status}; was the cluster restarted or the "
        "client closed during the run?"
    )


def check_not_all_failed(stats: EvalStats, *, finished: bool = False) -> None:
    """Stop a run whose every evaluation failed, with the first traceback.

    At most one success is allowed for: ``ModelUtility`` scores the empty
    coalition (an anchor, or sample 0 of an enumeration) without fitting.

    Parameters
    ----------
    stats : EvalStats
        The counters of the merged state (anchors included).
    finished : bool
        The run is over: judge it whatever the number of failures.
    """
    failed, total = stats.n_failed, stats.n_evaluations
    if failed == 0 or total - failed > 1:
        return
    if failed < _MIN_FAILURES_TO_STOP and not finished:
        return
    raise ValuationError(
        f"every utility evaluation failed ({failed} of {total} scored the "
        "default; the others were of the empty coalition), so the run stopped "
        "instead of spending its budget on defaults. Failures by kind: "
        f"{dict(stats.failures)}. The first failure:\n{stats.first_failure}"
    )


# -- memory: refuse a payload the workers cannot hold -----------------------


def utility_nbytes(utility: Utility) -> int:
    """About how many bytes the utility takes on a worker.

    A dataset's arrays when the utility has one (pickling a large dataset
    only to measure it would double the cost of the broadcast), else the
    pickled utility (a function utility is small).
    """
    data = getattr(utility, "data", None)
    if data is not None and hasattr(data, "x_train"):
        arrays = (data.x_train, data.y_train, data.x_test, data.y_test)
        return int(sum(_array_nbytes(a) for a in arrays))
    import cloudpickle

    return len(cloudpickle.dumps(utility, protocol=pickle.HIGHEST_PROTOCOL))


def _array_nbytes(value: Any) -> int:
    if hasattr(value, "memory_usage"):  # pandas: object columns hold more
        usage = value.memory_usage(deep=True)
        return int(np.sum(usage))
    return int(getattr(value, "nbytes", 0))


def check_fits_in_memory(client: Client, utility: Utility) -> None:
    """Refuse a utility too large for the smallest worker's memory limit.

    Asks the scheduler for the workers' limits; called before the utility
    is registered, so nothing was sent or submitted when it raises.
    """
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # distributed before n_workers= lists every worker anyway
        info = client.scheduler_info()
    workers = info.get("workers", {})
    limits = [
        int(info["memory_limit"])
        for info in workers.values()
        if info.get("memory_limit")  # 0 or None: no limit
    ]
    if not limits:
        return
    size, limit = utility_nbytes(utility), min(limits)
    if size > _MEMORY_SHARE * limit:
        raise ValueError(
            f"data too large for the workers: the utility's dataset takes "
            f"{_mb(size)} and every worker holds a copy, but the smallest worker "
            f"memory limit is {_mb(limit)} (at most {_MEMORY_SHARE:.0%} of it "
            "can go to the dataset). Start workers with a larger memory_limit, "
            "or value groups of a smaller dataset"
        )


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB ({nbytes} bytes)"
