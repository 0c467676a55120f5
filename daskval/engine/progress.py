"""What a run shows while it runs: its counters, its trace and its monitor.

The run loop (``engine.run``) hands every state it fetches to
:class:`RunProgress`, which estimates the values, asks the stopping
criterion whether to stop, records the convergence trace for the result and
passes the event on to the monitor (the ``/daskval`` page and the console
bar, ``daskval.dashboard``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from daskval.accumulate import Partial
from daskval.dashboard.trace import ConvergenceTrace
from daskval.plan import Plan
from daskval.stopping import Snapshot, StoppingCriterion

if TYPE_CHECKING:
    from daskval.dashboard.monitor import RunMonitor

__all__ = ["RunProgress"]


@dataclass
class RunProgress:
    """A run's progress: counters for ``handle.progress``, the trace for the
    result, and events for the monitor (None: nothing is shown)."""

    plan: Plan
    stop: StoppingCriterion | None
    monitor: RunMonitor | None = None
    begin: float = field(default_factory=time.monotonic)
    trace: ConvergenceTrace = field(default_factory=ConvergenceTrace)
    n_samples: int = 0
    n_evaluations: int = 0
    completion: float = 0.0
    elapsed: float = 0.0
    status: str = "pending"
    max_fetch_bytes: int = 0
    memo_hits: int = 0
    memo_misses: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Samples and evaluations merged so far, completion, status."""
        return {
            "n_samples": self.n_samples,
            "n_evaluations": self.n_evaluations,
            "completion": self.completion,
            "elapsed": self.elapsed,
            "status": self.status,
            "memo_hits": self.memo_hits,
            "memo_misses": self.memo_misses,
        }

    def fetched(self, state: Partial) -> None:
        """Count a state fetched from the cluster (and its bytes)."""
        self.max_fetch_bytes = max(self.max_fetch_bytes, state.nbytes)

    def update(self, state: Partial, cap: int | None) -> bool:
        """Publish ``state``; True when the run should stop (``cap``: the most
        samples the run may hold)."""
        values, stderr, counts = self.plan.estimate(state.moments)
        self.elapsed = elapsed = time.monotonic() - self.begin
        self.n_samples, self.n_evaluations = state.stop, state.n_evaluations
        self.memo_hits = state.eval_stats.memo_hits
        self.memo_misses = state.eval_stats.memo_misses
        self.trace.record(elapsed, state.stop, state.n_evaluations, values, stderr)
        finished = state.exhausted or (cap is not None and state.stop >= cap)
        if self.stop is not None:
            snap = Snapshot(
                values, stderr, counts, state.stop, state.n_evaluations, elapsed
            )
            self.completion = 1.0 if finished else self.stop.completion(snap)
            finished = finished or self.stop.check(snap)
        else:
            self.completion = 1.0 if finished else (state.stop / cap if cap else 0.0)
        self._publish(state, values, stderr, "running")
        return finished

    def leaf_done(self, future: Any, n_samples: int) -> None:
        """A leaf finished (the monitor's per-worker counts)."""
        if self.monitor is not None:
            self.monitor.leaf_done(future, n_samples)

    def final(self, state: Partial | None, status: str) -> None:
        """The run's last event, from the newest state it holds."""
        monitor = self.monitor
        if monitor is None:
            return
        if state is None:
            monitor.close()
            return
        try:
            values, stderr, _ = self.plan.estimate(state.moments)
        except Exception:  # no estimate possible (e.g. failed before anchors)
            monitor.close()
            return
        self.elapsed = time.monotonic() - self.begin
        self._publish(state, values, stderr, status, final=True)

    def _publish(
        self,
        state: Partial,
        values: np.ndarray,
        stderr: np.ndarray,
        status: str,
        final: bool = False,
    ) -> None:
        if self.monitor is None:
            return
        self.monitor.update(
            status=status,
            elapsed=self.elapsed,
            n_samples=state.stop,
            n_evaluations=state.n_evaluations,
            completion=1.0 if status == "completed" else self.completion,
            values=values,
            stderr=stderr,
            eval_stats=state.eval_stats,
            final=final,
        )
