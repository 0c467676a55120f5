"""How long the run loop's tasks are, and whether one may start now.

The run loop (``engine.run``) keeps a window of leaf tasks in flight; this
module decides each new task's number of samples from what the run has
measured (seconds per sample), the cluster's size, the state's bytes and a
time budget. It holds no Dask code: the loop passes in what it has seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TaskSizer"]

# a task's contribution matrix (samples x players floats) stays below this
MAX_TASK_BYTES = 64 * 2**20
# Task sizes keep the engine's own costs a small share of the work. The
# scheduler spends ~1.5 ms of CPU per task (benchmarks/engine_costs.py,
# 2026-12-07, 2-core machine, client in the same process), and each leaf
# brings 1 + 1/4 + 1/16 + 1/16 tasks (itself, its share of a unit, a group and
# a link; engine.reduce): tasks of at least threads * 4.1 ms keep it at most
# half busy at any number of worker threads (0.5 s at 128 threads, 1.1 s at
# 256, 4.1 s at 1,000).
SCHEDULER_SECONDS_PER_TASK = 1.5e-3
TASKS_PER_LEAF = 1.375
SCHEDULER_SHARE = 0.5
# Every leaf's state (O(n) per statistic) is made, pickled, moved and merged
# about 1.3 times: ~4 ns of worker CPU per byte (measured: an 8 MB MSR state
# at n = 100,000 costs ~30 ms per leaf). Tasks last long enough for that to be
# this share of the CPU the cluster has (threads beyond the cores share it).
SECONDS_PER_STATE_BYTE = 4e-9
STATE_SHARE = 0.1


@dataclass
class TaskSizer:
    """The samples of the run's next task.

    Parameters
    ----------
    n_players : int
        The plan's players (a task's matrix of marginals is samples x players).
    target_task_seconds : float
        How long a task should run at least (``RunSettings``).
    samples_per_task : int, optional
        A fixed size (the caller's or the plan's); None: sized from timings.
    max_samples_per_task : int, optional
        A sharded run's bound (a leaf joins its range's parts in one memory).
    state_bytes : int
        The state bytes one leaf makes the reduction move and merge.
    threads_per_core : float
        Worker threads per core (above 1 in a simulation with sleeping calls).
    seconds_left : callable
        The time budget's seconds left now (None: no time budget).
    """

    n_players: int
    target_task_seconds: float
    samples_per_task: int | None = None
    max_samples_per_task: int | None = None
    state_bytes: int = 0
    threads_per_core: float = 1.0
    seconds_left: Callable[[], float | None] = lambda: None

    def size(
        self,
        seconds_per_sample: float | None,
        cap: int | None,
        next_start: int,
        n_threads: int,
    ) -> int:
        """Samples of the task starting at ``next_start`` (``cap``: the most
        samples the run may hold, None: unbounded)."""
        largest = max(1, MAX_TASK_BYTES // (8 * max(1, self.n_players)))
        if self.max_samples_per_task:
            largest = min(largest, self.max_samples_per_task)
            if self.samples_per_task is not None:
                return min(self.samples_per_task, largest)
        if self.samples_per_task is not None:
            return self.samples_per_task
        if seconds_per_sample is None or seconds_per_sample <= 0:
            size = 1
        else:
            # rounded up: the target is a floor (the scheduler's load at many
            # threads), and rounding down makes one-sample tasks of samples
            # that last a little less than it
            size = math.ceil(self.task_seconds(n_threads) / seconds_per_sample)
            left = self.seconds_left()
            if left is not None:
                # a sample that ends after a time budget is dropped: end by then
                size = min(size, int(0.9 * left / seconds_per_sample))
        remaining = None if cap is None else cap - next_start
        if remaining is not None and (
            seconds_per_sample is None
            or seconds_per_sample * remaining > self.target_task_seconds
        ):
            # leave every thread a share of what remains, unless it is less
            # work than one task
            size = min(size, -(-remaining // (2 * n_threads)))
        return int(min(max(1, size), largest))

    def task_seconds(self, n_threads: int) -> float:
        """How long a task should run: the target, or longer where the
        scheduler's load or the states' bytes ask for it (see the costs at
        the top of this module)."""
        scheduler = (
            n_threads * TASKS_PER_LEAF * SCHEDULER_SECONDS_PER_TASK / SCHEDULER_SHARE
        )
        states = (
            self.state_bytes
            * SECONDS_PER_STATE_BYTE
            * self.threads_per_core
            / STATE_SHARE
        )
        return max(self.target_task_seconds, scheduler, states)

    def sample_can_finish(self, seconds_per_sample: float | None) -> bool:
        """Whether a sample started now ends before a time budget does.

        A sample that ends after the budget is never merged (the state is the
        samples finished by then), so a leaf that cannot finish in time only
        takes a thread and delays the end of the run. The loop starts a leaf
        anyway when nothing is in flight: the estimate may be too high (the
        anchors' slowest call).
        """
        left = self.seconds_left()
        if left is None or seconds_per_sample is None:
            return True
        return seconds_per_sample <= left
