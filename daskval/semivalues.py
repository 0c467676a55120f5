"""Semivalues: how much weight a marginal contribution gets, by coalition size.

A semivalue of player ``i`` in a game ``u`` of ``n`` players is

    phi_i = sum over S in N \\ {i} of  w(|S|) * (u(S + i) - u(S)),

where the weight ``w(k)`` of one coalition of ``k`` other players depends on
its size only. Equivalently ``p(k) = C(n-1, k) w(k)`` is a probability
distribution over the sizes ``k = 0 .. n-1``: a semivalue is the expected
marginal contribution when the coalition size is drawn from ``p`` and the
coalition uniformly given its size.

==================  =============================================  ===========
Semivalue           p(k)                                           Reference
==================  =============================================  ===========
Shapley()           1 / n                                          [1]
Banzhaf()           C(n-1, k) / 2^(n-1)                            [2]
WeightedBanzhaf(w)  C(n-1, k) w^k (1-w)^(n-1-k)                    [3]
Beta(alpha, beta)   C(n-1, k) B(k+beta, n-1-k+alpha) / B(alpha, beta)  [4]
==================  =============================================  ===========

Beta(1, 1) is Shapley; Beta(16, 1) puts most weight on small coalitions (the
convention of Kwon & Zou's paper, whose weight of a coalition of size ``k``
is ``B(k+beta, n-1-k+alpha) / B(alpha, beta)``).

Weights are computed in log space: ``C(n-1, k)`` overflows float64 beyond
n ~ 1030 while the weights themselves stay representable.

References
----------
.. [1] Shapley (1953); Ghorbani & Zou (2019), Data Shapley.
.. [2] Wang & Jia (2023), Data Banzhaf.
.. [3] Li & Yu (2023), Robust data valuation with weighted Banzhaf values.
.. [4] Kwon & Zou (2022), Beta Shapley.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from scipy.special import betaln, gammaln

__all__ = [
    "Banzhaf",
    "Beta",
    "Semivalue",
    "Shapley",
    "WeightedBanzhaf",
    "log_binomial",
]


def log_binomial(n: int, k: np.ndarray) -> np.ndarray:
    """log C(n, k), elementwise, for 0 <= k <= n."""
    k = np.asarray(k, dtype=float)
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


class Semivalue(ABC):
    """A probability distribution over the sizes of the coalitions a player joins."""

    @property
    @abstractmethod
    def name(self) -> str:
        """A short name, used to label results (e.g. ``"beta(16,1)"``)."""

    @abstractmethod
    def log_size_probabilities(self, n: int) -> np.ndarray:
        """log p(k) for k = 0 .. n-1 (their exponentials sum to 1)."""

    def log_weights(self, n: int) -> np.ndarray:
        """log w(k): the weight of one coalition of ``k`` other players."""
        return self.log_size_probabilities(n) - log_binomial(n - 1, np.arange(n))

    def describe(self) -> dict[str, Any]:
        return {"semivalue": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}() [{self.name}]"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Semivalue) and self.describe() == other.describe()

    def __hash__(self) -> int:
        return hash(self.name)


class Shapley(Semivalue):
    """Every coalition size equally likely: p(k) = 1/n."""

    @property
    def name(self) -> str:
        return "shapley"

    def log_size_probabilities(self, n: int) -> np.ndarray:
        return np.full(n, -np.log(n))


class WeightedBanzhaf(Semivalue):
    """Every other player joins independently with probability ``w`` (Li & Yu, 2023).

    Parameters
    ----------
    w : float
        Inclusion probability, in (0, 1); 0.5 is the Banzhaf value.
    """

    def __init__(self, w: float) -> None:
        self.w = _check_open_fraction(w, "w")

    @property
    def name(self) -> str:
        return f"weighted-banzhaf({self.w:g})"

    def log_size_probabilities(self, n: int) -> np.ndarray:
        k = np.arange(n)
        log_w, log_rest = np.log(self.w), np.log1p(-self.w)
        return log_binomial(n - 1, k) + k * log_w + (n - 1 - k) * log_rest

    def describe(self) -> dict[str, Any]:
        return {"semivalue": "weighted-banzhaf", "w": self.w}


class Banzhaf(WeightedBanzhaf):
    """Every coalition of the others equally likely (Wang & Jia, 2023)."""

    def __init__(self) -> None:
        super().__init__(0.5)

    @property
    def name(self) -> str:
        return "banzhaf"

    def describe(self) -> dict[str, Any]:
        return {"semivalue": "banzhaf"}


class Beta(Semivalue):
    """Beta Shapley (Kwon & Zou, 2022), in the paper's convention.

    The weight of one coalition of ``k`` of the other ``n-1`` players is
    ``B(k + beta, n - 1 - k + alpha) / B(alpha, beta)``, so ``Beta(1, 1)`` is
    Shapley and ``Beta(16, 1)`` (the paper's recommendation) emphasises small
    coalitions. (pyDVL's prose states the parameters the other way round.)

    Parameters
    ----------
    alpha, beta : float
        Positive shape parameters.
    """

    def __init__(self, alpha: float, beta: float) -> None:
        self.alpha = _check_positive(alpha, "alpha")
        self.beta = _check_positive(beta, "beta")

    @property
    def name(self) -> str:
        return f"beta({self.alpha:g},{self.beta:g})"

    def log_size_probabilities(self, n: int) -> np.ndarray:
        k = np.arange(n)
        a, b = self.alpha, self.beta
        return log_binomial(n - 1, k) + betaln(k + b, n - 1 - k + a) - betaln(a, b)

    def describe(self) -> dict[str, Any]:
        return {"semivalue": "beta", "alpha": self.alpha, "beta": self.beta}


def _check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    number = float(value)
    if not (np.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def _check_open_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a number in (0, 1), got {type(value).__name__}"
        )
    number = float(value)
    if not (np.isfinite(number) and 0 < number < 1):
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return number
