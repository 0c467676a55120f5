"""Progress events: what a running valuation tells its watchers.

The run loop builds one event per fetch of the merged state (about once a
second) with :func:`progress_event` and publishes it under :data:`TOPIC`
through Dask's public ``Client.log_event``. The scheduler's ``/daskval`` page,
the client-side fallback server and the console bar all read the same
events. An event is a flat dict of msgpack-able values (str, int, float,
None, lists and dicts of them) and stays a few kilobytes whatever the number
of players: the value distribution is summarised as a histogram and only the
extremes are named.

This module needs neither Dask nor Bokeh.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "EXTREMES",
    "HISTOGRAM_BINS",
    "TOPIC",
    "RateTracker",
    "RunDescription",
    "progress_event",
]

#: The ``log_event`` topic of daskval's progress events.
TOPIC = "daskval-progress"
#: How many of the highest- and of the lowest-valued players an event names.
EXTREMES = 10
#: Bins of the stderr histogram in an event.
HISTOGRAM_BINS = 20
# seconds over which rates (evaluations/s, completion/s) are measured
_RATE_WINDOW = 10.0


def _finite(x: float) -> float | None:
    """``x`` as a float, or None when it is inf or NaN (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class RunDescription:
    """What a run is, for the page's run selector: fixed for the whole run."""

    run_id: str
    method: str
    n_players: int
    utility: str
    stop: str

    @property
    def label(self) -> str:
        return f"{self.method} of {self.n_players} players ({self.run_id})"


@dataclass
class RateTracker:
    """Evaluations/s, completion/s and per-worker samples/s over a sliding window.

    ``observe`` is called at every fetch with the run's totals; rates are the
    change over the last ~10 seconds, so they follow a run that speeds up or
    slows down (workers joining or leaving) instead of averaging from the start.
    """

    window: float = _RATE_WINDOW
    _points: deque[tuple[float, int, float]] = field(default_factory=deque)
    _worker_points: deque[tuple[float, str, int]] = field(default_factory=deque)

    def observe(self, elapsed: float, n_evaluations: int, completion: float) -> None:
        self._points.append((elapsed, n_evaluations, completion))
        while len(self._points) > 2 and elapsed - self._points[1][0] >= self.window:
            self._points.popleft()

    def observe_worker(self, elapsed: float, worker: str, n_samples: int) -> None:
        """``n_samples`` samples finished on ``worker`` just before ``elapsed``."""
        self._worker_points.append((elapsed, worker, n_samples))
        while self._worker_points and elapsed - self._worker_points[0][0] > self.window:
            self._worker_points.popleft()

    def evaluations_per_second(self) -> float:
        if len(self._points) < 2:
            return 0.0
        (t0, e0, _), (t1, e1, _) = self._points[0], self._points[-1]
        return (e1 - e0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self) -> float | None:
        """Seconds until completion reaches 1 at the current pace (None: unknown)."""
        if len(self._points) < 2:
            return None
        (t0, _, c0), (t1, _, c1) = self._points[0], self._points[-1]
        if c1 >= 1.0:
            return 0.0
        if t1 <= t0 or c1 <= c0:
            return None
        return (1.0 - c1) * (t1 - t0) / (c1 - c0)

    def worker_rates(self, now: float) -> dict[str, float]:
        """Samples per second of each worker over the window ending at ``now``."""
        if not self._worker_points:
            return {}
        span = max(min(self.window, now), 1e-9)
        totals: dict[str, int] = {}
        for _, worker, n in self._worker_points:
            totals[worker] = totals.get(worker, 0) + n
        return {w: n / span for w, n in sorted(totals.items())}


def _extremes(
    values: np.ndarray, stderr: np.ndarray, names: Sequence[str], k: int
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The ``k`` highest and ``k`` lowest players: name, value, stderr, rank."""
    k = min(k, len(values))
    lowest, highest = _ends_of_stable_order(values, k)

    def rows(positions: np.ndarray) -> dict[str, list[Any]]:
        return {
            "rank": list(range(1, len(positions) + 1)),
            "name": [str(names[i]) for i in positions],
            "value": [_finite(values[i]) for i in positions],
            "stderr": [_finite(stderr[i]) for i in positions],
        }

    return rows(highest), rows(lowest)


def _ends_of_stable_order(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` and the last ``k`` (reversed) positions of
    ``np.argsort(values, kind="stable")``, without sorting all of them: at a
    million players a full sort costs ~0.1 s of the client's time per fetch."""
    n = len(values)
    if n <= 8 * k or k == 0 or np.isnan(values).any():  # NaNs sort last
        order = np.argsort(values, kind="stable")
        return order[:k], order[::-1][:k]
    kth_low = np.partition(values, k - 1)[k - 1]
    kth_high = np.partition(values, n - k)[n - k]
    # every tie of the k-th value is a candidate; candidates are in index
    # order, so a stable sort of them is the stable sort's order restricted
    low = np.flatnonzero(values <= kth_low)
    high = np.flatnonzero(values >= kth_high)
    low = low[np.argsort(values[low], kind="stable")][:k]
    high = high[np.argsort(values[high], kind="stable")][::-1][:k]
    return low, high


def _stderr_histogram(stderr: np.ndarray, bins: int) -> dict[str, Any]:
    """Histogram of the finite stderrs, and how many players have none yet."""
    finite = stderr[np.isfinite(stderr)]
    if finite.size == 0:
        return {"edges": [], "counts": [], "n_unknown": int(stderr.size)}
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        high = low + max(abs(low) * 1e-6, 1e-12)
    counts, edges = np.histogram(finite, bins=bins, range=(low, high))
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "n_unknown": int(stderr.size - finite.size),
    }


def progress_event(
    description: RunDescription,
    *,
    status: str,
    elapsed: float,
    n_samples: int,
    n_evaluations: int,
    n_failed: int,
    completion: float,
    memo_hits: int,
    memo_misses: int,
    values: np.ndarray,
    stderr: np.ndarray,
    names: Sequence[str],
    rates: RateTracker,
    failures: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """One progress event of a run (msgpack- and JSON-able).

    Parameters
    ----------
    description : RunDescription
        Which run this is.
    status : str
        ``"running"``, ``"completed"``, ``"cancelled"``, ``"interrupted"``
        or ``"failed"``.
    elapsed : float
        Seconds since the run started.
    n_samples, n_evaluations, n_failed : int
        Samples merged, utility calls made and calls that failed, so far.
    completion : float
        How far the stopping criterion is, in [0, 1].
    memo_hits, memo_misses : int
        Calls the workers' memo answered, and calls it passed on.
    values, stderr : np.ndarray
        The current estimates, one per player.
    names : sequence of str
        Player names.
    rates : RateTracker
        The run's tracker, already updated with this fetch.
    failures : mapping, optional
        ``"ErrorType: message"`` -> count, of failed utility calls.

    Returns
    -------
    dict
        The event.
    """
    values = np.asarray(values, dtype=float)
    stderr = np.asarray(stderr, dtype=float)
    top, bottom = _extremes(values, stderr, names, EXTREMES)
    finite = stderr[np.isfinite(stderr)]
    lookups = memo_hits + memo_misses
    eta = rates.eta()
    return {
        "run_id": description.run_id,
        "label": description.label,
        "method": description.method,
        "utility": description.utility,
        "stop": description.stop,
        "n_players": description.n_players,
        "status": status,
        "time": time.time(),
        "elapsed": float(elapsed),
        "n_samples": int(n_samples),
        "n_evaluations": int(n_evaluations),
        "evaluations_per_second": float(rates.evaluations_per_second()),
        "completion": float(min(max(completion, 0.0), 1.0)),
        "eta": None if eta is None else _finite(eta),
        "n_failed": int(n_failed),
        "failures": {str(k): int(v) for k, v in list((failures or {}).items())[:5]},
        "memo_hits": int(memo_hits),
        "memo_misses": int(memo_misses),
        "memo_hit_rate": (memo_hits / lookups) if lookups else None,
        "stderr_median": _finite(np.median(finite)) if finite.size else None,
        "stderr_max": _finite(finite.max()) if finite.size else None,
        "stderr_histogram": _stderr_histogram(stderr, HISTOGRAM_BINS),
        "top": top,
        "bottom": bottom,
        "workers": rates.worker_rates(elapsed),
    }
