"""A model that counts its fits in the process that runs them.

Tests read the counts back from the workers with ``client.run``: memo
statistics say what the memo thinks it saved; these say what was fitted.
"""

from __future__ import annotations

import threading
from typing import Any

from sklearn.linear_model import LogisticRegression

_lock = threading.Lock()
_fits = [0]


class CountingLogisticRegression(LogisticRegression):
    """LogisticRegression whose every ``fit`` bumps a per-process counter."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        with _lock:
            _fits[0] += 1
        return super().fit(X, y, sample_weight=sample_weight)


def fit_count() -> int:
    """Fits made in this process since the last :func:`reset_fit_count`."""
    with _lock:
        return _fits[0]


def reset_fit_count() -> None:
    with _lock:
        _fits[0] = 0
