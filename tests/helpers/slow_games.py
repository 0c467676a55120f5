"""Games slow enough for a run to outlast cluster changes (importable by
worker processes started outside pytest, with ``tests/`` on PYTHONPATH)."""

from __future__ import annotations

import time

import numpy as np


def slow_majority16(players: np.ndarray) -> float:
    """Weighted majority of 16 players (weights 1..16), 20 ms per evaluation."""
    time.sleep(0.02)
    weights = np.arange(1, 17)
    return float(weights[players].sum() > weights.sum() / 2)
