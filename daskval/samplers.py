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

from daskval._validation import check_fraction, check_positive_int
from daskval.semivalues import log_binomial

__all__ = [
    "AntitheticSampler",
    "CoalitionSampler",
    "ExactSampler",
    "MSRSampler",
    "OwenSampler",
    "PermutationSampler",
    "RelativeTruncation",
    "Sampler",
    "StratifiedSampler",
    "UniformSampler",
    "log_marginal_probabilities",
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


def log_marginal_probabilities(size_probabilities: np.ndarray) -> np.ndarray:
    """log q(k), k = 0 .. n-1: how likely a player's coalition of others is one
    given set of ``k`` players, when the sampled coalition S has an exchangeable
    law with sizes ``size_probabilities`` (``pi(m)``, m = 0 .. n).

    The player's coalition of others is ``T = S minus {i}``: it has ``k``
    players when S is T itself (size k) or T plus i (size k+1), so
    ``q(k) = pi(k) / C(n, k) + pi(k+1) / C(n, k+1)``.
    """
    n = len(size_probabilities) - 1
    with np.errstate(divide="ignore"):
        log_pi = np.log(size_probabilities)
    log_each = log_pi - log_binomial(n, np.arange(n + 1))  # one set of size m
    return np.logaddexp(log_each[:-1], log_each[1:])


class CoalitionSampler(Sampler):
    """Samplers that draw whole coalitions S whose law depends on |S| only.

    Each sample is one coalition (two with ``antithetic``: S and its
    complement). With the flip-based estimators every player gets one
    marginal contribution per coalition: ``u(S) - u(S - i)`` for members,
    ``u(S + i) - u(S)`` for the others (``n + 1`` utility calls); with
    :class:`MSRSampler` only ``u(S)`` is evaluated.

    Samples are assigned to ``n_strata(n)`` strata round-robin
    (``index mod n_strata``); a stratified sampler's estimate combines
    per-stratum means with equal weights.
    """

    antithetic: bool = False

    @abstractmethod
    def size_probabilities(self, n: int) -> np.ndarray:
        """pi(m), m = 0 .. n: the stated distribution of |S|."""

    @abstractmethod
    def draw(self, rng: np.random.Generator, stratum: int, n: int) -> np.ndarray:
        """One coalition S of stratum ``stratum``, as a boolean mask."""

    def n_strata(self, n: int) -> int:
        return 1

    def coalitions(self, seed: int, index: int, n: int) -> list[np.ndarray]:
        """The coalitions of sample ``index`` (S, and its complement if antithetic)."""
        stratum = index % self.n_strata(n)
        mask = self.draw(sample_rng(seed, index), stratum, n)
        return [mask, ~mask] if self.antithetic else [mask]

    def max_evaluations_per_sample(self, n: int) -> int:
        return (2 if self.antithetic else 1) * (n + 1)

    def sample_limit(self, n: int) -> int | None:
        return None

    def check(self, n: int) -> None:
        if n < 2:
            raise ValueError(
                f"sampler={type(self).__name__}() needs at least 2 players, got "
                f"n={n}; the value of a single player is u(N) - u(empty): use "
                "sampler=ExactSampler()"
            )


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _subset_of_size(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:size]] = True
    return mask


class UniformSampler(CoalitionSampler):
    """Coalitions uniform over all 2^n subsets: each player in S with probability 1/2.

    Parameters
    ----------
    antithetic : bool
        Pair each coalition with its complement in one sample.
    """

    def __init__(self, *, antithetic: bool = False) -> None:
        self.antithetic = _check_bool(antithetic, "antithetic")

    def size_probabilities(self, n: int) -> np.ndarray:
        return np.exp(log_binomial(n, np.arange(n + 1)) - n * np.log(2))

    def draw(self, rng: np.random.Generator, stratum: int, n: int) -> np.ndarray:
        return rng.random(n) < 0.5

    def describe(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "antithetic": self.antithetic}


class AntitheticSampler(UniformSampler):
    """:class:`UniformSampler` pairing each coalition with its complement."""

    def __init__(self) -> None:
        super().__init__(antithetic=True)


class MSRSampler(CoalitionSampler):
    """Maximum sample reuse (Wang & Jia, 2023): one utility call per coalition,
    and every call updates every player.

    A player's value is estimated from the utilities of the coalitions that
    contain it against those that do not, importance-weighted for the
    semivalue (self-normalised, so a constant shift of u cancels): for
    Banzhaf with ``inclusion=0.5`` it is mean{u(S): i in S} - mean{u(S): i
    not in S}, for weighted Banzhaf(w) with ``inclusion=w`` likewise.

    Parameters
    ----------
    inclusion : float or None
        Each player is in S independently with this probability. None draws
        |S| uniformly from 0 .. n, then S uniformly of that size: the law
        that suits Shapley and Beta weights, and several semivalues at once.
    """

    def __init__(self, inclusion: float | None = 0.5) -> None:
        if inclusion is not None:
            inclusion = check_fraction(inclusion, "inclusion")
            if inclusion == 0:
                raise ValueError("inclusion must lie strictly between 0 and 1, got 0")
        self.inclusion = inclusion

    def size_probabilities(self, n: int) -> np.ndarray:
        if self.inclusion is None:
            return np.full(n + 1, 1 / (n + 1))
        m = np.arange(n + 1)
        w = self.inclusion
        return np.exp(log_binomial(n, m) + m * np.log(w) + (n - m) * np.log1p(-w))

    def draw(self, rng: np.random.Generator, stratum: int, n: int) -> np.ndarray:
        if self.inclusion is None:
            return _subset_of_size(rng, n, int(rng.integers(n + 1)))
        return rng.random(n) < self.inclusion

    def max_evaluations_per_sample(self, n: int) -> int:
        return 1

    def describe(self) -> dict[str, Any]:
        return {"class": "MSRSampler", "inclusion": self.inclusion}


class StratifiedSampler(CoalitionSampler):
    """Coalitions stratified by size: each stratum (a range of sizes) gets an
    equal share of the samples, and the estimate combines per-stratum means.

    Parameters
    ----------
    allocation : "uniform" or sequence of n+1 non-negative floats
        The relative weight of each coalition size m = 0 .. n. "uniform"
        makes every size equally likely, which makes the marginal
        coalitions of every player exactly Shapley-distributed.
    strata : int, optional
        Number of strata (contiguous ranges of sizes of about equal
        weight). Defaults to one per size up to 64 sizes, else 64.
    antithetic : bool
        Pair each coalition with its complement in one sample.

    Notes
    -----
    Memory: per semivalue and accumulator, 3 x strata x n numbers (counts,
    sums, squared deviations): 15 MB at n = 10,000 with 64 strata.
    """

    max_strata = 64

    def __init__(
        self,
        allocation: str | Any = "uniform",
        *,
        strata: int | None = None,
        antithetic: bool = False,
    ) -> None:
        if isinstance(allocation, str):
            if allocation != "uniform":
                raise ValueError(
                    f"allocation must be 'uniform' or a sequence of n+1 weights, "
                    f"got {allocation!r}"
                )
            self.allocation: str | np.ndarray = allocation
        else:
            weights = np.asarray(allocation, dtype=float)
            if weights.ndim != 1 or len(weights) < 3:
                raise ValueError(
                    "allocation must be 'uniform' or a 1-D sequence of n+1 >= 3 "
                    f"weights (one per coalition size), got shape {weights.shape}"
                )
            if not np.isfinite(weights).all() or (weights < 0).any():
                raise ValueError("allocation weights must be finite and >= 0")
            if weights.sum() <= 0:
                raise ValueError("allocation weights must not all be zero")
            self.allocation = weights / weights.sum()
        self.strata = None if strata is None else check_positive_int(strata, "strata")
        self.antithetic = _check_bool(antithetic, "antithetic")

    def check(self, n: int) -> None:
        super().check(n)
        if isinstance(self.allocation, np.ndarray) and len(self.allocation) != n + 1:
            raise ValueError(
                f"allocation has {len(self.allocation)} weights; a game of n={n} "
                f"players needs n+1 = {n + 1} (one per coalition size 0 .. n)"
            )
        if self.strata is not None and self.strata > n + 1:
            raise ValueError(
                f"strata={self.strata} exceeds the n+1 = {n + 1} coalition sizes"
            )

    def _weights(self, n: int) -> np.ndarray:
        if isinstance(self.allocation, str):
            return np.full(n + 1, 1 / (n + 1))
        return self.allocation

    def n_strata(self, n: int) -> int:
        return int(self._bins(n).max()) + 1

    def _bins(self, n: int) -> np.ndarray:
        """The stratum of each size 0 .. n: contiguous ranges of about equal weight.

        Sizes of zero weight join a neighbour (they are never drawn); a size
        heavier than one stratum's share gets a stratum of its own, so there
        may be fewer strata than asked for.
        """
        weights = self._weights(n)
        wanted = self.strata if self.strata is not None else min(n + 1, self.max_strata)
        midpoints = np.cumsum(weights) - weights / 2
        raw = np.minimum((midpoints * wanted).astype(np.int64), wanted - 1)
        # a zero-weight size takes the stratum of the last positive size before it
        source = np.where(weights > 0, np.arange(n + 1), -1)
        source = np.maximum.accumulate(source)
        source[source < 0] = np.flatnonzero(weights > 0)[0]
        bins = raw[source]
        return np.unique(bins, return_inverse=True)[1].astype(np.int64)

    def size_probabilities(self, n: int) -> np.ndarray:
        weights, bins = self._weights(n), self._bins(n)
        mass = np.bincount(bins, weights=weights)
        # equal shares per stratum, sizes within a stratum by their weight
        return weights / mass[bins] / len(mass)

    def draw(self, rng: np.random.Generator, stratum: int, n: int) -> np.ndarray:
        weights, bins = self._weights(n), self._bins(n)
        sizes = np.flatnonzero((bins == stratum) & (weights > 0))
        p = weights[sizes] / weights[sizes].sum()
        return _subset_of_size(rng, n, int(rng.choice(sizes, p=p)))

    def describe(self) -> dict[str, Any]:
        allocation = (
            self.allocation
            if isinstance(self.allocation, str)
            else self.allocation.tolist()
        )
        return {
            "class": "StratifiedSampler",
            "allocation": allocation,
            "strata": self.strata,
            "antithetic": self.antithetic,
        }


class OwenSampler(CoalitionSampler):
    """Owen sampling (Okhrati & Lipani, 2021): S ~ Bernoulli(q)^n, q stratified.

    Sample ``j`` draws q uniformly within the ``j mod n_q``-th of ``n_q``
    equal cells of [0, 1] (a jittered grid), then each player joins S with
    probability q. Over the cells a player's coalition of others has exactly
    the Shapley distribution, so the estimator is unbiased (a fixed grid of
    q values is not), and the per-cell means are combined as strata.

    Parameters
    ----------
    n_q : int
        Number of cells of q (strata); at least 2.
    antithetic : bool
        Pair each coalition (probability q) with its complement (1 - q).
    """

    def __init__(self, n_q: int = 16, *, antithetic: bool = False) -> None:
        self.n_q = check_positive_int(n_q, "n_q")
        if self.n_q < 2:
            raise ValueError(f"n_q must be >= 2, got {n_q}")
        self.antithetic = _check_bool(antithetic, "antithetic")

    def n_strata(self, n: int) -> int:
        return self.n_q

    def size_probabilities(self, n: int) -> np.ndarray:
        # integral over q in [0, 1] of C(n, m) q^m (1-q)^(n-m) dq = 1 / (n+1)
        return np.full(n + 1, 1 / (n + 1))

    def draw(self, rng: np.random.Generator, stratum: int, n: int) -> np.ndarray:
        q = (stratum + rng.random()) / self.n_q
        return rng.random(n) < q

    def describe(self) -> dict[str, Any]:
        return {"class": "OwenSampler", "n_q": self.n_q, "antithetic": self.antithetic}
