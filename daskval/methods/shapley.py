"""Shapley values: permutation sampling (optionally truncated) and exact enumeration."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import gammaln

from daskval.accumulate import Moments, Statistic
from daskval.methods.base import Valuation
from daskval.plan import EnumerationPlan, Estimate, Plan
from daskval.samplers import ExactSampler, PermutationSampler, Sampler
from daskval.stopping import StoppingCriterion
from daskval.utility import EvalStats, Utility

__all__ = ["ShapleyValuation"]


class PermutationShapleyPlan(Plan):
    """Each sample is a permutation; its marginals are one contribution per player."""

    def __init__(self, n: int, seed: int, sampler: PermutationSampler) -> None:
        self.n, self.seed, self.sampler = n, seed, sampler
        self.u_empty = self.u_full = float("nan")

    def anchors(self) -> list[np.ndarray]:
        return [np.empty(0, dtype=np.intp), np.arange(self.n)]

    def bind_anchors(self, values: list[float]) -> None:
        self.u_empty, self.u_full = values

    def sample_limit(self) -> int | None:
        return None

    def max_evaluations_per_sample(self) -> int:
        return self.sampler.max_evaluations_per_sample(self.n)

    def fixed_evaluations_per_sample(self) -> int | None:
        return self.sampler.fixed_evaluations_per_sample(self.n)

    def _marginals(
        self, utility: Utility, perm: np.ndarray, stats: EvalStats
    ) -> tuple[np.ndarray, int]:
        n, truncation = self.n, self.sampler.truncation
        first_cut = truncation.first_position(n) if truncation is not None else n
        marginals = np.zeros(n)
        previous, calls = self.u_empty, 0
        for size in range(1, n):
            current = utility.evaluate(perm[:size], stats)
            calls += 1
            marginals[perm[size - 1]] = current - previous
            previous = current
            if (
                size >= first_cut
                and truncation is not None
                and truncation.is_done(current, self.u_full)
            ):
                return marginals, calls  # the rest of the permutation adds ~nothing
        marginals[perm[n - 1]] = self.u_full - previous
        return marginals, calls

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        contributions = np.empty((stop - start, self.n))
        calls = np.zeros(stop - start, dtype=np.int32)
        for row, index in enumerate(range(start, stop)):
            perm = self.sampler.permutation(self.seed, index, self.n)
            marginals, calls[row] = self._marginals(utility, perm, stats)
            if self.sampler.antithetic:
                reverse, reverse_calls = self._marginals(utility, perm[::-1], stats)
                marginals = (marginals + reverse) / 2
                calls[row] += reverse_calls
            contributions[row] = marginals
        return {"marginals": Moments.from_samples(contributions)}, calls

    def estimate(self, moments: dict[str, Statistic]) -> Estimate:
        m = moments["marginals"]
        assert isinstance(m, Moments)
        return m.mean, m.stderr, m.count

    def describe(self) -> dict[str, Any]:
        return {
            "plan": "permutation-shapley",
            "n": self.n,
            "seed": self.seed,
            "sampler": self.sampler.describe(),
        }


def shapley_log_weights(n: int) -> np.ndarray:
    """log of 1 / (n * C(n-1, k)) for k = 0 .. n-1: the Shapley weight of a coalition
    of k other players."""
    k = np.arange(n)
    log_binom = gammaln(n) - gammaln(k + 1) - gammaln(n - k)
    return -np.log(n) - log_binom


class ExactShapleyPlan(EnumerationPlan):
    """Each sample is one subset S (bitmask = sample index), evaluated once.

    phi_i = sum_{S containing i} w(|S|-1) u(S) - sum_{S not containing i} w(|S|) u(S),
    with w(k) = 1 / (n C(n-1, k)); the values are the totals, not means.
    """

    def __init__(self, n: int) -> None:
        self.n, self.seed = n, 0
        self.weights = np.exp(shapley_log_weights(n))

    def sample_limit(self) -> int | None:
        return 1 << self.n

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        n, w = self.n, self.weights
        contributions = np.empty((stop - start, n))
        for row, index in enumerate(range(start, stop)):
            members = ExactSampler.subset(index, n)
            inside = np.zeros(n, dtype=bool)
            inside[members] = True
            value = utility.evaluate(members, stats)
            size = len(members)
            w_in = w[size - 1] if size > 0 else 0.0
            w_out = w[size] if size < n else 0.0
            contributions[row] = np.where(inside, w_in * value, -w_out * value)
        return (
            {"marginals": Moments.from_samples(contributions)},
            np.ones(stop - start, dtype=np.int32),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "plan": "exact-shapley",
            "n": self.n,
            "sampler": {"class": "ExactSampler"},
        }


class ShapleyValuation(Valuation):
    """Shapley values of the players of a utility.

    Parameters
    ----------
    utility : Utility
        The game, e.g. a :class:`~daskval.ModelUtility`.
    sampler : PermutationSampler or ExactSampler, optional
        Defaults to ``PermutationSampler()`` (Monte Carlo over permutations;
        add ``truncation=RelativeTruncation()`` for TMC-Shapley).
        ``ExactSampler()`` enumerates all 2^n subsets (n <= 25).
    stop : StoppingCriterion, optional
        When to stop a Monte Carlo run; required unless the sampler is exact
        (which always runs to the end and takes no criterion).
    seed : int, optional
        Root seed; the same seed and budget give the same values on any
        cluster. Drawn at random (and recorded) when None.

    Examples
    --------
    >>> v = ShapleyValuation(u, stop=MaxSamples(100), seed=0).fit()  # doctest: +SKIP
    >>> v.result_.to_pandas()  # doctest: +SKIP
    """

    method_name = "shapley"

    def __init__(
        self,
        utility: Utility,
        *,
        sampler: Sampler | None = None,
        stop: StoppingCriterion | None = None,
        seed: int | None = None,
    ) -> None:
        sampler = PermutationSampler() if sampler is None else sampler
        if not isinstance(sampler, (PermutationSampler, ExactSampler)):
            raise TypeError(
                "sampler must be a PermutationSampler or an ExactSampler, "
                f"got {type(sampler).__name__}"
            )
        if isinstance(sampler, ExactSampler) and stop is not None:
            raise ValueError(
                "stop must be None with sampler=ExactSampler(): exact "
                "enumeration always runs over all subsets"
            )
        if isinstance(sampler, PermutationSampler) and stop is None:
            raise ValueError(
                "stop is required for Monte Carlo sampling, e.g. "
                "stop=MaxSamples(100) or MaxStderr(0.01)"
            )
        super().__init__(utility, stop=stop, seed=seed)
        sampler.check(utility.n)
        self.sampler = sampler

    def make_plan(self) -> Plan:
        if isinstance(self.sampler, ExactSampler):
            return ExactShapleyPlan(self.utility.n)
        return PermutationShapleyPlan(self.utility.n, self.seed, self.sampler)
