"""Regression estimators (Kernel SHAP, Banzhaf regression) run in-process.

References are computed here by brute force over all subsets with
``math.factorial`` (Shapley) or ``w^s (1-w)^(n-1-s)`` (weighted Banzhaf)
weights, independently of the plan's kernel code.
"""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from daskval.games import AirportGame, GlovesGame, WeightedVotingGame
from daskval.methods.regression import (
    RegressionPlan,
    RegressionSampler,
    _keyed_permutation,
    _permutation_keys,
    _unrank_subsets,
    make_regression_plan,
)
from daskval.plan import Plan, evaluate_anchors, evaluate_range
from daskval.utility import FunctionUtility, Utility

TOL = 1e-10


def table_of(utility: Utility) -> list[float]:
    """u(S) for every S, indexed by bitmask."""
    n = utility.n
    return [
        utility(np.array([i for i in range(n) if mask >> i & 1], dtype=np.intp))
        for mask in range(1 << n)
    ]


def brute_force(table: list[float], n: int, kind: str, w: float = 0.5) -> np.ndarray:
    """Shapley, or the weighted Banzhaf value sum_S w^|S| (1-w)^(n-1-|S|) du."""
    values = np.zeros(n)
    for i in range(n):
        terms = []
        for mask in range(1 << n):
            if mask >> i & 1:
                continue
            s = bin(mask).count("1")
            if kind == "shapley":
                weight = (
                    math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
                )
            else:
                weight = w**s * (1 - w) ** (n - 1 - s)
            terms.append(weight * (table[mask | 1 << i] - table[mask]))
        values[i] = math.fsum(terms)
    return values


class RandomTable:
    """A picklable game with an arbitrary (random) utility per coalition."""

    def __init__(self, n: int, seed: int) -> None:
        self.values = np.random.default_rng(seed).normal(size=1 << n)

    def __call__(self, players: np.ndarray) -> float:
        return float(self.values[int(np.sum(1 << np.asarray(players, np.int64)))])


def run(plan: Plan, utility: Utility, stop: int, step: int | None = None):
    """Anchors, then samples 0 .. stop-1 in ranges of ``step``, merged."""
    anchors, _, _ = evaluate_anchors(plan, utility)
    plan.bind_anchors(anchors)
    step = step or stop
    merged = None
    for start in range(0, stop, step):
        part = evaluate_range(plan, utility, start, min(stop, start + step))
        merged = part if merged is None else merged.merge(part)
    assert merged is not None
    return plan.estimate(merged.moments)


GAMES = [
    WeightedVotingGame([1, 2, 3, 5, 8, 13, 21]),
    GlovesGame(3, 4),
    AirportGame([3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0]),
    FunctionUtility(RandomTable(7, seed=1), n=7),
]


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
@pytest.mark.parametrize("game", GAMES, ids=lambda g: type(g).__name__)
def test_kernel_shap_is_exact_with_a_budget_covering_every_coalition(
    game: Utility, paired: bool
) -> None:
    n = game.n
    cap = ((1 << n) - 2) // (2 if paired else 1)
    plan = make_regression_plan(
        "shapley", n, 3, RegressionSampler(paired=paired), sample_cap=cap
    )
    assert plan.sample_limit() == cap  # the border enumerates everything
    values, stderr, counts = run(plan, game, cap, step=29)
    table = table_of(game)
    np.testing.assert_allclose(values, brute_force(table, n, "shapley"), atol=TOL)
    np.testing.assert_array_equal(stderr, 0.0)
    np.testing.assert_array_equal(counts, (1 << n) - 2)
    assert counts.dtype == np.int64
    assert abs(values.sum() - (table[-1] - table[0])) <= TOL


@pytest.mark.parametrize("inclusion", [0.5, 0.3])
def test_banzhaf_regression_is_exact_with_a_budget_covering_every_coalition(
    inclusion: float,
) -> None:
    game = GAMES[-1]
    cap = (1 << game.n) // 2 - 1
    plan = make_regression_plan(
        "banzhaf", game.n, 0, RegressionSampler(), inclusion=inclusion, sample_cap=cap
    )
    values, stderr, _ = run(plan, game, cap, step=50)
    reference = brute_force(table_of(game), game.n, "banzhaf", inclusion)
    np.testing.assert_allclose(values, reference, atol=TOL)
    np.testing.assert_array_equal(stderr, 0.0)


@pytest.mark.parametrize(("kind", "inclusion"), [("shapley", 0.5), ("banzhaf", 0.3)])
@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
def test_two_additive_regression_is_exact_with_a_full_budget(
    kind: str, inclusion: float, paired: bool
) -> None:
    game = GAMES[-1]
    cap = ((1 << game.n) - 2) // (2 if paired else 1)
    sampler = RegressionSampler(paired=paired, order=2)
    plan = make_regression_plan(
        kind, game.n, 0, sampler, inclusion=inclusion, sample_cap=cap
    )
    values, stderr, _ = run(plan, game, cap, step=40)
    reference = brute_force(table_of(game), game.n, kind, inclusion)
    np.testing.assert_allclose(values, reference, atol=TOL)
    np.testing.assert_array_equal(stderr, 0.0)


def test_no_samples_past_a_complete_enumeration() -> None:
    plan = make_regression_plan("shapley", 4, 0, RegressionSampler(), sample_cap=100)
    assert plan.sample_limit() == 7
    run(plan, GAMES[0], 7)  # binds the anchors
    with pytest.raises(ValueError, match="do not exist"):
        evaluate_range(plan, GAMES[0], 7, 8)


@pytest.mark.parametrize(
    ("inclusion", "paired"), [(0.5, True), (0.5, False), (0.3, True), (0.7, False)]
)
def test_banzhaf_regression_converges(inclusion: float, paired: bool) -> None:
    n = 8
    game = FunctionUtility(RandomTable(n, seed=4), n=n)
    reference = brute_force(table_of(game), n, "banzhaf", inclusion)
    sampler = RegressionSampler(paired=paired, border=False)
    plan = make_regression_plan("banzhaf", n, 11, sampler, inclusion=inclusion)
    values, stderr, counts = run(plan, game, 3000, step=1000)
    assert np.all(stderr < 0.05)
    assert np.all(np.abs(values - reference) <= 4 * stderr)
    np.testing.assert_array_equal(counts, 6000 if paired else 3000)


@pytest.mark.parametrize(
    ("kind", "paired", "border", "replace", "samples"),
    [
        # 400 utility calls either way; without replacement about 40% of
        # the sampled population
        ("shapley", True, False, False, 200),
        ("shapley", False, False, False, 400),
        ("shapley", True, True, False, 200),
        ("banzhaf", True, False, False, 200),
        ("banzhaf", False, False, False, 400),
        # with replacement
        ("shapley", True, True, True, 200),
        ("banzhaf", True, False, True, 200),
        # 85-90% of the sampled population: the finite-population correction
        # shrinks the jackknife's variance seven- to tenfold
        ("shapley", True, True, False, 459),
        ("banzhaf", True, False, False, 459),
        ("shapley", False, True, False, 919),
    ],
)
def test_jackknife_stderr_is_calibrated(
    kind: str, paired: bool, border: bool, replace: bool, samples: int
) -> None:
    """Over 40 seeds, the mean reported stderr matches the spread of the
    estimates, and the estimates centre on the exact values."""
    game = AirportGame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    reference = brute_force(table_of(game), game.n, kind)
    sampler = RegressionSampler(paired=paired, border=border, replace=replace)
    estimates, stderrs = [], []
    for seed in range(40):
        plan = make_regression_plan(kind, game.n, seed, sampler, sample_cap=samples)
        values, stderr, _ = run(plan, game, samples)
        estimates.append(values)
        stderrs.append(stderr)
    spread = np.std(estimates, axis=0, ddof=1)
    ratio = np.mean(stderrs, axis=0) / spread
    # one player's ratio rests on 40 estimates: its own sd is ~11%
    assert 0.8 <= ratio.mean() <= 1.25, ratio
    assert np.all((ratio >= 0.7) & (ratio <= 1.45)), ratio
    bias = np.mean(estimates, axis=0) - reference
    assert np.all(np.abs(bias) <= 4 * spread / np.sqrt(40)), bias / spread


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("kind", ["shapley", "banzhaf"])
@pytest.mark.parametrize("border", [True, False])
def test_values_do_not_depend_on_task_ranges(
    kind: str, border: bool, replace: bool
) -> None:
    game = FunctionUtility(RandomTable(9, seed=2), n=9)
    sampler = RegressionSampler(border=border, replace=replace)
    plan = make_regression_plan(kind, 9, 5, sampler, sample_cap=120)
    if border and kind == "shapley":
        # Banzhaf's uniform proposal enumerates all or nothing
        assert isinstance(plan, RegressionPlan)
        assert 0 < plan.layout.n_border < 120  # ranges straddle the border
    reference = run(plan, game, 120)
    for step in (1, 7, 50):
        values, stderr, counts = run(plan, game, 120, step=step)
        np.testing.assert_allclose(values, reference[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(stderr, reference[1], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(counts, reference[2])


@pytest.mark.parametrize(("kind", "inclusion"), [("shapley", 0.5), ("banzhaf", 0.3)])
@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
def test_without_replacement_is_exact_once_the_population_is_drawn(
    kind: str, inclusion: float, paired: bool
) -> None:
    """Without the border every level is sampled; a budget covering them all
    draws each unit once, in a seeded order, and the estimate is exact."""
    game = GAMES[-1]
    population = ((1 << game.n) - 2) // (2 if paired else 1)
    sampler = RegressionSampler(paired=paired, border=False)
    plan = make_regression_plan(
        kind, game.n, 4, sampler, inclusion=inclusion, sample_cap=population + 9
    )
    assert plan.sample_limit() == population
    values, stderr, counts = run(plan, game, population, step=23)
    reference = brute_force(table_of(game), game.n, kind, inclusion)
    np.testing.assert_allclose(values, reference, atol=TOL)
    np.testing.assert_array_equal(stderr, 0.0)
    np.testing.assert_array_equal(counts, (1 << game.n) - 2)


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
def test_without_replacement_draws_distinct_units_by_level(paired: bool) -> None:
    n, cap = 10, 300
    plan = make_regression_plan(
        "shapley", n, 8, RegressionSampler(paired=paired), sample_cap=cap
    )
    assert isinstance(plan, RegressionPlan) and plan.strata is not None
    assert plan.sample_limit() == cap
    first = plan.layout.n_border
    z, _, groups = plan._sampled_rows(first, cap)
    coalitions = {tuple(row) for row in z}
    assert len(coalitions) == len(z)  # no repeats, complements included
    units = z[::2] if paired else z
    levels = np.minimum(units.sum(axis=1), n - units.sum(axis=1))
    for level, count in zip(plan.strata.levels, plan.strata.counts, strict=True):
        assert (levels == level).sum() == count
    # group r mod 16 within each level: balanced up to one unit per level
    unit_groups = groups[::2] if paired else groups
    per_group = np.bincount(unit_groups[unit_groups >= 0], minlength=16)
    assert per_group.max() - per_group.min() <= len(plan.strata.levels)
    with pytest.raises(ValueError, match="do not exist"):
        plan._sampled_rows(cap - 1, cap + 1)


def test_with_replacement_without_a_known_sample_count() -> None:
    plan = make_regression_plan("shapley", 8, 0, RegressionSampler())
    assert isinstance(plan, RegressionPlan)
    assert plan.strata is None and plan.sample_limit() is None
    assert not plan.describe()["without_replacement"]
    forced = make_regression_plan(
        "shapley", 8, 0, RegressionSampler(replace=True), sample_cap=50
    )
    assert forced.sample_limit() is None


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 4097])
def test_keyed_permutation_is_a_bijection(size: int) -> None:
    image = _keyed_permutation(np.arange(size), size, _permutation_keys(3, 1))
    np.testing.assert_array_equal(np.sort(image), np.arange(size))


def test_keyed_permutation_includes_every_unit_equally_often() -> None:
    """The rotation makes each unit's inclusion probability exactly m/N."""
    size, drawn, seeds = 10, 3, 2000
    hits = np.zeros(size)
    for seed in range(seeds):
        hits[
            _keyed_permutation(np.arange(drawn), size, _permutation_keys(seed, 2))
        ] += 1
    # binomial sd of a frequency near 0.3 over 2000 seeds: ~0.010
    np.testing.assert_allclose(hits / seeds, drawn / size, atol=0.04)


@pytest.mark.parametrize(("pool", "size"), [(7, 3), (12, 6), (5, 0), (5, 5)])
def test_unranking_lists_every_subset_once(pool: int, size: int) -> None:
    z = _unrank_subsets(np.arange(math.comb(pool, size)), pool, size)
    assert len({tuple(row) for row in z}) == math.comb(pool, size)
    np.testing.assert_array_equal(z.sum(axis=1), size)


def test_early_estimates_are_finite_or_flagged() -> None:
    game = AirportGame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    plan = make_regression_plan("shapley", 8, 0, RegressionSampler(border=False))
    values, stderr, _ = run(plan, game, 1)
    assert np.all(np.isfinite(values))
    assert np.all(np.isinf(stderr))  # one group: no jackknife yet


def test_plan_pickles_and_describes_itself() -> None:
    sampler = RegressionSampler(paired=False, border=True, groups=8)
    plan = make_regression_plan("banzhaf", 6, 9, sampler, inclusion=0.25, sample_cap=40)
    description = json.loads(json.dumps(plan.describe()))
    assert description["plan"] == "regression-banzhaf"
    assert description["inclusion"] == 0.25
    assert description["sampler"] == {
        "class": "RegressionSampler",
        "paired": False,
        "border": True,
        "groups": 8,
        "order": 1,
        "replace": False,
    }
    assert description["without_replacement"]
    assert pickle.loads(pickle.dumps(plan)).describe() == plan.describe()
    assert plan.max_evaluations_per_sample() == 1
    assert plan.fixed_evaluations_per_sample() == 1
    assert len(plan.anchors()) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"paired": 1}, TypeError, "paired must be a bool"),
        ({"border": "yes"}, TypeError, "border must be a bool"),
        ({"replace": 0}, TypeError, "replace must be a bool"),
        ({"groups": 1}, ValueError, "groups must lie in 2"),
        ({"groups": 2.5}, ValueError, "groups must be a whole number"),
        ({"groups": "8"}, TypeError, "groups must be an integer"),
        ({"order": 3}, ValueError, "order must be 1 or 2"),
        ({"order": 2.0}, TypeError, "order must be 1 or 2"),
    ],
)
def test_bad_sampler_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        RegressionSampler(**kwargs)


def test_too_many_players() -> None:
    sampler = RegressionSampler()
    limit = sampler.max_players()
    assert 300 <= limit <= 400
    sampler.check(limit)
    with pytest.raises(ValueError, match=rf"sampler=RegressionSampler\(\).*{limit}"):
        sampler.check(limit + 1)
    with pytest.raises(ValueError, match="at least 2 players"):
        sampler.check(1)
    assert RegressionSampler(groups=2).max_players() > limit
    assert RegressionSampler(order=2).max_players() == 25
    with pytest.raises(ValueError, match="limit of 25"):
        RegressionSampler(order=2).check(26)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("owen", 5, 0, RegressionSampler()), {}, ValueError, "kind must be one of"),
        (("shapley", 5, 0, object()), {}, TypeError, "RegressionSampler"),
        (("shapley", 0, 0, RegressionSampler()), {}, ValueError, "n must be"),
        (("shapley", 5, -1, RegressionSampler()), {}, ValueError, "seed"),
        (
            ("banzhaf", 5, 0, RegressionSampler()),
            {"inclusion": 1.0},
            ValueError,
            "inclusion must lie in",
        ),
        (
            ("banzhaf", 5, 0, RegressionSampler()),
            {"inclusion": "a"},
            TypeError,
            "inclusion must be a number",
        ),
        (
            ("shapley", 5, 0, RegressionSampler()),
            {"inclusion": 0.3},
            ValueError,
            "kind='banzhaf' only",
        ),
        (
            ("shapley", 5, 0, RegressionSampler()),
            {"sample_cap": -3},
            ValueError,
            "sample_cap",
        ),
    ],
)
def test_bad_plan_arguments(args: tuple, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make_regression_plan(*args, **kwargs)


def test_large_games_fall_back_to_sampling_with_replacement() -> None:
    """C(n, k) overflows int64 beyond n ~ 62: a count budget on a game of
    hundreds of players must plan (with replacement) instead of crashing."""
    for n in (100, 300):
        plan = make_regression_plan("shapley", n, 0, RegressionSampler(), sample_cap=50)
        assert plan.describe()["without_replacement"] is False
