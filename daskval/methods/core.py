"""Least-core values (Yan & Procaccia, 2021): the egalitarian point of the least core.

The least core of a game u over players N is the set of payoff vectors v that
split u(N) and leave every coalition S as little reason as possible to break
away::

    e* = min e   subject to   sum_{i in S} v_i + e >= u(S)  for every S,
                              sum_{i in N} v_i = u(N),

over the proper nonempty coalitions S (neither the empty set nor N: the game
is taken as given, u(empty) is not subtracted). ``e*`` is the *minimal
subsidy*: negative when the core has room to spare, positive when it is
empty. The least core is a polytope, often not a single point; its
minimum-norm (egalitarian) point, ``argmin ||v||^2`` over it, breaks the tie.

How it runs:

- the workers evaluate the constraints' utilities through the engine (and the
  memo): sample ``j`` is one coalition, enumerated (exact, ``j`` read as a
  bitmask, as exact Shapley does) or drawn from ``sample_rng(seed, j)`` by a
  coalition sampler (Monte Carlo, uniform over subsets by default). Sample
  ``j`` carries its coalition (bit-packed) and utility back as a
  :class:`~daskval.accumulate.Rows` statistic; rows concatenate in sample
  order, so the constraint set is exactly that of the first K samples;
- the client finds ``e*`` with HiGHS (``scipy.optimize.linprog``), then the
  egalitarian point with a quadratic program solved as least-distance
  programming (Lawson & Hanson's reduction to non-negative least squares,
  ``scipy.optimize.nnls``) inside a cutting-plane loop over the constraints.

References
----------
.. [1] Yan, T. and Procaccia, A. D. (2021). If you like Shapley then you'll
   love the core. *AAAI* 35(6), pp. 5751-5759.
.. [2] Lawson, C. L. and Hanson, R. J. (1974). *Solving Least Squares
   Problems*, chapter 23 (least-distance programming). Prentice-Hall.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from daskval._validation import check_positive_int
from daskval.accumulate import Rows, Statistic
from daskval.methods.base import Valuation
from daskval.plan import Estimate, Plan
from daskval.samplers import CoalitionSampler, ExactSampler, UniformSampler, sample_rng
from daskval.utility import EvalStats, Utility

__all__ = [
    "MAX_EXACT_LEAST_CORE_PLAYERS",
    "LeastCoreSolution",
    "LeastCoreValuation",
    "solve_least_core",
]

logger = logging.getLogger("daskval")

# 2^20 - 2 constraints: about a million utility calls, and a 12 MB constraint set
MAX_EXACT_LEAST_CORE_PLAYERS = 20
# Monte Carlo default: this many sampled coalitions per player (pyDVL's default)
SAMPLES_PER_PLAYER = 1000
# a constraint counts as satisfied when violated by at most this, times the
# scale of the utilities (absorbs the rounding of the LP and NNLS solutions)
VIOLATION_TOLERANCE = 1e-9
# cutting-plane rounds before the egalitarian point is declared not found
_MAX_ROUNDS = 200


# -- the coalitions of a constraint set, bit-packed ------------------------------


def pack_coalitions(masks: np.ndarray) -> np.ndarray:
    """(rows, n) booleans as (rows, ceil(n / 8)) bytes, player 0 in bit 0."""
    return np.packbits(np.asarray(masks, dtype=bool), axis=1, bitorder="little")


def unpack_coalitions(packed: np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`pack_coalitions`."""
    return np.unpackbits(packed, axis=1, count=n, bitorder="little").astype(bool)


def _rows_layout(n: int) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    return {
        "coalitions": (((n + 7) // 8,), np.dtype(np.uint8)),
        "utilities": ((), np.dtype(np.float64)),
    }


# the players of each byte value: _BITS[x, k] is bit k of x
_BITS = np.unpackbits(
    np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little"
).astype(np.float64)


_POPCOUNT = _BITS.sum(axis=1).astype(np.int64)


def coalition_sums(packed: np.ndarray, v: np.ndarray) -> np.ndarray:
    """v(S) = sum of v over each packed coalition S, without unpacking.

    One 256-entry table per byte of the packing (the sum of v over the
    players of each byte value), then one lookup per byte and row: a million
    coalitions of 20 players cost three lookups each.
    """
    n_bytes = packed.shape[1]
    padded = np.zeros(8 * n_bytes)
    padded[: len(v)] = v
    tables = _BITS @ padded.reshape(n_bytes, 8).T  # (256, bytes)
    out = np.zeros(len(packed))
    for j in range(n_bytes):
        out += tables[packed[:, j], j]
    return out


def player_counts(packed: np.ndarray, n: int) -> np.ndarray:
    """How many of the packed coalitions contain each player."""
    counts = np.zeros(8 * packed.shape[1], dtype=np.int64)
    for j in range(packed.shape[1]):
        per_value = np.bincount(packed[:, j], minlength=256)
        counts[8 * j : 8 * j + 8] = per_value @ _BITS.astype(np.int64)
    return counts[:n]


# -- the solver ----------------------------------------------------------------


@dataclass
class LeastCoreSolution:
    """The egalitarian least-core point of a set of constraints.

    Attributes
    ----------
    values : np.ndarray
        The minimum-norm payoff vector among those with the minimal subsidy.
    subsidy : float
        The minimal subsidy e*: ``max_S u(S) - v(S)`` at an optimal vertex
        of the linear program, recomputed in floating point (so attained).
    max_violation : float
        ``max_S u(S) - v(S) - subsidy`` at ``values`` (<= the tolerance).
    n_constraints : int
        Distinct coalitions constrained.
    lp_rounds, qp_rounds : int
        Cutting-plane rounds of the linear and of the quadratic program.
    working_set : int
        Constraints in the quadratic program's final working set.
    """

    values: np.ndarray
    subsidy: float
    max_violation: float
    n_constraints: int
    lp_rounds: int
    qp_rounds: int
    working_set: int

    def describe(self) -> dict[str, Any]:
        return {
            "subsidy": self.subsidy,
            "max_violation": self.max_violation,
            "n_constraints": self.n_constraints,
            "lp_rounds": self.lp_rounds,
            "qp_rounds": self.qp_rounds,
            "qp_working_set": self.working_set,
        }


def solve_least_core(
    coalitions: np.ndarray, utilities: np.ndarray, total: float
) -> LeastCoreSolution:
    """The minimal subsidy and the egalitarian least-core point.

    Parameters
    ----------
    coalitions : np.ndarray of bool, shape (K, n)
        One constraint per row: the members of a proper nonempty coalition.
        A coalition listed twice keeps its largest utility (the binding one).
    utilities : np.ndarray, shape (K,)
        u of each coalition.
    total : float
        u(N): the values sum to it.

    Returns
    -------
    LeastCoreSolution

    Raises
    ------
    ValueError
        When the constraints do not bound the subsidy from below (too few
        sampled coalitions), or a coalition is empty or complete.

    Notes
    -----
    Both programs run over a small working set of constraints that grows by
    the most violated ones (cutting planes); a solution over a subset of the
    constraints that satisfies all of them is optimal for all of them, so
    each loop is exact at convergence. Violations are checked over every
    constraint with byte lookup tables on the packed coalitions.

    1. ``e* = min e`` s.t. ``v(S) + e >= u(S)``, ``sum v = u(N)`` by HiGHS
       (``linprog(method="highs")``), with a wide box around ``u(N)/n 1``
       that keeps the first, small working sets bounded (a box still active
       at the end means the constraints leave the subsidy unbounded). Its
       v is moved exactly onto ``sum v = u(N)`` and the subsidy recomputed
       as ``max_S u(S) - v(S)``, which is attained in floating point (HiGHS's
       own e* may lie below it by its tolerance).
    2. ``min ||v||^2`` s.t. ``v(S) >= u(S) - e*``, ``sum v = u(N)``: with
       ``v = u(N)/n 1 + B z`` (B an orthonormal basis of the sum-zero space)
       the equality disappears and ``||v||^2 = u(N)^2/n + ||z||^2``, a
       least-distance program ``min ||z|| s.t. G z >= h``, which Lawson &
       Hanson reduce to the NNLS ``min_{w >= 0} ||[G^T; h^T] w - e_last||``
       (``z = -r[:-1] / r[-1]`` from its residual r). The working set starts
       from the constraints with a positive dual in the LP.

    A constraint counts as satisfied when violated by at most ``1e-9``
    times the utilities' scale ``max(1, |u|)``: that slack absorbs the
    rounding of HiGHS and NNLS, and bounds ``max_violation``.
    """
    masks = np.asarray(coalitions, dtype=bool)
    b = np.asarray(utilities, dtype=np.float64)
    if masks.ndim != 2 or b.shape != (len(masks),) or len(b) == 0:
        raise ValueError(
            "coalitions must be a (K, n) boolean array with K >= 1 rows and "
            f"utilities K values; got shapes {masks.shape} and {b.shape}"
        )
    return solve_packed(pack_coalitions(masks), b, float(total), masks.shape[1])


def solve_packed(
    packed: np.ndarray, utilities: np.ndarray, total: float, n: int
) -> LeastCoreSolution:
    """:func:`solve_least_core` over bit-packed coalitions (see
    :func:`pack_coalitions`)."""
    packed, b = _distinct(packed, np.asarray(utilities, dtype=np.float64), n)
    scale = max(1.0, float(np.abs(b).max()), abs(total))
    tolerance = VIOLATION_TOLERANCE * scale
    v_lp, binding, lp_rounds = _minimal_subsidy(packed, b, total, n, tolerance)
    # the LP point, exactly on sum v = u(N); its worst excess is attained
    v_lp = v_lp + (total - v_lp.sum()) / n
    subsidy = float(np.max(b - coalition_sums(packed, v_lp)))
    rhs = b - subsidy
    values, qp_rounds, working = _egalitarian(packed, rhs, total, n, binding, tolerance)
    violation = float(np.max(rhs - coalition_sums(packed, values)))
    return LeastCoreSolution(
        values, subsidy, violation, len(b), lp_rounds, qp_rounds, working
    )


def _distinct(
    packed: np.ndarray, b: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each coalition once (in order of first appearance), with its largest
    utility (the tighter constraint); refuses the empty and the grand coalition."""
    size = _popcount(packed)
    if ((size == 0) | (size == n)).any():
        raise ValueError(
            "coalitions must be proper and nonempty (the empty set and the "
            "grand coalition are not least-core constraints)"
        )
    keys, first, inverse = np.unique(
        packed, axis=0, return_index=True, return_inverse=True
    )
    if len(keys) == len(b):
        return packed, b
    best = np.full(len(keys), -np.inf)
    np.maximum.at(best, inverse.reshape(-1), b)
    order = np.argsort(first)
    return keys[order], best[order]


def _dense(packed: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """The selected coalitions as a float (rows, n) 0/1 matrix."""
    return unpack_coalitions(packed[rows], n).astype(np.float64)


def _most_violated(
    excess: np.ndarray, limit: float, working: np.ndarray, count: int
) -> np.ndarray:
    """Up to ``count`` constraints with ``excess > limit``, worst first, that
    are not yet in the working set."""
    violated = np.flatnonzero(excess > limit)
    violated = violated[~np.isin(violated, working)]
    if len(violated) > count:
        top = np.argpartition(-excess[violated], count - 1)[:count]
        violated = violated[top]
    return violated


def _minimal_subsidy(
    packed: np.ndarray, b: np.ndarray, total: float, n: int, tolerance: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """An optimal v of the least-core LP, the constraints of its optimal basis
    (positive duals), and the cutting-plane rounds taken."""
    k = len(b)
    centre = total / n
    # a box far outside any least-core point of these utilities (checked
    # inactive at the end)
    radius = 1e6 * max(1.0, float(np.abs(b).max()), abs(total))
    bounds = [(centre - radius, centre + radius)] * n + [(None, None)]
    per_round = max(2 * n, 16)
    # seed: the constraints the equal split violates most
    equal = b - centre * _popcount(packed)
    working = np.argsort(-equal, kind="stable")[: min(k, 2 * per_round)]
    for rounds in range(1, _MAX_ROUNDS + 1):
        v, e, duals = _lp(_dense(packed, working, n), b[working], total, bounds)
        excess = b - coalition_sums(packed, v)
        new = _most_violated(excess, e + tolerance, working, per_round)
        if len(new) == 0:
            if np.any(np.abs(v - centre) > 0.999 * radius):
                raise ValueError(
                    "the constraints do not bound the least core (the subsidy "
                    f"is unbounded below with {k} distinct coalitions): sample "
                    "more coalitions (n_samples)"
                )
            return v, working[duals > 1e-12], rounds
        working = np.concatenate([working, new])
    raise RuntimeError(
        f"the least-core LP did not converge in {_MAX_ROUNDS} cutting-plane rounds"
    )


def _popcount(packed: np.ndarray) -> np.ndarray:
    """The number of players of each packed coalition."""
    sizes: np.ndarray = _POPCOUNT[packed].sum(axis=1)
    return sizes


def _lp(
    a: np.ndarray, b: np.ndarray, total: float, bounds: list[tuple[Any, Any]]
) -> tuple[np.ndarray, float, np.ndarray]:
    """min e s.t. a v + e >= b, sum v = total, within ``bounds``: v, e, duals."""
    k, n = a.shape
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    import scipy.optimize  # the client solves: workers never need it

    result = scipy.optimize.linprog(
        cost,
        A_ub=-np.hstack([a, np.ones((k, 1))]),
        b_ub=-b,
        A_eq=np.append(np.ones(n), 0.0)[None, :],
        b_eq=[total],
        bounds=bounds,
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"the least-core LP failed: {result.message}")
    duals = -np.asarray(result.ineqlin.marginals)
    return np.asarray(result.x[:n]), float(result.x[n]), duals


def _sum_zero_basis(n: int) -> np.ndarray:
    """An orthonormal basis (n, n-1) of the vectors whose entries sum to 0."""
    import scipy.linalg  # the client solves: workers never need it

    basis: np.ndarray = scipy.linalg.null_space(np.ones((1, n)))
    return basis


def _egalitarian(
    packed: np.ndarray,
    rhs: np.ndarray,
    total: float,
    n: int,
    seed_rows: np.ndarray,
    tolerance: float,
) -> tuple[np.ndarray, int, int]:
    """argmin ||v|| s.t. v(S) >= rhs_S, sum v = total, by cutting planes.

    Returns the point, the rounds taken and the final working set's size.
    """
    basis = _sum_zero_basis(n)
    v0 = np.full(n, total / n)
    working = np.unique(seed_rows).astype(np.int64)
    per_round = max(n, 8)
    for rounds in range(1, _MAX_ROUNDS + 1):
        rows = _dense(packed, working, n)
        z = _least_distance(rows @ basis, rhs[working] - rows @ v0)
        values = v0 + basis @ z
        excess = rhs - coalition_sums(packed, values)
        new = _most_violated(excess, tolerance, working, per_round)
        if len(new) == 0:
            return values, rounds, len(working)
        working = np.concatenate([working, new])
    raise RuntimeError(
        f"the egalitarian least-core point was not found in {_MAX_ROUNDS} "
        "cutting-plane rounds"
    )


def _least_distance(g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """min ||z|| s.t. g z >= h (Lawson & Hanson, ch. 23, via NNLS).

    With E = [g^T; h^T] and f = (0, .., 0, 1), the NNLS solution w >= 0 of
    min ||E w - f|| has residual r = E w - f; the program is feasible iff
    r != 0, and then z = -r[:-1] / r[-1].
    """
    m = g.shape[1]
    if len(h) == 0 or (h <= 0).all():
        return np.zeros(m)  # z = 0 satisfies every constraint
    e = np.vstack([g.T, h[None, :]])
    f = np.zeros(m + 1)
    f[-1] = 1.0
    import scipy.optimize  # the client solves: workers never need it

    w, _ = scipy.optimize.nnls(e, f, maxiter=50 * (len(h) + m + 1))
    r = e @ w - f
    if abs(r[-1]) < 1e-14:
        raise RuntimeError(
            "the egalitarian least-core program is infeasible (numerically): "
            "the subsidy from the LP is too small"
        )
    z: np.ndarray = -r[:-1] / r[-1]
    return z


def _solve_rows(rows: Rows, total: float, n: int) -> LeastCoreSolution:
    if len(rows) == 0:
        raise ValueError(
            "no least-core constraint was sampled (every sample drew the empty "
            "set or all players): raise n_samples"
        )
    return solve_packed(rows["coalitions"], rows["utilities"], total, n)


# -- the plan ------------------------------------------------------------------


class LeastCorePlan(Plan):
    """Sample ``j`` is one coalition; its (coalition, utility) row is kept.

    Exact: ``j`` ranges over 0 .. 2^n - 1 read as bitmasks (as exact Shapley
    enumerates them, so the memo's placement of coalitions on workers is
    shared); Monte Carlo: the sampler's coalitions of sample ``j``. Samples
    that are the empty set or N add no constraint and cost no utility call.
    """

    statistics = ("constraints",)

    def __init__(
        self,
        n: int,
        seed: int,
        output: str,
        sampler: CoalitionSampler | None = None,
        n_samples: int | None = None,
    ) -> None:
        self.n, self.seed = n, seed
        self.output = output
        self.sampler = sampler
        self.n_samples = n_samples
        self.u_full = float("nan")
        self.solution: LeastCoreSolution | None = None
        self.problem: str | None = None  # why the rows could not be solved
        self._solved_rows = -1

    @property
    def exact(self) -> bool:
        return self.sampler is None

    def empty_statistics(self) -> dict[str, Statistic]:
        return {"constraints": Rows.empty(_rows_layout(self.n))}

    def anchors(self) -> list[np.ndarray]:
        return [np.arange(self.n)]

    def bind_anchors(self, values: list[float]) -> None:
        (self.u_full,) = values

    def sample_limit(self) -> int | None:
        return (1 << self.n) if self.exact else self.n_samples

    def max_evaluations_per_sample(self) -> int:
        if self.sampler is None:
            return 1
        return 2 if self.sampler.antithetic else 1

    def _coalitions(self, index: int) -> list[np.ndarray]:
        """The proper nonempty coalitions of sample ``index``, as masks."""
        n = self.n
        if self.sampler is None:
            masks = [((index >> np.arange(n, dtype=np.int64)) & 1).astype(bool)]
        else:
            sampler = self.sampler
            rng = sample_rng(self.seed, index)
            mask = sampler.draw(rng, index % sampler.n_strata(n), n)
            masks = [mask, ~mask] if sampler.antithetic else [mask]
        return [m for m in masks if 0 < m.sum() < n]

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        masks: list[np.ndarray] = []
        utilities: list[float] = []
        calls = np.zeros(stop - start, dtype=np.int32)
        for row, index in enumerate(range(start, stop)):
            for mask in self._coalitions(index):
                masks.append(mask)
                utilities.append(utility.evaluate(np.flatnonzero(mask), stats))
                calls[row] += 1
        packed = (
            pack_coalitions(np.array(masks))
            if masks
            else np.empty((0, (self.n + 7) // 8), np.uint8)
        )
        rows = Rows({"coalitions": packed, "utilities": np.array(utilities, float)})
        return {"constraints": rows}, calls

    def _expected_rows(self) -> int | None:
        """The rows of a complete run, when known in advance."""
        return (1 << self.n) - 2 if self.exact else None

    def _solve(self, rows: Rows) -> Estimate:
        if len(rows) != self._solved_rows:
            self.solution, self.problem = None, None
            try:
                self.solution = _solve_rows(rows, self.u_full, self.n)
            except ValueError as exc:
                # too few constraints (an interrupted run, a small budget):
                # the result keeps its samples and says why it has no values
                self.problem = str(exc)
                logger.warning("least core: %s", exc)
            self._solved_rows = len(rows)
        counts = player_counts(rows["coalitions"], self.n)
        if self.solution is None:
            return np.full(self.n, np.nan), np.full(self.n, np.nan), counts
        # exact: no sampling error; Monte Carlo: no standard error is defined
        # (the values are not a mean), so NaN rather than a made-up number
        stderr = np.zeros(self.n) if self.exact else np.full(self.n, np.nan)
        return self.solution.values.copy(), stderr, counts

    def estimate(self, moments: dict[str, Statistic]) -> Estimate:
        """The egalitarian least-core point once every constraint is in (or
        already solved for); before, for progress reports, an equal split of
        u(N) with an infinite stderr: the programs are not solved again at
        every fetch of the state."""
        rows = moments["constraints"]
        assert isinstance(rows, Rows)
        if len(rows) in (self._expected_rows(), self._solved_rows):
            return self._solve(rows)
        return (
            np.full(self.n, self.u_full / self.n),
            np.full(self.n, np.inf),
            player_counts(rows["coalitions"], self.n),
        )

    def estimates(self, moments: dict[str, Statistic]) -> dict[str, Estimate] | None:
        """The final result: the program over every constraint merged."""
        rows = moments["constraints"]
        assert isinstance(rows, Rows)
        return {self.output: self._solve(rows)}

    def describe(self) -> dict[str, Any]:
        description: dict[str, Any] = {
            "plan": "least-core",
            "n": self.n,
            "seed": self.seed,
            "sampler": (
                {"class": "ExactSampler"}
                if self.sampler is None
                else self.sampler.describe()
            ),
            "n_samples": self.sample_limit(),
        }
        if self.problem is not None:
            description["least_core"] = {"subsidy": None, "error": self.problem}
        if self.solution is not None:
            # after the run: what the solver found (result metadata only; a
            # checkpoint's identity is taken before any solve)
            description["least_core"] = self.solution.describe()
        return description


# -- the valuation -------------------------------------------------------------


class LeastCoreValuation(Valuation):
    """Least-core values (Yan & Procaccia, 2021), egalitarian tie-break.

    The minimal subsidy ``e*`` solves ``min e`` s.t. ``v(S) + e >= u(S)``
    for every proper nonempty coalition S and ``v(N) = u(N)`` (``v(S)`` the
    sum of S's values); the values are the minimum-norm v with subsidy
    ``e*``. The utilities are evaluated on the workers (through the memo);
    the linear and quadratic programs are solved on the client with scipy
    (HiGHS, then least-distance programming by NNLS in a cutting-plane loop;
    see :func:`solve_least_core`).

    Parameters
    ----------
    utility : Utility
        The game (players are the training points, or the groups of a
        grouped :class:`~daskval.Dataset`). Values sum to u(N); u(empty) is
        not subtracted.
    sampler : ExactSampler or CoalitionSampler, optional
        ``ExactSampler()``: all 2^n - 2 proper nonempty coalitions, for
        n <= 20 (:data:`MAX_EXACT_LEAST_CORE_PLAYERS`). A coalition sampler
        (``UniformSampler()``, ``AntitheticSampler()``, ...): Monte Carlo
        over ``n_samples`` sampled coalitions. None (default): exact when
        the enumeration takes no more utility calls than the Monte Carlo
        default (n <= 13), else ``UniformSampler()``; with ``n_samples``
        given, always ``UniformSampler()``.
    n_samples : int, optional
        Monte Carlo samples (coalitions; two per sample with an antithetic
        sampler). Default ``1000 * n``. A sample that draws the empty set or
        N adds no constraint and costs no utility call.
    seed : int, optional
        Root seed of the Monte Carlo samples.

    Attributes
    ----------
    result_ : ValuationResult
        After :meth:`fit`. ``result_.metadata["plan"]["least_core"]`` holds
        ``subsidy`` (e*), ``max_violation`` (of the constrained coalitions,
        at most ``1e-9`` times the utilities' scale), ``n_constraints``
        (distinct coalitions) and the cutting-plane statistics.
    subsidy_ : float or None
        e*, after :meth:`fit`; None when the sampled constraints leave the
        subsidy unbounded (too few samples, or an interrupted run): then the
        values are NaN and ``metadata["plan"]["least_core"]["error"]`` says
        why.

    Notes
    -----
    Standard errors: zero for the exact program. For Monte Carlo they are
    NaN: the values solve a program over sampled constraints, they are not a
    mean, and no standard error is defined. A Monte Carlo solution satisfies
    the sampled constraints only; Yan & Procaccia show that
    O((n - log Delta) / delta^2) samples make it delta-approximate (violating
    the constraint of a random coalition with probability at most delta)
    with probability 1 - Delta. The scenario approach (Calafiore & Campi,
    2006) gives an explicit form: with K sampled coalitions and the n + 1
    unknowns (v, e), ``P(delta > eps) <= BinomialCDF(n; K, eps)``, about
    ``delta <= 2 (n + 1 + log(1 / Delta)) / K`` (the tests check this).
    ``counts`` are the constraints each player belongs to.

    Cost: the constraint rows (``ceil(n / 8) + 8`` bytes per sampled
    coalition) travel to the client with each progress fetch, and the
    client keeps them (plus a few floats per row while solving). The exact
    program at n = 20 (about a million constraints) solves in about a
    second and 0.3 GB; each cutting-plane LP is dense in its working set,
    so Monte Carlo at n = 300 with 300,000 coalitions takes ~25 s of CPU.
    """

    method_name = "least-core"

    def __init__(
        self,
        utility: Utility,
        *,
        sampler: ExactSampler | CoalitionSampler | None = None,
        n_samples: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(utility, stop=None, seed=seed)
        n = utility.n
        if n < 2:
            raise ValueError(
                f"the least core needs at least 2 players, got n={n}: a single "
                "player's value is u(N)"
            )
        if n_samples is not None:
            n_samples = check_positive_int(n_samples, "n_samples")
        if sampler is not None and not isinstance(
            sampler, (ExactSampler, CoalitionSampler)
        ):
            raise TypeError(
                "sampler must be ExactSampler() or a coalition sampler such as "
                f"UniformSampler() or AntitheticSampler(), got {type(sampler).__name__}"
            )
        if sampler is None:
            exact = n_samples is None and (1 << n) - 2 <= SAMPLES_PER_PLAYER * n
            sampler = ExactSampler() if exact else UniformSampler()
        if isinstance(sampler, ExactSampler):
            if n_samples is not None:
                raise ValueError(
                    "n_samples must be None with sampler=ExactSampler(): the "
                    "exact least core uses all 2^n - 2 coalitions"
                )
            if n > MAX_EXACT_LEAST_CORE_PLAYERS:
                raise ValueError(
                    f"sampler=ExactSampler() enumerates 2^n - 2 coalitions; n={n} "
                    f"players is above the limit of {MAX_EXACT_LEAST_CORE_PLAYERS}. "
                    "Use Monte Carlo: sampler=UniformSampler(), n_samples=..."
                )
        else:
            sampler.check(n)
            if n_samples is None:
                n_samples = SAMPLES_PER_PLAYER * n
        self.sampler: ExactSampler | CoalitionSampler = sampler
        self.n_samples = n_samples
        self.subsidy_: float | None = None

    @property
    def exact(self) -> bool:
        return isinstance(self.sampler, ExactSampler)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "sampler": self.sampler.describe(),
            "n_samples": self.n_samples,
        }

    def make_plan(self) -> Plan:
        if isinstance(self.sampler, ExactSampler):
            # an enumeration draws nothing at random
            return LeastCorePlan(self.utility.n, 0, self.method_name)
        return LeastCorePlan(
            self.utility.n,
            self.seed,
            self.method_name,
            self.sampler,
            self.n_samples,
        )

    def fit(self, client: Any = None, **kwargs: Any) -> LeastCoreValuation:
        """Run the valuation (see :meth:`Valuation.fit`); also sets ``subsidy_``."""
        super().fit(client, **kwargs)
        assert self.result_ is not None
        found = self.result_.metadata.get("plan", {}).get("least_core", {})
        subsidy = found.get("subsidy")
        self.subsidy_ = None if subsidy is None else float(subsidy)
        return self
