"""Group-testing Shapley: the sampling law, the sample-size bound against
hand-computed values, the closed form against the LP, accuracy against exact
Shapley within the reported stderr (and stderr calibration over seeds),
efficiency, determinism across 1 and 2 workers, groups, bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import daskval as dv
from daskval.accumulate import Moments
from daskval.games import AirportGame, Game, GlovesGame, SymmetricVotingGame
from daskval.methods.group_testing import (
    GroupTestingPlan,
    GroupTestingShapleyValuation,
    group_testing_sample_size,
    solve_group_testing_lp,
)
from daskval.plan import evaluate_range
from daskval.utility import EvalStats

# a player is off by more than this many reported stderrs with probability
# ~6e-5 (normal tails), so ~1e-3 for all players of these games and seeds
Z_MAX = 4.0


def _run_local(
    game: Game, n_samples: int, seed: int, solver: str = "closed-form"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, GroupTestingPlan]:
    """Values, stderr, counts and the plan, computed in this process."""
    plan = GroupTestingPlan(game.n, seed, n_samples, 0.1, solver)
    plan.bind_anchors(
        [game.value(np.empty(0, dtype=np.intp)), game.value(np.arange(game.n))]
    )
    values, stderr, counts = plan.estimate(
        evaluate_range(plan, game, 0, n_samples).moments
    )
    return values, stderr, counts, plan


# -- the sample-size bound ---------------------------------------------------------


def _h(u: float) -> float:
    return (1 + u) * math.log(1 + u) - u


def test_sample_size_matches_hand_computed_values() -> None:
    # n = 3: q(1) = q(2) = 1/2, Z = 2 (1 + 1/2) = 3, and a size-1 or size-2
    # coalition holds both or neither of two players with probability 1/3
    expected = math.log(6 / 0.05) / (
        (2 / 3) * _h(1.0 / (2 * 3 * math.sqrt(3) * (2 / 3)))
    )
    assert group_testing_sample_size(3, 1.0, 0.05) == math.ceil(expected) == 722
    # n = 4: weights 4/3, 1, 4/3 -> q = (4, 3, 4) / 11, Z = 11/3;
    # both-or-neither 1/2, 1/3, 1/2 -> q_tot = 2/11 + 1/11 + 2/11 = 5/11
    q_tot = 4 / 11 * 1 / 2 + 3 / 11 * 1 / 3 + 4 / 11 * 1 / 2
    assert q_tot == pytest.approx(5 / 11)
    z = 11 / 3
    expected = math.log(12 / 0.1) / ((1 - q_tot) * _h(0.5 / (2 * z * 2 * (1 - q_tot))))
    assert group_testing_sample_size(4, 0.5, 0.1) == math.ceil(expected)
    # n = 2: one size, never both or neither (q_tot = 0), Z = 2
    expected = math.log(2 / 0.05) / _h(1.0 / (2 * 2 * math.sqrt(2)))
    assert group_testing_sample_size(2, 1.0, 0.05) == math.ceil(expected)


def test_sample_size_grows_as_the_guarantee_tightens() -> None:
    sizes = [group_testing_sample_size(10, eps, 0.05) for eps in (1.0, 0.5, 0.1)]
    assert sizes == sorted(sizes)
    assert group_testing_sample_size(10, 0.1, 0.01) > sizes[-1]
    default = GroupTestingShapleyValuation(dv.FunctionUtility(_fn, n=10), seed=0)
    assert default.n_samples == group_testing_sample_size(10, 0.1, 0.05)


# -- the sampling law ----------------------------------------------------------


def test_coalition_sizes_follow_q() -> None:
    n, samples = 6, 6000
    plan = GroupTestingPlan(n, 11, samples, 0.1, "closed-form")
    sizes = np.array([plan.coalition(j).sum() for j in range(samples)])
    k = np.arange(1, n)
    q = (1 / k + 1 / (n - k)) / (2 * sum(1 / k))
    counts = np.bincount(sizes, minlength=n + 1)
    assert counts[0] == counts[n] == 0
    # each size's count within 4 binomial standard deviations
    sd = np.sqrt(samples * q * (1 - q))
    assert np.all(np.abs(counts[1:n] - samples * q) <= 4 * sd)


# -- estimates -----------------------------------------------------------------

GAMES: list[Game] = [
    AirportGame([1.0, 2.0, 2.0, 3.5, 5.0, 8.0]),
    GlovesGame(3, 4),
    SymmetricVotingGame(6),
]


@pytest.mark.parametrize("game", GAMES, ids=repr)
def test_within_reported_stderr_of_exact_shapley(game: Game) -> None:
    values, stderr, counts, plan = _run_local(game, 20_000, seed=1)
    exact = game.shapley_values()
    assert np.all(np.abs(values - exact) <= Z_MAX * stderr)
    assert np.all(stderr < 0.1)  # the comparison has teeth
    np.testing.assert_array_equal(counts, 20_000)
    # efficiency: sum s = u(N) - u(empty), to rounding
    total = game.value(np.arange(game.n)) - game.value(np.empty(0, dtype=np.intp))
    assert values.sum() == pytest.approx(total, abs=1e-10)
    assert plan.check is not None and plan.check["feasible"]
    assert plan.check["max_pair_violation"] <= 1e-12


def test_efficiency_uses_the_empty_coalition() -> None:
    """A constant added to u changes nothing: u(empty) is the reference."""
    game = AirportGame([1.0, 2.0, 4.0, 4.0, 7.0])
    shifted = dv.FunctionUtility(_ShiftedAirport(game, 10.0), n=game.n)
    values, _, _, _ = _run_local(game, 3000, seed=4)
    plan = GroupTestingPlan(game.n, 4, 3000, 0.1, "closed-form")
    stats = EvalStats()
    plan.bind_anchors(
        [
            shifted.evaluate(np.empty(0, dtype=np.intp), stats),
            shifted.evaluate(np.arange(game.n), stats),
        ]
    )
    moved, _, _ = plan.estimate(evaluate_range(plan, shifted, 0, 3000).moments)
    np.testing.assert_allclose(moved, values, atol=1e-9)
    assert moved.sum() == pytest.approx(7.0, abs=1e-10)  # u(N) - u(empty) = max cost


class _ShiftedAirport:
    def __init__(self, game: Game, shift: float) -> None:
        self.game, self.shift = game, shift

    def __call__(self, players: np.ndarray) -> float:
        return self.game.value(players) + self.shift


def test_stderr_is_calibrated_over_seeds() -> None:
    """Mean reported stderr / empirical SD over 120 seeds within [0.8, 1.25]."""
    game = AirportGame([1.0, 2.0, 2.0, 3.5, 5.0])
    runs = [_run_local(game, 400, seed) for seed in range(120)]
    values = np.array([r[0] for r in runs])
    stderr = np.array([r[1] for r in runs])
    ratio = stderr.mean(axis=0) / values.std(axis=0, ddof=1)
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio


def test_lp_finds_the_closed_form() -> None:
    game = GlovesGame(2, 3)
    closed, _, _, _ = _run_local(game, 2000, seed=3)
    lp, _, _, lp_plan = _run_local(game, 2000, seed=3, solver="lp")
    np.testing.assert_allclose(lp, closed, atol=1e-9)
    assert lp_plan.check is not None and lp_plan.check["feasible"]
    # directly, on arbitrary means: every pairwise difference is matched
    rng = np.random.default_rng(0)
    means = rng.normal(size=9)
    values, spread = solve_group_testing_lp(means, 2.5)
    assert values.sum() == pytest.approx(2.5, abs=1e-9)
    assert spread <= 1e-9
    np.testing.assert_allclose(values, means + (2.5 - means.sum()) / 9, atol=1e-9)


def test_moments_of_y_sum_to_zero_per_sample() -> None:
    """sum_i y_ti = Z u (k - k) = 0: the efficiency is exact, not estimated."""
    game = GlovesGame(2, 2)
    plan = GroupTestingPlan(game.n, 0, 50, 0.1, "closed-form")
    plan.bind_anchors([0.0, 2.0])
    m = evaluate_range(plan, game, 0, 50).moments["differences"]
    assert isinstance(m, Moments)
    assert m.total.sum() == pytest.approx(0.0, abs=1e-10)


# -- on real clusters ----------------------------------------------------------


def test_matches_exact_shapley_on_a_cluster(client: Any) -> None:
    game = AirportGame([1.0, 3.0, 3.0, 4.0, 6.0, 9.0])
    exact = dv.ShapleyValuation(game, sampler=dv.ExactSampler()).fit(client).result_
    valuation = GroupTestingShapleyValuation(game, n_samples=6000, seed=5).fit(client)
    result = valuation.result_
    assert exact is not None and result is not None
    assert np.all(np.abs(result.values - exact.values) <= Z_MAX * result.stderr)
    assert result.values.sum() == pytest.approx(9.0, abs=1e-10)
    assert result.n_samples == 6000
    assert result.n_evaluations == 6000 + 2  # and u(empty), u(N)
    check = result.metadata["plan"]["group_testing"]
    assert check["feasible"] and check["max_pair_violation"] <= 1e-12
    assert check["pair_tolerance"] == pytest.approx(0.1 / (2 * math.sqrt(6)))
    # 6000 samples are far below what the (0.1, 0.05) guarantee needs
    assert check["bound_samples"] == group_testing_sample_size(6, 0.1, 0.05)
    assert not check["bound_met"]


def test_deterministic_across_one_and_two_workers(client: Any, client1: Any) -> None:
    game = GlovesGame(3, 4)
    results = [
        GroupTestingShapleyValuation(game, n_samples=1500, seed=9)
        .fit(c, samples_per_task=s)
        .result_
        for c, s in ((client, 37), (client1, None))
    ]
    first, second = results
    assert first is not None and second is not None
    np.testing.assert_allclose(first.values, second.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(first.stderr, second.stderr, rtol=0, atol=1e-12)
    # and equal to the same samples computed in this process
    local, _, _, _ = _run_local(game, 1500, seed=9)
    np.testing.assert_allclose(first.values, local, rtol=0, atol=1e-12)


def test_groups_are_the_players(client: Any) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(int)
    data = dv.Dataset(
        x[:24], y[:24], x[24:], y[24:], groups=np.repeat(["p", "q", "r"], 8)
    )
    from sklearn.linear_model import LogisticRegression

    utility = dv.ModelUtility(LogisticRegression(), data, scoring="accuracy")
    result = (
        GroupTestingShapleyValuation(utility, n_samples=300, seed=2).fit(client).result_
    )
    assert result is not None
    assert list(result.names) == ["p", "q", "r"]
    stats = EvalStats()
    total = utility.evaluate(np.arange(3), stats) - utility.evaluate(
        np.empty(0, dtype=np.intp), stats
    )
    assert result.values.sum() == pytest.approx(total, abs=1e-10)
    np.testing.assert_array_equal(result.counts, 300)


# -- bad input -----------------------------------------------------------------


def _fn(players: np.ndarray) -> float:
    return float(len(players))


def _gt(n: int = 4, **kwargs: Any) -> GroupTestingShapleyValuation:
    return GroupTestingShapleyValuation(dv.FunctionUtility(_fn, n=n), **kwargs)


BAD: list[tuple[str, Callable[[], Any], type[Exception], tuple[str, ...]]] = [
    ("one player", lambda: _gt(1), ValueError, ("at least 2 players", "n=1")),
    ("epsilon zero", lambda: _gt(epsilon=0.0), ValueError, ("epsilon",)),
    ("epsilon string", lambda: _gt(epsilon="0.1"), TypeError, ("epsilon",)),
    ("delta one", lambda: _gt(delta=1.0), ValueError, ("delta", "(0, 1)")),
    ("delta negative", lambda: _gt(delta=-0.1), ValueError, ("delta",)),
    ("n_samples zero", lambda: _gt(n_samples=0), ValueError, ("n_samples",)),
    ("n_samples float", lambda: _gt(n_samples=1.5), ValueError, ("n_samples",)),
    ("solver", lambda: _gt(solver="cvxpy"), ValueError, ("solver", "cvxpy")),
    ("seed", lambda: _gt(seed=-3), ValueError, ("seed",)),
    (
        "size n=1",
        lambda: group_testing_sample_size(1, 0.1, 0.05),
        ValueError,
        ("n must be >= 2",),
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
