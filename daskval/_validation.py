"""Argument checks shared by the public constructors.

Every check raises before any cluster work starts and names the offending
argument, so that a typo costs a traceback, not a half-finished run.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "check_positive_int",
    "check_fraction",
    "check_positive_number",
]


def check_positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """Return ``value`` as an int, or raise naming ``name``.

    Whole floats such as ``1e4`` are accepted; ``2.5``, NaN and bools are not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not isinstance(value, numbers.Integral) and not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    lowest = 0 if allow_zero else 1
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest}, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)  # exact, also beyond 2**53
    return int(float(value))


def check_positive_number(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_fraction(value: Any, name: str, *, inclusive_high: bool = False) -> float:
    """Return ``value`` as a float in [0, 1) (or [0, 1]), or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    high_ok = value <= 1 if inclusive_high else value < 1
    if not (np.isfinite(value) and value >= 0 and high_ok):
        interval = "[0, 1]" if inclusive_high else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value
