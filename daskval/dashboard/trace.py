"""The convergence trace a run keeps for its result (and its report).

At every fetch of the merged state the run records how far it is and how
settled the values are: the median and largest finite stderr, and the mean
absolute change of the values since the previous fetch. The trace is small
and of bounded length whatever the run's length or size (a long run's trace
is thinned to every other point), so it rides in ``result.metadata["trace"]``
and is saved with the result as JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TRACE_COLUMNS", "ConvergenceTrace"]

TRACE_COLUMNS = (
    "elapsed",
    "n_samples",
    "n_evaluations",
    "stderr_median",
    "stderr_max",
    "mean_abs_change",
)
_MAX_POINTS = 400


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass
class ConvergenceTrace:
    """Rows of (elapsed, samples, evaluations, stderr median/max, value change)."""

    max_points: int = _MAX_POINTS
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    _previous: np.ndarray | None = None

    def record(
        self,
        elapsed: float,
        n_samples: int,
        n_evaluations: int,
        values: np.ndarray,
        stderr: np.ndarray,
    ) -> None:
        values = np.asarray(values, dtype=float)
        finite = stderr[np.isfinite(stderr)]
        change = None
        if self._previous is not None and self._previous.shape == values.shape:
            diff = np.abs(values - self._previous)
            diff = diff[np.isfinite(diff)]
            change = _json_float(diff.mean()) if diff.size else None
        self._previous = values.copy()
        if self.rows and self.rows[-1][1] == n_samples:
            return  # nothing new merged since the last fetch
        self.rows.append(
            (
                float(elapsed),
                int(n_samples),
                int(n_evaluations),
                _json_float(np.median(finite)) if finite.size else None,
                _json_float(finite.max()) if finite.size else None,
                change,
            )
        )
        if len(self.rows) > self.max_points:
            # keep the first and last rows, thin the rest to every other one
            self.rows = [*self.rows[:-1:2], self.rows[-1]]

    def to_dict(self) -> dict[str, list[Any]]:
        """Columns by name (JSON-able), as stored in the result's metadata."""
        return {
            name: [row[i] for row in self.rows] for i, name in enumerate(TRACE_COLUMNS)
        }
