"""Exact Shapley values by enumerating every coalition (small games only)."""

from __future__ import annotations

import math

import numpy as np

from daskval.utility import Utility


def brute_force_shapley(utility: Utility) -> np.ndarray:
    """Shapley values from the utilities of all 2^n coalitions."""
    n = utility.n
    table = {
        mask: utility(np.array([i for i in range(n) if mask >> i & 1], dtype=int))
        for mask in range(2**n)
    }
    values = np.zeros(n)
    for i in range(n):
        for mask in range(2**n):
            if mask >> i & 1:
                continue
            size = bin(mask).count("1")
            weight = math.factorial(size) * math.factorial(n - size - 1)
            values[i] += (
                weight / math.factorial(n) * (table[mask | 1 << i] - table[mask])
            )
    return values
