"""Group-testing Shapley values (Jia et al., 2019a), with the corrected sample
bound of the Wang & Jia (2023) note.

Each sample draws a coalition size ``k`` in 1 .. n-1 with probability
``q(k) = (1/k + 1/(n-k)) / Z``, ``Z = 2 sum_{k=1}^{n-1} 1/k``, then a
uniform coalition S_t of that size, and costs one utility call. With
``beta_ti = 1[i in S_t]``, ``Z u(S_t) (beta_ti - beta_tj)`` is an unbiased
estimate of the Shapley difference ``s_i - s_j``, so that

    Delta_ij = (Z / T) sum_t u(S_t) (beta_ti - beta_tj),

and the values are any s with ``sum_i s_i = u(N) - u(empty)`` and
``|(s_i - s_j) - Delta_ij| <= epsilon / (2 sqrt(n))`` for every pair (the
paper's feasibility program, solved there with an LP).

The program needs no LP. With ``x_ti = Z u(S_t) beta_ti`` every pairwise
constraint involves only ``r_i = s_i - mean_t x_ti``; the point with all
``r_i`` equal,

    s_i = mean_t x_ti + (u(N) - u(empty) - sum_j mean_t x_tj) / n
        = mean_t y_ti + (u(N) - u(empty)) / n,
    y_ti = Z u(S_t) (beta_ti - k_t / n),

satisfies every pairwise constraint with zero violation, and it is the
centre of the feasible set (the LP of :func:`solve_group_testing_lp`, which
minimises the spread ``max r - min r`` over O(n) constraints, finds this
same point). Being a mean of ``y_ti``, it gets a standard error per player
from the per-player moments of ``y`` that the workers accumulate, like any
Monte Carlo semivalue. ``u(S_t)`` enters as ``u(S_t) - u(empty)``: the
expectation is unchanged (``E[beta_ti - k_t/n] = 0``), and the estimate
does not depend on an additive constant in the utility.

References
----------
.. [1] Jia, R., Dao, D., Wang, B., Hubis, F. A., Hynes, N., Gürel, N. M.,
   Li, B., Zhang, C., Song, D. and Spanos, C. J. (2019). Towards efficient
   data valuation based on the Shapley value. *AISTATS* 2019, PMLR 89,
   pp. 1167-1176.
.. [2] Wang, J. T. and Jia, R. (2023). A note on "Towards efficient data
   valuation based on the Shapley value". arXiv:2302.11431.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from daskval._validation import check_positive_int, check_positive_number
from daskval.accumulate import Moments, Statistic
from daskval.methods.base import Valuation
from daskval.plan import Estimate, Plan, derived
from daskval.samplers import sample_rng
from daskval.utility import EvalStats, Utility

__all__ = [
    "GroupTestingShapleyValuation",
    "group_testing_sample_size",
    "solve_group_testing_lp",
]

_SOLVERS = ("closed-form", "lp")


def _size_law(n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Sizes k = 1 .. n-1, their probabilities q(k), and Z."""
    k = np.arange(1, n)
    weights = 1.0 / k + 1.0 / (n - k)
    z = float(weights.sum())  # = 2 sum_k 1/k
    return k, weights / z, z


def group_testing_sample_size(n: int, epsilon: float, delta: float) -> int:
    """Samples for an (epsilon, delta) guarantee, Wang & Jia (2023), Theorem 4.

    ``T = log(n (n-1) / delta) / ((1 - q_tot) h(epsilon / (2 Z sqrt(n) (1 -
    q_tot))))`` with ``h(u) = (1 + u) log(1 + u) - u`` and ``q_tot`` the
    probability that a sampled coalition holds both or neither of two given
    players, ``q_tot = sum_k q(k) (k (k-1) + (n-k) (n-k-1)) / (n (n-1))``
    (Bennett's inequality on ``Z u(S) (beta_i - beta_j)``, zero with
    probability q_tot). The bound is for utilities with values in an
    interval of length 1 (accuracy, for instance); for a range r, pass
    ``epsilon / r``.

    Parameters
    ----------
    n : int
        Players, >= 2.
    epsilon : float
        The l2 error of all the values together, > 0.
    delta : float
        The probability of missing it, in (0, 1).

    Returns
    -------
    int
        T, rounded up.
    """
    n = check_positive_int(n, "n")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    epsilon = check_positive_number(epsilon, "epsilon")
    delta = _check_delta(delta)
    k, q, z = _size_law(n)
    both_or_neither = (k * (k - 1) + (n - k) * (n - k - 1)) / (n * (n - 1))
    q_tot = float(q @ both_or_neither)
    u = epsilon / (2 * z * math.sqrt(n) * (1 - q_tot))
    h = (1 + u) * math.log1p(u) - u
    return math.ceil(math.log(n * (n - 1) / delta) / ((1 - q_tot) * h))


def _check_delta(delta: Any) -> float:
    value = check_positive_number(delta, "delta")
    if value >= 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    return value


def solve_group_testing_lp(means: np.ndarray, total: float) -> tuple[np.ndarray, float]:
    """The paper's feasibility program as an LP with O(n) constraints.

    Minimises the spread ``hi - lo`` with ``lo <= s_i - means_i <= hi`` and
    ``sum s = total``: the largest ``|(s_i - s_j) - (means_i - means_j)|``
    over all pairs is exactly that spread, so the LP finds the point that
    violates the pairwise constraints least (and satisfies them for any
    epsilon when it is feasible at all).

    Parameters
    ----------
    means : np.ndarray
        ``mean_t x_ti`` (or ``mean_t y_ti``: they differ by a common shift).
    total : float
        ``u(N) - u(empty)``.

    Returns
    -------
    values : np.ndarray
        The solution s.
    spread : float
        Its largest pairwise violation (0 up to HiGHS's tolerance).
    """
    n = len(means)
    # variables (s_1 .. s_n, lo, hi); s_i - hi <= m_i and lo - s_i <= -m_i
    eye = np.eye(n)
    column = np.ones((n, 1))
    a_ub = np.block(
        [[eye, np.zeros((n, 1)), -column], [-eye, column, np.zeros((n, 1))]]
    )
    b_ub = np.concatenate([means, -means])
    cost = np.zeros(n + 2)
    cost[n], cost[n + 1] = -1.0, 1.0
    import scipy.optimize  # the client solves: workers never need it

    result = scipy.optimize.linprog(
        cost,
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=np.concatenate([np.ones(n), [0.0, 0.0]])[None, :],
        b_eq=[total],
        bounds=[(None, None)] * (n + 2),
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"the group-testing LP failed: {result.message}")
    values = np.asarray(result.x[:n])
    residual = values - means
    return values, float(residual.max() - residual.min())


class GroupTestingPlan(Plan):
    """Sample ``j``: a size from q, then a uniform coalition of that size,
    both from ``sample_rng(seed, j)``; one utility call; the per-player
    moments of ``y_j = Z (u(S_j) - u(empty)) (beta_j - k_j / n)``."""

    statistics = ("differences",)

    def __init__(
        self,
        n: int,
        seed: int,
        n_samples: int,
        epsilon: float,
        solver: str,
        delta: float = 0.05,
    ) -> None:
        self.n, self.seed = n, seed
        self.n_samples = n_samples
        self.epsilon, self.delta = epsilon, delta
        self.solver = solver
        self.u_empty = self.u_full = float("nan")
        self.check: dict[str, Any] | None = None

    @derived
    def size_law(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The coalition sizes, their probabilities q and the scale Z."""
        return _size_law(self.n)

    def anchors(self) -> list[np.ndarray]:
        return [np.empty(0, dtype=np.intp), np.arange(self.n)]

    def bind_anchors(self, values: list[float]) -> None:
        self.u_empty, self.u_full = values

    def sample_limit(self) -> int | None:
        return self.n_samples

    def max_evaluations_per_sample(self) -> int:
        return 1

    def fixed_evaluations_per_sample(self) -> int | None:
        return 1

    def coalition(self, index: int) -> np.ndarray:
        """The coalition of sample ``index``, as a boolean mask."""
        rng = sample_rng(self.seed, index)
        sizes, q, _ = self.size_law
        k = int(rng.choice(sizes, p=q))
        mask = np.zeros(self.n, dtype=bool)
        mask[rng.permutation(self.n)[:k]] = True
        return mask

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        inside = np.empty((stop - start, self.n), dtype=bool)
        u = np.empty(stop - start)
        for row, index in enumerate(range(start, stop)):
            inside[row] = self.coalition(index)
            u[row] = utility.evaluate(np.flatnonzero(inside[row]), stats)
        sizes = inside.sum(axis=1, keepdims=True)
        y = self.size_law[2] * (u - self.u_empty)[:, None] * (inside - sizes / self.n)
        return (
            {"differences": Moments.from_samples(y)},
            np.ones(stop - start, dtype=np.int32),
        )

    def estimate(self, moments: dict[str, Statistic]) -> Estimate:
        m = moments["differences"]
        assert isinstance(m, Moments)
        total = self.u_full - self.u_empty
        means = m.mean
        if self.solver == "lp" and m.count.max(initial=0) > 0:
            values, _ = solve_group_testing_lp(means, total)
        else:
            values = means + total / self.n
        self.check = self._feasibility(values, means)
        return values, m.stderr, m.count

    def _feasibility(self, values: np.ndarray, means: np.ndarray) -> dict[str, Any]:
        """The largest pairwise violation |(s_i - s_j) - Delta_ij| (the spread
        of s - means) against the paper's epsilon / (2 sqrt(n))."""
        residual = values - means
        violation = float(residual.max() - residual.min())
        tolerance = self.epsilon / (2 * math.sqrt(self.n))
        needed = group_testing_sample_size(self.n, self.epsilon, self.delta)
        return {
            "max_pair_violation": violation,
            "pair_tolerance": tolerance,
            "feasible": bool(violation <= tolerance),
            "efficiency_gap": float(values.sum() - (self.u_full - self.u_empty)),
            # the (epsilon, delta) guarantee needs this many samples
            "bound_samples": needed,
            "bound_met": bool(self.n_samples >= needed),
        }

    def describe(self) -> dict[str, Any]:
        description: dict[str, Any] = {
            "plan": "group-testing",
            "n": self.n,
            "seed": self.seed,
            "n_samples": self.n_samples,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "solver": self.solver,
        }
        if self.check is not None:
            # after an estimate: the feasibility check (result metadata only;
            # a checkpoint's identity is taken before any estimate)
            description["group_testing"] = self.check
        return description


class GroupTestingShapleyValuation(Valuation):
    """Shapley values by group testing (Jia et al., 2019a).

    Every sample is one coalition, of size k in 1 .. n-1 with probability
    proportional to ``1/k + 1/(n-k)`` and uniform given its size, and one
    utility call on a worker (through the memo). The value of player i is

        s_i = mean_t Z (u(S_t) - u(empty)) (beta_ti - k_t / n)
              + (u(N) - u(empty)) / n,

    the centre of the paper's feasible set ``{s : sum s = u(N) - u(empty),
    |(s_i - s_j) - Delta_ij| <= epsilon / (2 sqrt(n))}``, which satisfies
    every pairwise constraint exactly (see :mod:`this module
    <daskval.methods.group_testing>` for why the paper's LP adds nothing).

    Parameters
    ----------
    utility : Utility
        The game (players are the training points, or the groups of a
        grouped :class:`~daskval.Dataset`).
    n_samples : int, optional
        Samples (utility calls, besides u(empty) and u(N)). Default: the
        corrected bound :func:`group_testing_sample_size` for ``epsilon``
        and ``delta``, which is large (about 7e5 at n = 10 and 2e7 at
        n = 100 for the defaults): pass a budget for practical runs.
    epsilon : float
        The l2 error the bound guarantees, and the pairwise tolerance
        ``epsilon / (2 sqrt(n))`` checked on the result (default 0.1).
    delta : float
        The bound's failure probability, in (0, 1) (default 0.05).
    seed : int, optional
        Root seed.
    solver : {"closed-form", "lp"}
        ``"lp"`` solves the paper's program with HiGHS (an O(n)-constraint
        form, :func:`solve_group_testing_lp`); it finds the closed form's
        point up to HiGHS's tolerance.

    Notes
    -----
    Standard errors are those of the mean of ``y_ti`` (the per-player
    sample standard deviation over sqrt(T)); the values sum to
    ``u(N) - u(empty)`` exactly. ``result_.metadata["plan"]["group_testing"]``
    holds the feasibility check: ``max_pair_violation`` (the largest
    ``|(s_i - s_j) - Delta_ij|``), ``pair_tolerance``, ``feasible`` and
    ``efficiency_gap``; and whether the run had the samples the
    (epsilon, delta) bound asks for (``bound_samples``, ``bound_met``).

    The method needs far more utility calls than permutation or MSR
    sampling for the same accuracy on small games; it is here for comparison
    with the literature.
    """

    method_name = "group-testing-shapley"

    def __init__(
        self,
        utility: Utility,
        *,
        n_samples: int | None = None,
        epsilon: float = 0.1,
        delta: float = 0.05,
        seed: int | None = None,
        solver: str = "closed-form",
    ) -> None:
        super().__init__(utility, stop=None, seed=seed)
        n = utility.n
        if n < 2:
            raise ValueError(
                f"group testing needs at least 2 players, got n={n}: a single "
                "player's Shapley value is u(N) - u(empty)"
            )
        self.epsilon = check_positive_number(epsilon, "epsilon")
        self.delta = _check_delta(delta)
        if solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}")
        self.solver = solver
        self.n_samples = (
            group_testing_sample_size(n, self.epsilon, self.delta)
            if n_samples is None
            else check_positive_int(n_samples, "n_samples")
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "n_samples": self.n_samples,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "solver": self.solver,
        }

    def make_plan(self) -> Plan:
        return GroupTestingPlan(
            self.utility.n,
            self.seed,
            self.n_samples,
            self.epsilon,
            self.solver,
            self.delta,
        )
