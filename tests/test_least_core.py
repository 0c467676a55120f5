"""Least core: known values of analytic games (exact, to 1e-8), the solver
against an independent brute force, Monte Carlo convergence, the Rows
statistic and its checkpoints, runs on real clusters, and bad input."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from sklearn.linear_model import LogisticRegression

import daskval as dv
from daskval.accumulate import Partial, Rows
from daskval.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_structure,
    load_checkpoint,
    save_checkpoint,
)
from daskval.games import AirportGame, Game, GlovesGame, MinerGame
from daskval.methods.core import (
    MAX_EXACT_LEAST_CORE_PLAYERS,
    LeastCorePlan,
    LeastCoreValuation,
    coalition_sums,
    pack_coalitions,
    player_counts,
    solve_least_core,
    unpack_coalitions,
)
from daskval.plan import evaluate_range
from daskval.samplers import AntitheticSampler, ExactSampler, UniformSampler
from daskval.utility import EvalStats

EXACT = 1e-8


def all_coalitions(n: int) -> np.ndarray:
    """Every proper nonempty coalition of n players, as boolean rows."""
    index = np.arange(1, (1 << n) - 1)
    return ((index[:, None] >> np.arange(n)) & 1).astype(bool)


def table(game: Game) -> tuple[np.ndarray, np.ndarray, float]:
    masks = all_coalitions(game.n)
    u = np.array([game.value(np.flatnonzero(m)) for m in masks])
    return masks, u, game.value(np.arange(game.n))


# -- known values --------------------------------------------------------------

KNOWN: list[tuple[Game, np.ndarray, float]] = [
    # the miner game: even n -> 0.5 each, no subsidy
    (MinerGame(4), np.full(4, 0.5), 0.0),
    (MinerGame(6), np.full(6, 0.5), 0.0),
    (MinerGame(10), np.full(10, 0.5), 0.0),
    # odd n -> (n-1)/(2n) each, subsidy (n-1)/(2n)
    (MinerGame(3), np.full(3, 1 / 3), 1 / 3),
    (MinerGame(5), np.full(5, 2 / 5), 2 / 5),
    (MinerGame(9), np.full(9, 4 / 9), 4 / 9),
    # two left, two right gloves: the least core is the segment
    # (a, a, 1-a, 1-a), a in [0, 1], subsidy 0; the egalitarian point a = 1/2
    (GlovesGame(2, 2), np.full(4, 0.5), 0.0),
    (GlovesGame(3, 3), np.full(6, 0.5), 0.0),
    # one left, one right: v1 + e >= 0, v2 + e >= 0, v1 + v2 = 1
    (GlovesGame(1, 1), np.full(2, 0.5), -0.5),
    # scarce right gloves take everything
    (GlovesGame(3, 2), np.array([0, 0, 0, 1, 1.0]), 0.0),
]


@pytest.mark.parametrize(
    ("game", "values", "subsidy"), KNOWN, ids=[repr(g) for g, _, _ in KNOWN]
)
def test_solver_gives_known_least_core(
    game: Game, values: np.ndarray, subsidy: float
) -> None:
    masks, u, total = table(game)
    solution = solve_least_core(masks, u, total)
    np.testing.assert_allclose(solution.values, values, rtol=0, atol=EXACT)
    assert solution.subsidy == pytest.approx(subsidy, abs=EXACT)
    assert solution.max_violation <= 1e-9
    assert solution.n_constraints == len(masks)


def test_gloves_least_core_is_not_unique() -> None:
    """Every point (a, a, 1-a, 1-a) is in the least core of gloves(2, 2): the
    tie-break, not the LP, picks a = 1/2."""
    masks, u, total = table(GlovesGame(2, 2))
    for a in (0.0, 0.25, 1.0):
        v = np.array([a, a, 1 - a, 1 - a])
        assert v.sum() == total
        assert np.max(u - masks @ v) <= 1e-12  # subsidy 0 is attained


def _brute_force(
    masks: np.ndarray, u: np.ndarray, total: float
) -> tuple[float, np.ndarray]:
    """An independent least core: the dense LP over every constraint at once,
    then SLSQP on min ||v||^2 (no cutting planes, no NNLS)."""
    k, n = masks.shape
    lp = scipy.optimize.linprog(
        np.append(np.zeros(n), 1.0),
        A_ub=-np.hstack([masks, np.ones((k, 1))]),
        b_ub=-u,
        A_eq=np.append(np.ones(n), 0.0)[None, :],
        b_eq=[total],
        bounds=[(None, None)] * (n + 1),
        method="highs-ipm",
    )
    subsidy = float(lp.x[-1])
    qp = scipy.optimize.minimize(
        lambda v: v @ v,
        lp.x[:n],
        jac=lambda v: 2 * v,
        constraints=[
            {
                "type": "ineq",
                "fun": lambda v: masks @ v - u + subsidy + 1e-10,
                "jac": lambda v: masks.astype(float),
            },
            {"type": "eq", "fun": lambda v: v.sum() - total},
        ],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert qp.success, qp.message
    return subsidy, qp.x


@pytest.mark.parametrize("seed", range(6))
def test_solver_matches_brute_force_on_random_games(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7))
    masks = all_coalitions(n)
    # superadditive-ish random games: the least core is a polytope
    weights = rng.random(n)
    u = np.sqrt(masks @ weights) + 0.3 * rng.random(len(masks))
    total = float(np.sqrt(weights.sum())) + 0.3 * rng.random()
    solution = solve_least_core(masks, u, total)
    subsidy, values = _brute_force(masks, u, total)
    assert solution.subsidy == pytest.approx(subsidy, abs=1e-7)
    np.testing.assert_allclose(solution.values, values, atol=1e-6)
    # and the egalitarian point is in the least core
    assert solution.values.sum() == pytest.approx(total, abs=1e-12)
    assert np.max(u - masks @ solution.values) <= solution.subsidy + 1e-9


def test_solver_kkt_conditions_hold() -> None:
    """Optimality of the egalitarian point without another solver: v is a
    non-negative combination of the active constraints plus a multiple of 1
    (the KKT conditions of min ||v||^2 over the least core)."""
    masks, u, total = table(AirportGame([1.0, 2.0, 2.0, 3.5, 5.0, 8.0]))
    solution = solve_least_core(masks, u, total)
    slack = masks @ solution.values - (u - solution.subsidy)
    active = masks[slack < 1e-9].astype(float)
    # 2 v = sum_S lambda_S a_S + mu 1, lambda >= 0, mu free (mu+ - mu-)
    ones = np.ones((1, masks.shape[1]))
    generators = np.vstack([active, ones, -ones])
    _, residual = scipy.optimize.nnls(generators.T, 2 * solution.values)
    assert residual < 1e-9


def test_duplicated_constraints_keep_the_largest_utility() -> None:
    masks, u, total = table(MinerGame(5))
    doubled = np.vstack([masks, masks])
    lowered = np.concatenate([u, u - 1.0])
    solution = solve_least_core(doubled, lowered, total)
    assert solution.n_constraints == len(masks)
    np.testing.assert_allclose(solution.values, 0.4, atol=EXACT)


def test_packing_and_byte_table_sums() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 23):
        masks = rng.random((50, n)) < 0.5
        packed = pack_coalitions(masks)
        assert packed.shape == (50, (n + 7) // 8)
        np.testing.assert_array_equal(unpack_coalitions(packed, n), masks)
        v = rng.normal(size=n)
        np.testing.assert_allclose(coalition_sums(packed, v), masks @ v, atol=1e-12)
        np.testing.assert_array_equal(player_counts(packed, n), masks.sum(axis=0))


def test_unbounded_sampled_constraints_are_refused() -> None:
    # only {0}: v_0 can grow without bound, the subsidy has no minimum
    with pytest.raises(ValueError, match="do not bound the least core"):
        solve_least_core(np.array([[True, False, False]]), np.array([1.0]), 1.0)


def test_empty_or_grand_coalition_is_refused() -> None:
    with pytest.raises(ValueError, match="proper and nonempty"):
        solve_least_core(np.array([[True, True]]), np.array([1.0]), 1.0)


# -- the plan, without a cluster -----------------------------------------------


def _plan_rows(plan: LeastCorePlan, game: Game, stop: int) -> dict[str, Any]:
    plan.bind_anchors([game.value(np.arange(game.n))])
    moments = evaluate_range(plan, game, 0, stop).moments
    return moments


def test_monte_carlo_converges_to_the_exact_least_core() -> None:
    """Samples are nested (the first K of one seed), so the sampled LP's
    feasible set shrinks as K grows: its subsidy never decreases and never
    exceeds the exact one; once every coalition is sampled, it is exact."""
    game = MinerGame(7)
    masks, u, total = table(game)
    exact = solve_least_core(masks, u, total)
    plan = LeastCorePlan(game.n, 3, "least-core", UniformSampler(), 3000)
    moments = _plan_rows(plan, game, 3000)
    rows = moments["constraints"]
    assert isinstance(rows, Rows)
    subsidies, violations = [], []
    for k in (50, 100, 200, 400, 3000):
        cut = Rows({name: a[:k] for name, a in rows.arrays.items()})
        values, stderr, _ = plan.estimates({"constraints": cut})["least-core"]  # type: ignore[index]
        assert np.isnan(stderr).all()  # no stderr for a program's solution
        assert plan.solution is not None
        subsidies.append(plan.solution.subsidy)
        # how far the sampled solution is from the least core of all coalitions
        violations.append(max(0.0, float(np.max(u - masks @ values)) - exact.subsidy))
    assert np.all(np.diff(subsidies) >= -1e-12)
    assert subsidies[-1] <= exact.subsidy + 1e-12
    # 3000 uniform samples cover all 126 coalitions (each missed w.p. ~1e-10)
    assert len(np.unique(rows["coalitions"], axis=0)) == len(masks)
    np.testing.assert_allclose(values, exact.values, atol=EXACT)
    assert subsidies[-1] == pytest.approx(exact.subsidy, abs=EXACT)
    assert violations[-1] <= 1e-9
    assert violations[0] > violations[-1]


@pytest.mark.parametrize(
    "game",
    [AirportGame([1, 2, 3, 3, 4, 6, 7, 7, 9, 10, 12.0]), MinerGame(11)],
    ids=repr,
)
def test_monte_carlo_solution_violates_few_constraints(game: Game) -> None:
    """The scenario approach (Calafiore & Campi, 2006) bounds how many
    constraints a program over K i.i.d. sampled constraints violates: with
    d = n + 1 decision variables (v, e) and a unique solution (the
    egalitarian tie-break), the probability V that a random coalition's
    constraint is violated satisfies P(V > eps) <= Binom(K, eps).cdf(d - 1).
    The tolerance is the eps at which that is 1e-3; V is computed exactly
    over all 2^n - 2 coalitions (uniform sampling draws them equally)."""
    n, k = game.n, 1000
    masks, u, _ = table(game)
    plan = LeastCorePlan(n, 1, "least-core", UniformSampler(), k)
    moments = _plan_rows(plan, game, k)
    values, _, _ = plan.estimates(moments)["least-core"]  # type: ignore[index]
    assert plan.solution is not None
    rows = len(moments["constraints"])  # proper nonempty draws only
    violated = np.mean(u - masks @ values > plan.solution.subsidy + 1e-9)
    eps = scipy.optimize.brentq(
        lambda e: scipy.stats.binom.cdf(n, rows, e) - 1e-3, 1e-12, 1 - 1e-12
    )
    assert violated <= eps


def test_samples_of_the_empty_or_grand_coalition_add_nothing() -> None:
    game = MinerGame(3)
    plan = LeastCorePlan(3, 0, "least-core", UniformSampler(), 200)
    partial = evaluate_range(plan, game, 0, 200)
    rows = partial.moments["constraints"]
    assert isinstance(rows, Rows)
    sizes = unpack_coalitions(rows["coalitions"], 3).sum(axis=1)
    assert ((sizes > 0) & (sizes < 3)).all()
    assert 0 < len(rows) < 200  # 1/4 of uniform draws are empty or complete
    assert partial.eval_stats.n_evaluations == len(rows)
    assert partial.sample_evaluations is not None
    assert partial.sample_evaluations.sum() == len(rows)


def test_rows_merge_in_order_and_associatively() -> None:
    game = MinerGame(6)
    plan = LeastCorePlan(6, 5, "least-core", AntitheticSampler(), 90)
    parts = [evaluate_range(plan, game, a, b) for a, b in ((0, 30), (30, 31), (31, 90))]
    left = parts[0].merge(parts[1]).merge(parts[2])
    right = parts[0].merge(parts[1].merge(parts[2]))
    whole = evaluate_range(plan, game, 0, 90)
    for state in (left, right):
        for name in ("coalitions", "utilities"):
            np.testing.assert_array_equal(
                state.moments["constraints"].arrays[name],  # type: ignore[union-attr]
                whole.moments["constraints"].arrays[name],  # type: ignore[union-attr]
            )
    # antithetic: S and its complement, both proper (or neither: a sample that
    # drew the empty set adds no row)
    rows = whole.moments["constraints"]
    assert isinstance(rows, Rows)
    masks = unpack_coalitions(rows["coalitions"], 6)
    assert len(masks) % 2 == 0 and 170 < len(masks) <= 180
    np.testing.assert_array_equal(masks[0::2], ~masks[1::2])


def test_rows_checkpoint_round_trip(tmp_path: Any) -> None:
    game = MinerGame(9)
    plan = LeastCorePlan(9, 0, "least-core")
    state = evaluate_range(plan, game, 0, 300)
    checkpoint = Checkpoint(
        identity={"method": {"method": "least-core"}},
        state=Partial(0, 300, state.moments, state.eval_stats),
        anchors=np.array([4.0]),
    )
    path = save_checkpoint(tmp_path / "lc.npz", checkpoint)
    loaded = load_checkpoint(path)
    rows = loaded.state.moments["constraints"]
    assert isinstance(rows, Rows)
    for name in ("coalitions", "utilities"):
        original = state.moments["constraints"].arrays[name]  # type: ignore[union-attr]
        assert rows[name].dtype == original.dtype
        np.testing.assert_array_equal(rows[name], original)
    check_structure(loaded, plan)
    # a plan of another n has rows of another width
    with pytest.raises(CheckpointError, match="shapes"):
        check_structure(loaded, LeastCorePlan(17, 0, "least-core"))


# -- on real clusters ----------------------------------------------------------


def test_exact_least_core_on_a_cluster(client: Any) -> None:
    game = MinerGame(7)
    valuation = LeastCoreValuation(game, sampler=ExactSampler()).fit(client)
    result = valuation.result_
    assert result is not None
    np.testing.assert_allclose(result.values, 3 / 7, atol=EXACT)
    assert valuation.subsidy_ == pytest.approx(3 / 7, abs=EXACT)
    found = result.metadata["plan"]["least_core"]
    assert found["subsidy"] == valuation.subsidy_
    assert found["n_constraints"] == 2**7 - 2
    np.testing.assert_array_equal(result.stderr, 0.0)
    np.testing.assert_array_equal(result.counts, 2**6 - 1)
    assert result.n_evaluations == 2**7 - 2 + 1  # every constraint, and u(N)
    assert result.n_samples == 2**7


def test_gloves_egalitarian_point_on_a_cluster(client: Any) -> None:
    valuation = LeastCoreValuation(GlovesGame(2, 2)).fit(client)
    assert valuation.result_ is not None
    np.testing.assert_allclose(valuation.result_.values, 0.5, atol=EXACT)
    assert valuation.subsidy_ == pytest.approx(0.0, abs=EXACT)


def test_monte_carlo_is_deterministic_across_workers(client: Any, client1: Any) -> None:
    game = AirportGame([1.0, 2.0, 2.0, 3.5, 5.0, 8.0, 8.0, 9.0, 12.0])
    runs = [
        LeastCoreValuation(game, n_samples=400, seed=7).fit(c, samples_per_task=s)
        for c, s in ((client, 13), (client1, None))
    ]
    first, second = (r.result_ for r in runs)
    assert first is not None and second is not None
    np.testing.assert_array_equal(first.values, second.values)
    assert runs[0].subsidy_ == runs[1].subsidy_
    assert first.n_samples == 400
    assert np.isnan(first.stderr).all()
    # the sampled program's subsidy is at most the exact one
    masks, u, total = table(game)
    assert runs[0].subsidy_ is not None
    assert runs[0].subsidy_ <= solve_least_core(masks, u, total).subsidy + 1e-12


def test_too_few_constraints_give_nan_values_and_say_why(client: Any) -> None:
    valuation = LeastCoreValuation(MinerGame(6), n_samples=3, seed=0).fit(client)
    result = valuation.result_
    assert result is not None and result.status == "completed"
    assert np.isnan(result.values).all() and valuation.subsidy_ is None
    assert (
        "do not bound the least core"
        in (result.metadata["plan"]["least_core"]["error"])
    )
    assert result.n_samples == 3


def test_an_interrupted_run_resumes_to_the_uninterrupted_values(
    client: Any, tmp_path: Any
) -> None:
    """The Rows statistic goes through the engine's checkpoints: interrupt a
    Monte Carlo run, resume it, and get the uninterrupted run's values."""
    path = tmp_path / "least-core.npz"

    def make() -> LeastCoreValuation:
        return LeastCoreValuation(MinerGame(6), n_samples=3000, seed=2)

    handle = make().submit(
        client,
        checkpoint=path,
        checkpoint_interval=0.05,
        samples_per_task=3,
        memo=False,
    )
    while handle.progress["n_samples"] == 0 and not handle.done():
        time.sleep(0.01)
    handle.cancel(status="interrupted")
    partial = handle.result()
    saved = load_checkpoint(path)
    assert saved.n_samples == partial.n_samples
    resumed = make().fit(client, resume=path, samples_per_task=7)
    reference = make().fit(client)
    assert resumed.result_ is not None and reference.result_ is not None
    np.testing.assert_array_equal(resumed.result_.values, reference.result_.values)
    assert resumed.subsidy_ == reference.subsidy_
    assert resumed.result_.n_evaluations == reference.result_.n_evaluations
    assert 0 < saved.n_samples < 3000  # it was interrupted mid-run


def test_groups_are_the_players(client: Any) -> None:
    """With a grouped dataset the players are the groups: 2^4 - 2 constraints
    over 4 groups, named by their labels, equal to solving the table of the
    grouped utility directly."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(int)
    data = dv.Dataset(
        x[:24], y[:24], x[24:], y[24:], groups=np.repeat(["a", "b", "c", "d"], 6)
    )
    utility = dv.ModelUtility(LogisticRegression(), data, scoring="accuracy")
    valuation = LeastCoreValuation(utility).fit(client)
    result = valuation.result_
    assert result is not None and utility.n == 4
    assert list(result.names) == ["a", "b", "c", "d"]
    masks = all_coalitions(4)
    stats = EvalStats()
    u = np.array([utility.evaluate(np.flatnonzero(m), stats) for m in masks])
    expected = solve_least_core(masks, u, utility.evaluate(np.arange(4), stats))
    np.testing.assert_allclose(result.values, expected.values, atol=EXACT)
    assert valuation.subsidy_ == pytest.approx(expected.subsidy, abs=EXACT)


# -- defaults and bad input ----------------------------------------------------


def _fn(players: np.ndarray) -> float:
    return float(len(players))


def test_default_is_exact_while_it_is_cheaper() -> None:
    small = LeastCoreValuation(dv.FunctionUtility(_fn, n=13))
    assert isinstance(small.sampler, ExactSampler) and small.n_samples is None
    large = LeastCoreValuation(dv.FunctionUtility(_fn, n=14), seed=0)
    assert isinstance(large.sampler, UniformSampler)
    assert large.n_samples == 14_000
    given = LeastCoreValuation(dv.FunctionUtility(_fn, n=5), n_samples=50)
    assert isinstance(given.sampler, UniformSampler) and given.n_samples == 50


BAD: list[tuple[str, Callable[[], Any], type[Exception], tuple[str, ...]]] = [
    (
        "one player",
        lambda: LeastCoreValuation(dv.FunctionUtility(_fn, n=1)),
        ValueError,
        ("at least 2 players", "n=1"),
    ),
    (
        "exact above the limit",
        lambda: LeastCoreValuation(
            dv.FunctionUtility(_fn, n=MAX_EXACT_LEAST_CORE_PLAYERS + 1),
            sampler=ExactSampler(),
        ),
        ValueError,
        ("ExactSampler", "n=21", "limit of 20"),
    ),
    (
        "exact with n_samples",
        lambda: LeastCoreValuation(
            dv.FunctionUtility(_fn, n=4), sampler=ExactSampler(), n_samples=10
        ),
        ValueError,
        ("n_samples", "ExactSampler"),
    ),
    (
        "permutation sampler",
        lambda: LeastCoreValuation(
            dv.FunctionUtility(_fn, n=4),
            sampler=dv.PermutationSampler(),  # type: ignore[arg-type]
        ),
        TypeError,
        ("sampler", "PermutationSampler"),
    ),
    (
        "n_samples zero",
        lambda: LeastCoreValuation(dv.FunctionUtility(_fn, n=4), n_samples=0),
        ValueError,
        ("n_samples",),
    ),
    (
        "n_samples float",
        lambda: LeastCoreValuation(dv.FunctionUtility(_fn, n=4), n_samples=2.5),  # type: ignore[arg-type]
        ValueError,
        ("n_samples",),
    ),
    (
        "not a utility",
        lambda: LeastCoreValuation(_fn),  # type: ignore[arg-type]
        TypeError,
        ("utility",),
    ),
    (
        "negative seed",
        lambda: LeastCoreValuation(dv.FunctionUtility(_fn, n=4), seed=-1),
        ValueError,
        ("seed",),
    ),
]


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_input(
    make: Callable[[], Any], error: type[Exception], words: tuple[str, ...]
) -> None:
    with pytest.raises(error) as caught:
        make()
    for word in words:
        assert word in str(caught.value)
