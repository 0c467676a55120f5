"""Samplers: which coalitions a Monte Carlo valuation looks at, by sample index.

Every sample ``j`` of a run is drawn from its own generator,
``np.random.SeedSequence(seed, spawn_key=(j,))``. That makes sample ``j`` a
function of ``(seed, j)`` alone: tasks may cover any range of indices, on any
worker, in any order, and a run with the same seed and budget holds the same
samples.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from daskval._validation import check_fraction

__all__ = [
    "ExactSampler",
    "PermutationSampler",
    "RelativeTruncation",
    "Sampler",
    "sample_rng",
]

MAX_EXACT_PLAYERS = 25


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of a run seeded with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


class RelativeTruncation:
    """Stop scanning a permutation once u(prefix) is within ``rtol`` of u(N).

    The remaining players of that permutation get a zero marginal, as in
    TMC-Shapley (Ghorbani & Zou, 2019). The tolerance is relative to
    ``|u(N)|``, so it also works when u(N) <= 0 (negative MSE, a poor r2);
    when u(N) == 0 it is taken as absolute.

    Parameters
    ----------
    rtol : float
        Relative tolerance, in [0, 1).
    burn_in : float
        Fraction of each permutation that is always evaluated, in [0, 1).
    """

    def __init__(self, rtol: float = 0.01, burn_in: float = 0.0) -> None:
        self.rtol = check_fraction(rtol, "rtol")
        self.burn_in = check_fraction(burn_in, "burn_in")

    def first_position(self, n: int) -> int:
        """The first prefix length at which truncation may happen."""
        return int(np.ceil(self.burn_in * n))

    def is_done(self, u_prefix: float, u_total: float) -> bool:
        scale = abs(u_total) if u_total != 0 else 1.0
        return abs(u_total - u_prefix) <= self.rtol * scale

    def describe(self) -> dict[str, Any]:
        return {
            "class": "RelativeTruncation",
            "rtol": self.rtol,
            "burn_in": self.burn_in,
        }


class Sampler(ABC):
    """Where a method's samples come from."""

    @abstractmethod
    def sample_limit(self, n: int) -> int | None:
        """The number of distinct samples, or None for an endless sampler."""

    @abstractmethod
    def max_evaluations_per_sample(self, n: int) -> int:
        """An upper bound on utility calls per sample."""

    def fixed_evaluations_per_sample(self, n: int) -> int | None:
        """The exact number of utility calls per sample, when it never varies."""
        return self.max_evaluations_per_sample(n)

    def check(self, n: int) -> None:
        """Raise if this sampler cannot serve a game of ``n`` players."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able description (result metadata and checkpoints)."""


class PermutationSampler(Sampler):
    """Random permutations of the players (Castro et al., 2009).

    Parameters
    ----------
    truncation : RelativeTruncation, optional
        Truncated Monte Carlo (TMC-Shapley). None scans whole permutations.
    antithetic : bool
        Pair each permutation with its reverse; a pair is one sample, its
        marginals the mean of both, which keeps the stderr honest.
    """

    def __init__(
        self, truncation: RelativeTruncation | None = None, antithetic: bool = False
    ) -> None:
        if truncation is not None and not isinstance(truncation, RelativeTruncation):
            raise TypeError(
                "truncation must be a RelativeTruncation or None, got "
                f"{type(truncation).__name__}"
            )
        if not isinstance(antithetic, bool):
            raise TypeError(
                f"antithetic must be a bool, got {type(antithetic).__name__}"
            )
        self.truncation = truncation
        self.antithetic = antithetic

    def check(self, n: int) -> None:
        if n < 2:
            raise ValueError(
                f"sampler=PermutationSampler() needs at least 2 players, got n={n}: "
                "its permutations would cost no evaluations, so an evaluation "
                "budget could never be reached. The value of a single player is "
                "u(N) - u(empty); use sampler=ExactSampler()."
            )

    def permutation(self, seed: int, index: int, n: int) -> np.ndarray:
        return sample_rng(seed, index).permutation(n)

    def sample_limit(self, n: int) -> int | None:
        return None

    def max_evaluations_per_sample(self, n: int) -> int:
        # prefixes of sizes 1 .. n-1; u(empty) and u(N) are evaluated once per run
        return (2 if self.antithetic else 1) * max(n - 1, 0)

    def fixed_evaluations_per_sample(self, n: int) -> int | None:
        return (
            None if self.truncation is not None else self.max_evaluations_per_sample(n)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "class": "PermutationSampler",
            "antithetic": self.antithetic,
            "truncation": None
            if self.truncation is None
            else self.truncation.describe(),
        }


class ExactSampler(Sampler):
    """Every subset of the players exactly once: sample ``j`` is the bitmask ``j``.

    Refuses games of more than 25 players (2^25 model fits).
    """

    def sample_limit(self, n: int) -> int | None:
        return 1 << n

    def max_evaluations_per_sample(self, n: int) -> int:
        return 1

    def check(self, n: int) -> None:
        if n > MAX_EXACT_PLAYERS:
            raise ValueError(
                f"sampler=ExactSampler() enumerates all 2^n subsets; n={n} players "
                f"is above the limit of {MAX_EXACT_PLAYERS}. Use a Monte Carlo "
                "sampler such as PermutationSampler()."
            )

    @staticmethod
    def subset(index: int, n: int) -> np.ndarray:
        """The players whose bits are set in ``index``."""
        return np.flatnonzero((index >> np.arange(n, dtype=np.int64)) & 1)

    def describe(self) -> dict[str, Any]:
        return {"class": "ExactSampler"}
