"""Games slow enough for a run to outlast cluster changes (importable by
worker processes started outside pytest, with ``tests/`` on PYTHONPATH)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


def slow_majority16(players: np.ndarray) -> float:
    """Weighted majority of 16 players (weights 1..16), 20 ms per evaluation."""
    time.sleep(0.02)
    weights = np.arange(1, 17)
    return float(weights[players].sum() > weights.sum() / 2)


class HangingClassifier(ClassifierMixin, BaseEstimator):
    """A majority-class classifier whose fit never returns on coalitions of
    more than ``hang_above`` rows (importable by workers and helper processes).
    """

    def __init__(self, hang_above: int = 3) -> None:
        self.hang_above = hang_above

    def fit(self, x: np.ndarray, y: np.ndarray) -> HangingClassifier:
        if len(y) > self.hang_above:
            while True:
                time.sleep(1)
        self.label_ = int(np.bincount(np.asarray(y, dtype=int)).argmax())
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.label_)
