"""Semivalue plans: one sampler, one set of utility calls, any number of semivalues.

Every plan here turns sampled coalitions into importance-weighted marginal
contributions, one statistic per semivalue, so that Shapley, Banzhaf and Beta
values can come from the same evaluated coalitions (maximum sample reuse):

- :class:`ExactSemivaluePlan` enumerates all 2^n coalitions once each;
- :class:`PermutationSemivaluePlan` walks random permutations: the player at
  position ``k`` gets ``u(prefix + i) - u(prefix)`` with a prefix of size
  ``k``, which is Shapley-distributed, so semivalue ``p`` weighs it by
  ``n p(k)``;
- :class:`FlipSemivaluePlan` draws a coalition S from a
  :class:`~daskval.samplers.CoalitionSampler` and evaluates S and S with each
  player flipped in or out (n+1 calls), giving every player one marginal
  ``u(T + i) - u(T)`` with ``T = S - i``, weighted by ``w(|T|) / q(|T|)``;
- :class:`MSRSemivaluePlan` evaluates only u(S) and estimates
  ``E[u(S) | i in S] - E[u(S) | i not in S]`` under the semivalue's weights
  by self-normalised importance sampling.

Per task, the weighting and the statistics are numpy operations over the
task's (samples x players) arrays; there is no per-player Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from daskval.accumulate import CoalitionSums, Moments, Statistic
from daskval.methods.base import Valuation
from daskval.methods.regression import RegressionSampler, make_regression_plan
from daskval.plan import EnumerationPlan, Estimate, Plan, derived
from daskval.samplers import (
    CoalitionSampler,
    ExactSampler,
    MSRSampler,
    PermutationSampler,
    Sampler,
    log_marginal_probabilities,
)
from daskval.semivalues import (
    Banzhaf,
    Beta,
    Semivalue,
    Shapley,
    WeightedBanzhaf,
    log_binomial,
)
from daskval.stopping import StoppingCriterion, check_ends, planned_samples
from daskval.utility import EvalStats, Utility

__all__ = [
    "BanzhafValuation",
    "BetaShapleyValuation",
    "ExactSemivaluePlan",
    "FlipSemivaluePlan",
    "MSRSemivaluePlan",
    "PermutationSemivaluePlan",
    "SemivalueValuation",
    "WeightedBanzhafValuation",
]


class _SemivaluePlan(Plan):
    """Shared bookkeeping: the semivalues, their names and the outputs."""

    def __init__(self, n: int, seed: int, semivalues: Sequence[Semivalue]) -> None:
        self.n, self.seed = n, seed
        self.semivalues = list(semivalues)
        self.statistics = tuple(v.name for v in self.semivalues)

    def estimates(self, moments: dict[str, Statistic]) -> dict[str, Estimate] | None:
        if len(self.semivalues) == 1:
            return None
        return {name: self._estimate_one(moments[name]) for name in self.statistics}

    def estimate(self, moments: dict[str, Statistic]) -> Estimate:
        return self._estimate_one(moments[self.statistics[0]])

    def _estimate_one(self, statistic: Statistic) -> Estimate:
        assert isinstance(statistic, Moments)
        return statistic.mean, statistic.stderr, statistic.count

    def _describe(self, plan: str, sampler: dict[str, Any]) -> dict[str, Any]:
        return {
            "plan": plan,
            "n": self.n,
            "seed": self.seed,
            "semivalues": [v.describe() for v in self.semivalues],
            "sampler": sampler,
        }


class ExactSemivaluePlan(_SemivaluePlan, EnumerationPlan):
    """Each sample is one coalition S (bitmask = sample index), evaluated once.

    phi_i = sum_{S containing i} w(|S|-1) u(S) - sum_{S not containing i} w(|S|) u(S);
    the values are the totals of these contributions, with a zero stderr.
    """

    def __init__(self, n: int, semivalues: Sequence[Semivalue]) -> None:
        super().__init__(n, 0, semivalues)
        self.weights = np.array([np.exp(v.log_weights(n)) for v in self.semivalues])

    def sample_limit(self) -> int | None:
        return 1 << self.n

    def _estimate_one(self, statistic: Statistic) -> Estimate:
        assert isinstance(statistic, Moments)
        return statistic.total.copy(), np.zeros(self.n), statistic.count

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        n = self.n
        inside = np.zeros((stop - start, n), dtype=bool)
        values = np.empty(stop - start)
        for row, index in enumerate(range(start, stop)):
            members = ExactSampler.subset(index, n)
            inside[row, members] = True
            values[row] = utility.evaluate(members, stats)
        sizes = inside.sum(axis=1)
        # w(|S|-1) for members, -w(|S|) for the others (no such term at the ends)
        padded = np.pad(self.weights, ((0, 0), (1, 1)))
        statistics: dict[str, Statistic] = {}
        for name, w in zip(self.statistics, padded, strict=True):
            w_in, w_out = w[sizes], w[sizes + 1]
            factor = np.where(inside, w_in[:, None], -w_out[:, None])
            statistics[name] = Moments.from_samples(factor * values[:, None])
        return statistics, np.ones(stop - start, dtype=np.int32)

    def describe(self) -> dict[str, Any]:
        return self._describe("exact-semivalue", {"class": "ExactSampler"})


def _log_ratios(
    semivalues: Sequence[Semivalue], log_q: np.ndarray, n: int
) -> np.ndarray:
    """log(w(k) / q(k)) per semivalue (rows) and size k = 0 .. n-1 (columns)."""
    with np.errstate(invalid="ignore"):
        ratios = np.array([v.log_weights(n) - log_q for v in semivalues])
    return np.where(np.isneginf(log_q), -np.inf, ratios)


def _importance_factors(
    log_ratios: np.ndarray, semivalues: Sequence[Semivalue]
) -> np.ndarray:
    """exp of the log ratios, with Shapley's exactly 1 where it is 1 in theory
    (so permutation Shapley stays a plain mean of marginals)."""
    factors = np.exp(log_ratios)
    for row, semivalue in enumerate(semivalues):
        if type(semivalue) is Shapley and np.allclose(factors[row], 1.0, rtol=1e-9):
            factors[row] = 1.0
    return factors


class PermutationSemivaluePlan(_SemivaluePlan):
    """Each sample is a permutation (and its reverse if antithetic).

    A player at position ``k`` joins a prefix of ``k`` players, a
    Shapley-distributed coalition (probability 1 / (n C(n-1, k))), so its
    marginal counts ``n p(k)`` times for a semivalue with size law ``p``.
    The prefixes of one permutation are evaluated through
    :meth:`~daskval.utility.Utility.chain` (warm starts, where enabled).
    """

    def __init__(
        self,
        n: int,
        seed: int,
        sampler: PermutationSampler,
        semivalues: Sequence[Semivalue] = (Shapley(),),
    ) -> None:
        super().__init__(n, seed, semivalues)
        self.sampler = sampler
        self.u_empty = self.u_full = float("nan")

    @derived
    def factors(self) -> np.ndarray:
        """(semivalues, n): the importance factor of each prefix size."""
        log_q = Shapley().log_weights(self.n)
        return _importance_factors(
            _log_ratios(self.semivalues, log_q, self.n), self.semivalues
        )

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
        """The marginal of each player along ``perm``, and the utility calls made."""
        n, truncation = self.n, self.sampler.truncation
        first_cut = truncation.first_position(n) if truncation is not None else n
        marginals = np.zeros(n)
        previous, calls = self.u_empty, 0
        path = utility.chain()  # warm starts along the permutation, if enabled
        for size in range(1, n):
            current = path.evaluate(perm[:size], stats)
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

    def _weighted(self, marginals: np.ndarray, perm: np.ndarray) -> np.ndarray:
        """(semivalues, n): each player's marginal times its size's factor."""
        position = np.empty(self.n, dtype=np.intp)
        position[perm] = np.arange(self.n)
        return marginals * self.factors[:, position]

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        contributions = np.empty((len(self.semivalues), stop - start, self.n))
        calls = np.zeros(stop - start, dtype=np.int32)
        for row, index in enumerate(range(start, stop)):
            perm = self.sampler.permutation(self.seed, index, self.n)
            marginals, calls[row] = self._marginals(utility, perm, stats)
            weighted = self._weighted(marginals, perm)
            if self.sampler.antithetic:
                reverse, reverse_calls = self._marginals(utility, perm[::-1], stats)
                weighted = (weighted + self._weighted(reverse, perm[::-1])) / 2
                calls[row] += reverse_calls
            contributions[:, row] = weighted
        statistics: dict[str, Statistic] = {
            name: Moments.from_samples(contributions[k])
            for k, name in enumerate(self.statistics)
        }
        return statistics, calls

    def describe(self) -> dict[str, Any]:
        return self._describe("permutation-semivalue", self.sampler.describe())


class FlipSemivaluePlan(_SemivaluePlan):
    """Each sample is a coalition S (and its complement if antithetic); every
    player gets the marginal of flipping it: n+1 utility calls per coalition.

    With a stratified sampler (several strata), per-stratum means and
    variances are kept per player and combined with equal stratum weights.
    """

    def __init__(
        self,
        n: int,
        seed: int,
        sampler: CoalitionSampler,
        semivalues: Sequence[Semivalue],
    ) -> None:
        super().__init__(n, seed, semivalues)
        self.sampler = sampler
        self.n_strata = sampler.n_strata(n)
        _check_support(self.semivalues, sampler.size_probabilities(n), n, sampler)

    @derived
    def factors(self) -> list[np.ndarray]:
        """The importance factors for S and, reversed, for its complement."""
        pi = self.sampler.size_probabilities(self.n)
        return [
            _importance_factors(
                _log_ratios(self.semivalues, log_marginal_probabilities(p), self.n),
                self.semivalues,
            )
            for p in (pi, pi[::-1])
        ]

    def empty_statistics(self) -> dict[str, Statistic]:
        shape = (self.n_strata, self.n)
        return {
            name: Moments(np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape))
            for name in self.statistics
        }

    def sample_limit(self) -> int | None:
        return None

    def max_evaluations_per_sample(self) -> int:
        return self.sampler.max_evaluations_per_sample(self.n)

    def fixed_evaluations_per_sample(self) -> int | None:
        return self.sampler.max_evaluations_per_sample(self.n)

    def _flip_marginals(
        self, utility: Utility, mask: np.ndarray, stats: EvalStats
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each player's marginal ``u(T + i) - u(T)`` with ``T = S - i``, and |T|."""
        u_s = utility.evaluate(np.flatnonzero(mask), stats)
        flipped = np.empty(self.n)
        for i in range(self.n):
            mask[i] = not mask[i]
            flipped[i] = utility.evaluate(np.flatnonzero(mask), stats)
            mask[i] = not mask[i]
        marginals = np.where(mask, u_s - flipped, flipped - u_s)
        return marginals, mask.sum() - mask  # |T|: one fewer for the members

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        n, rows = self.n, stop - start
        contributions = np.zeros((len(self.semivalues), rows, n))
        for row, index in enumerate(range(start, stop)):
            coalitions = self.sampler.coalitions(self.seed, index, n)
            for law, mask in enumerate(coalitions):
                marginals, sizes = self._flip_marginals(utility, mask, stats)
                contributions[:, row] += self.factors[law][:, sizes] * marginals
            contributions[:, row] /= len(coalitions)
        strata = np.arange(start, stop) % self.n_strata
        statistics: dict[str, Statistic] = {
            name: _stratified_moments(contributions[k], strata, self.n_strata)
            for k, name in enumerate(self.statistics)
        }
        calls = self.sampler.max_evaluations_per_sample(n)
        return statistics, np.full(rows, calls, dtype=np.int32)

    def _estimate_one(self, statistic: Statistic) -> Estimate:
        assert isinstance(statistic, Moments)
        return _combine_strata(statistic)

    def describe(self) -> dict[str, Any]:
        return self._describe("flip-semivalue", self.sampler.describe())


def _stratified_moments(
    contributions: np.ndarray, strata: np.ndarray, n_strata: int
) -> Moments:
    """(strata, n) moments of the rows of ``contributions`` in each stratum."""
    n = contributions.shape[1]
    count = np.zeros((n_strata, n), np.int64)
    total, m2 = np.zeros((n_strata, n)), np.zeros((n_strata, n))
    for stratum in np.unique(strata):
        m = Moments.from_samples(contributions[strata == stratum])
        count[stratum], total[stratum], m2[stratum] = m.count, m.total, m.m2
    return Moments(count, total, m2)


def _combine_strata(moments: Moments) -> Estimate:
    """Equal-weight stratified mean and its standard error, per player.

    Strata were sampled round-robin, so each has weight 1 / strata; a
    stratum without samples leaves the estimate incomplete (infinite stderr).
    """
    n_strata = moments.count.shape[0]
    values = moments.mean.sum(axis=0) / n_strata
    with np.errstate(invalid="ignore", divide="ignore"):
        per_stratum = np.where(
            moments.count > 1,
            moments.m2
            / np.maximum(moments.count - 1, 1)
            / np.maximum(moments.count, 1),
            np.inf,
        )
    stderr = np.sqrt(per_stratum.sum(axis=0)) / n_strata
    return values, stderr, moments.count.sum(axis=0)


class MSRSemivaluePlan(_SemivaluePlan):
    """Each sample is one coalition S and one utility call, shared by all players.

    For player i, coalitions containing i estimate ``sum_{S ni i} w(|S|-1) u(S)``
    and the others ``sum_{S not ni i} w(|S|) u(S)``, each by a self-normalised
    importance-weighted mean with weights ``a_in(s) = w(s-1) / P(S)`` and
    ``a_out(s) = w(s) / P(S)``; both weight families sum to one over all
    coalitions, so the estimate is invariant to adding a constant to u. With
    ``MSRSampler(0.5)`` and Banzhaf the weights are constant and this is the
    difference of plain means of Wang & Jia (2023).

    The standard error is the delta-method variance of each ratio,
    ``sum a^2 (u - R)^2 / (sum a)^2``, corrected by ``m / (m - 1)`` on the
    effective sample size ``m = (sum a)^2 / sum a^2``. Statistics per
    semivalue: 2 sides x 5 sums x n floats, held as the sampled coalitions
    while they are fewer (:class:`~daskval.accumulate.CoalitionSums`).
    """

    _SUMS = 5  # sum a, sum a u, sum a^2, sum a^2 u, sum a^2 u^2

    def __init__(
        self,
        n: int,
        seed: int,
        sampler: MSRSampler,
        semivalues: Sequence[Semivalue],
    ) -> None:
        super().__init__(n, seed, semivalues)
        self.sampler = sampler
        pi = sampler.size_probabilities(n)
        _check_support(self.semivalues, pi, n, sampler, msr=True)

    @derived
    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``a_in`` and ``a_out``: (semivalues, n + 1) weights per size."""
        n = self.n
        s = np.arange(n + 1)
        with np.errstate(divide="ignore"):
            # log P(S) for |S| = s
            log_set = np.log(self.sampler.size_probabilities(n)) - log_binomial(n, s)
        # a_in(s) = w(s-1) / P(S) for s >= 1; a_out(s) = w(s) / P(S) for s <= n-1
        a_in = np.zeros((len(self.semivalues), n + 1))
        a_out = np.zeros((len(self.semivalues), n + 1))
        for k, v in enumerate(self.semivalues):
            log_w = v.log_weights(n)
            with np.errstate(invalid="ignore", over="ignore"):
                a_in[k, 1:] = np.exp(log_w[s[1:] - 1] - log_set[1:])
                a_out[k, :-1] = np.exp(log_w[s[:-1]] - log_set[:-1])
        return (
            np.nan_to_num(a_in, nan=0.0, posinf=0.0),
            np.nan_to_num(a_out, nan=0.0, posinf=0.0),
        )

    def empty_statistics(self) -> dict[str, Statistic]:
        return {
            name: CoalitionSums.empty(self.n, self._SUMS) for name in self.statistics
        }

    def sample_limit(self) -> int | None:
        return None

    def max_evaluations_per_sample(self) -> int:
        return 1

    def fixed_evaluations_per_sample(self) -> int | None:
        return 1

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        rows = stop - start
        inside = np.empty((rows, self.n), dtype=bool)
        u = np.empty(rows)
        for row, index in enumerate(range(start, stop)):
            inside[row] = self.sampler.coalitions(self.seed, index, self.n)[0]
            u[row] = utility.evaluate(np.flatnonzero(inside[row]), stats)
        sizes = inside.sum(axis=1)
        a_in, a_out = self.weights
        # the samples travel as coalitions while that is smaller than the
        # 2 x 5 x n sums (CoalitionSums): at large n a leaf is kilobytes
        statistics: dict[str, Statistic] = {
            name: CoalitionSums.from_samples(
                inside,
                _weighted_sums(a_in[k, sizes], u),
                _weighted_sums(a_out[k, sizes], u),
            )
            for k, name in enumerate(self.statistics)
        }
        return statistics, np.ones(rows, dtype=np.int32)

    def _estimate_one(self, statistic: Statistic) -> Estimate:
        assert isinstance(statistic, CoalitionSums)
        sums = statistic.sums()
        mean_in, var_in, m_in = _ratio_estimate(sums["in"])
        mean_out, var_out, m_out = _ratio_estimate(sums["out"])
        return mean_in - mean_out, np.sqrt(var_in + var_out), m_in + m_out

    def describe(self) -> dict[str, Any]:
        return self._describe("msr-semivalue", self.sampler.describe())


def _weighted_sums(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per sample: a, a u, a^2, a^2 u, a^2 u^2 (samples x 5)."""
    a2 = a * a
    return np.column_stack([a, a * u, a2, a2 * u, a2 * u * u])


def _ratio_estimate(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Self-normalised mean, its delta-method variance, and sample counts."""
    sa, sau, sa2, sa2u, sa2u2 = sums.T
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(sa > 0, sau / sa, 0.0)
        spread = np.maximum(sa2u2 - 2 * mean * sa2u + mean**2 * sa2, 0.0)
        effective = np.where(sa2 > 0, sa**2 / sa2, 0.0)
        variance = np.where(
            effective > 1, spread / sa**2 * effective / (effective - 1), np.inf
        )
    # counts: how many samples fell on this side (a > 0 there), for progress
    return mean, variance, np.rint(effective).astype(np.int64)


def _check_support(
    semivalues: Sequence[Semivalue],
    pi: np.ndarray,
    n: int,
    sampler: Any,
    *,
    msr: bool = False,
) -> None:
    """Refuse a sampler that never draws coalitions a semivalue weighs."""
    if msr:
        # a player in S of size s needs w(s-1) > 0; out of S, w(s) > 0
        need = np.zeros(n + 1, dtype=bool)
        for v in semivalues:
            positive = np.exp(v.log_weights(n)) > 0
            need[1:] |= positive
            need[:-1] |= positive
        missing = need & (pi <= 0)
    else:
        q = np.exp(log_marginal_probabilities(pi))
        missing = np.zeros(n, dtype=bool)
        for v in semivalues:
            missing |= (np.exp(v.log_weights(n)) > 0) & (q <= 0)
    if missing.any():
        raise ValueError(
            f"sampler={type(sampler).__name__}(...) never draws coalitions of "
            f"sizes {np.flatnonzero(missing).tolist()[:10]} that the semivalue "
            "weighs; its estimate would be biased. Give every size a positive "
            "allocation."
        )


# -- valuations ---------------------------------------------------------------

# every sampler a semivalue valuation accepts
AnySampler = Sampler | RegressionSampler
_MONTE_CARLO = (PermutationSampler, CoalitionSampler, RegressionSampler)
_REGRESSION_SEMIVALUES = (Shapley, Banzhaf, WeightedBanzhaf)


class SemivalueValuation(Valuation):
    """Several semivalues of the players of a utility, from one set of samples.

    Every sampled coalition serves every semivalue (maximum sample reuse):
    comparing Shapley, Banzhaf and Beta values costs one run. ``result_`` is
    the first semivalue's result, ``results_`` maps each semivalue's name
    (``"shapley"``, ``"banzhaf"``, ``"beta(16,1)"``, ...) to its result. The
    stopping criterion watches the first semivalue.

    Parameters
    ----------
    utility : Utility
        The game, e.g. a :class:`~daskval.ModelUtility`.
    semivalues : sequence of Semivalue
        E.g. ``[Shapley(), Banzhaf(), Beta(16, 1)]``; names must differ.
    sampler : Sampler, optional
        ``MSRSampler(inclusion=None)`` by default (one utility call per
        coalition, sizes uniform: every call updates every player and every
        semivalue). Also: ``ExactSampler()``, ``PermutationSampler()``,
        ``UniformSampler()``, ``AntitheticSampler()``,
        ``StratifiedSampler()``, ``OwenSampler()``; and, for Shapley,
        Banzhaf or weighted Banzhaf alone, ``RegressionSampler()`` (Kernel
        SHAP / least-squares Banzhaf: the fewest calls per unit of accuracy
        at small n; see :mod:`daskval.methods.regression`).
    stop : StoppingCriterion, optional
        Required for Monte Carlo samplers; must be None with ExactSampler.
    seed : int, optional
        Root seed (drawn at random and recorded when None).

    Notes
    -----
    Each semivalue's estimate is an importance-weighted mean of marginal
    contributions whose coalitions the sampler draws with a known law q:
    the weight is ``w(k) / q(k)`` for a marginal coalition of size k
    (:mod:`daskval.semivalues`). Its standard error is the sample standard
    deviation of the weighted contributions over the square root of the
    number of samples (per stratum for stratified samplers; delta method
    for the self-normalised MSR estimator). A semivalue whose weights are
    far from the sampler's law gets fewer effective samples, and a larger
    stderr: the stderr says how much each one can be trusted.
    """

    method_name = "semivalues"
    default_sampler: Any = None

    def __init__(
        self,
        utility: Utility,
        semivalues: Sequence[Semivalue],
        *,
        sampler: AnySampler | None = None,
        stop: StoppingCriterion | None = None,
        seed: int | None = None,
    ) -> None:
        self.semivalues = _check_semivalues(semivalues)
        sampler = self._default_sampler() if sampler is None else sampler
        _check_sampler(sampler, stop, self.semivalues)
        super().__init__(utility, stop=stop, seed=seed)
        sampler.check(utility.n)
        self.sampler: AnySampler = sampler

    def _default_sampler(self) -> AnySampler:
        return MSRSampler(inclusion=None)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "semivalues": [v.describe() for v in self.semivalues],
            "sampler": self.sampler.describe(),
        }

    def make_plan(self) -> Plan:
        n, seed, sampler = self.utility.n, self.seed, self.sampler
        if isinstance(sampler, ExactSampler):
            return ExactSemivaluePlan(n, self.semivalues)
        if isinstance(sampler, RegressionSampler):
            return self._regression_plan(sampler)
        if isinstance(sampler, PermutationSampler):
            return PermutationSemivaluePlan(n, seed, sampler, self.semivalues)
        if isinstance(sampler, MSRSampler):
            return MSRSemivaluePlan(n, seed, sampler, self.semivalues)
        assert isinstance(sampler, CoalitionSampler)
        return FlipSemivaluePlan(n, seed, sampler, self.semivalues)

    def _regression_plan(self, sampler: RegressionSampler) -> Plan:
        (semivalue,) = self.semivalues
        paired = sampler.max_evaluations_per_sample(self.utility.n)
        # the border trick enumerates whole size strata the budget can pay for
        cap = planned_samples(self.stop, 2, paired)
        if isinstance(semivalue, WeightedBanzhaf):
            return make_regression_plan(
                "banzhaf",
                self.utility.n,
                self.seed,
                sampler,
                inclusion=semivalue.w,
                sample_cap=cap,
            )
        return make_regression_plan(
            "shapley", self.utility.n, self.seed, sampler, sample_cap=cap
        )


def _check_semivalues(semivalues: Any) -> list[Semivalue]:
    if isinstance(semivalues, Semivalue) or not isinstance(semivalues, Sequence):
        raise TypeError(
            "semivalues must be a sequence of semivalues such as "
            f"[Shapley(), Banzhaf()], got {type(semivalues).__name__}"
        )
    if not semivalues:
        raise ValueError("semivalues must not be empty")
    for v in semivalues:
        if not isinstance(v, Semivalue):
            raise TypeError(
                "semivalues must contain Shapley(), Banzhaf(), WeightedBanzhaf(w) "
                f"or Beta(alpha, beta) objects, got {type(v).__name__}"
            )
    names = [v.name for v in semivalues]
    if len(set(names)) != len(names):
        raise ValueError(f"semivalues must differ, got {names}")
    return list(semivalues)


def _check_sampler(
    sampler: Any, stop: StoppingCriterion | None, semivalues: list[Semivalue]
) -> None:
    if not isinstance(sampler, (ExactSampler, RegressionSampler, *_MONTE_CARLO)):
        raise TypeError(
            "sampler must be one of ExactSampler, PermutationSampler, "
            "UniformSampler, AntitheticSampler, MSRSampler, StratifiedSampler, "
            f"OwenSampler, RegressionSampler, got {type(sampler).__name__}"
        )
    if isinstance(sampler, RegressionSampler) and (
        len(semivalues) != 1 or type(semivalues[0]) not in _REGRESSION_SEMIVALUES
    ):
        raise ValueError(
            "sampler=RegressionSampler() estimates one semivalue at a time, "
            "Shapley (Kernel SHAP), Banzhaf or weighted Banzhaf (least squares), "
            f"got {[v.name for v in semivalues]}"
        )
    if isinstance(sampler, ExactSampler) and stop is not None:
        raise ValueError(
            "stop must be None with sampler=ExactSampler(): exact "
            "enumeration always runs over all subsets"
        )
    if not isinstance(sampler, ExactSampler) and stop is None:
        raise ValueError(
            "stop is required for Monte Carlo sampling, e.g. "
            "stop=MaxSamples(100) or MaxStderr(0.01) | MaxTime(600)"
        )
    if isinstance(stop, StoppingCriterion) and not isinstance(sampler, ExactSampler):
        check_ends(stop)  # sampling has no end of its own


class _SingleSemivalue(SemivalueValuation):
    """A valuation of one semivalue: ``result_`` is its result."""

    def __init__(
        self,
        utility: Utility,
        semivalue: Semivalue,
        *,
        sampler: AnySampler | None = None,
        stop: StoppingCriterion | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(utility, [semivalue], sampler=sampler, stop=stop, seed=seed)


class BanzhafValuation(_SingleSemivalue):
    """Banzhaf values (Data Banzhaf, Wang & Jia 2023).

    phi_i = 2^-(n-1) sum over S in N - i of (u(S + i) - u(S)): every
    coalition of the others counts the same, which makes Banzhaf the
    semivalue most robust to noise in the utility (the largest "safety
    margin").

    Parameters
    ----------
    utility : Utility
        The game.
    sampler : Sampler, optional
        ``MSRSampler()`` by default: one utility call per random coalition,
        and every call updates every player's estimate. Any sampler of
        :class:`SemivalueValuation` works.
    stop : StoppingCriterion, optional
        Required unless the sampler is exact.
    seed : int, optional
        Root seed.
    """

    method_name = "banzhaf"

    def __init__(
        self,
        utility: Utility,
        *,
        sampler: AnySampler | None = None,
        stop: StoppingCriterion | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(utility, Banzhaf(), sampler=sampler, stop=stop, seed=seed)

    def _default_sampler(self) -> AnySampler:
        return MSRSampler()


class WeightedBanzhafValuation(_SingleSemivalue):
    """Weighted Banzhaf values (Li & Yu, 2023).

    phi_i = sum over S in N - i of w^|S| (1-w)^(n-1-|S|) (u(S + i) - u(S)):
    every other player joins independently with probability ``w``.

    Parameters
    ----------
    utility : Utility
        The game.
    w : float
        Inclusion probability in (0, 1); 0.5 gives Banzhaf.
    sampler : Sampler, optional
        ``MSRSampler(inclusion=w)`` by default.
    stop : StoppingCriterion, optional
        Required unless the sampler is exact.
    seed : int, optional
        Root seed.
    """

    method_name = "weighted-banzhaf"

    def __init__(
        self,
        utility: Utility,
        w: float,
        *,
        sampler: AnySampler | None = None,
        stop: StoppingCriterion | None = None,
        seed: int | None = None,
    ) -> None:
        semivalue = WeightedBanzhaf(w)
        self.w = semivalue.w
        super().__init__(utility, semivalue, sampler=sampler, stop=stop, seed=seed)

    def _default_sampler(self) -> AnySampler:
        return MSRSampler(inclusion=self.w)


class BetaShapleyValuation(_SingleSemivalue):
    """Beta Shapley values (Kwon & Zou, 2022), in the paper's convention.

    The weight of one coalition of ``k`` of the other ``n-1`` players is
    ``B(k + beta, n - 1 - k + alpha) / B(alpha, beta)``: ``Beta(1, 1)`` is
    Shapley, and ``alpha > beta`` (the paper recommends ``alpha=16,
    beta=1``) emphasises small coalitions, where good and bad points differ
    most. pyDVL's documentation states the parameters the other way round.

    Parameters
    ----------
    utility : Utility
        The game.
    alpha, beta : float
        Positive shape parameters.
    sampler : Sampler, optional
        ``PermutationSampler()`` by default; marginals are weighted by
        ``n p(k)`` for a coalition of ``k`` players.
    stop : StoppingCriterion, optional
        Required unless the sampler is exact.
    seed : int, optional
        Root seed.
    """

    method_name = "beta-shapley"

    def __init__(
        self,
        utility: Utility,
        alpha: float,
        beta: float,
        *,
        sampler: AnySampler | None = None,
        stop: StoppingCriterion | None = None,
        seed: int | None = None,
    ) -> None:
        semivalue = Beta(alpha, beta)
        self.alpha, self.beta = semivalue.alpha, semivalue.beta
        super().__init__(utility, semivalue, sampler=sampler, stop=stop, seed=seed)

    def _default_sampler(self) -> AnySampler:
        return PermutationSampler()
