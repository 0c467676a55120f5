"""The runs a dashboard shows, fed by progress events.

One :class:`RunStore` lives in the scheduler plugin (the ``/daskval`` page)
or in the client-side fallback server; every browser session reads it. It is
thread-safe: events arrive on one thread (the scheduler's event loop, or the
client's), sessions read it from the server's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HISTORY_COLUMNS", "MAX_ROWS", "RunStore", "RunView"]

#: The columns of a run's history (one row per event).
HISTORY_COLUMNS = (
    "elapsed",
    "n_evaluations",
    "evaluations_per_second",
    "completion",
    "n_failed",
    "memo_hit_rate",
)
#: rows kept per run (one a second: ~2.8 hours, ~1 MB) and runs kept: the
# store lives in the scheduler, so it stays a few tens of MB at most
MAX_ROWS = 10_000
_MAX_RUNS = 20


@dataclass
class RunView:
    """What the store knows of one run."""

    run_id: str
    label: str
    latest: dict[str, Any]
    # (sequence number, row of HISTORY_COLUMNS): sessions stream the rows
    # they have not seen
    rows: deque[tuple[int, tuple[Any, ...]]] = field(
        default_factory=lambda: deque(maxlen=MAX_ROWS)
    )
    n_rows: int = 0


class RunStore:
    """Progress events by run, in arrival order of the runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, RunView] = OrderedDict()

    def add(self, event: Any) -> None:
        """Record one progress event (anything else is ignored)."""
        if not isinstance(event, dict) or not isinstance(event.get("run_id"), str):
            return
        run_id = event["run_id"]
        row = tuple(event.get(name) for name in HISTORY_COLUMNS)
        with self._lock:
            view = self._runs.get(run_id)
            if view is None:
                view = RunView(run_id, str(event.get("label", run_id)), event)
                self._runs[run_id] = view
                while len(self._runs) > _MAX_RUNS:
                    self._runs.popitem(last=False)
            view.latest = event
            view.rows.append((view.n_rows, row))
            view.n_rows += 1

    def runs(self) -> list[tuple[str, str]]:
        """(run id, label) of every run, oldest first."""
        with self._lock:
            return [(v.run_id, v.label) for v in self._runs.values()]

    def latest(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            view = self._runs.get(run_id)
            return None if view is None else view.latest

    def rows_since(self, run_id: str, seen: int) -> tuple[list[tuple[Any, ...]], int]:
        """The history rows of ``run_id`` (tuples of :data:`HISTORY_COLUMNS`)
        after the first ``seen``, and the new count of rows seen."""
        with self._lock:
            view = self._runs.get(run_id)
            if view is None:
                return [], seen
            rows = [row for n, row in view.rows if n >= seen]
            return rows, view.n_rows
