"""Semivalues: exact values against brute force, Monte Carlo calibration,
samplers' size laws, and several semivalues from one run.

References are computed here from a table of all 2^n utilities with
``math`` weights, independently of daskval's log-space weight code.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from distributed import Client
from scipy import stats

import daskval as dv
from daskval.accumulate import Partial
from daskval.games import AirportGame, Game, GlovesGame, WeightedVotingGame
from daskval.plan import Plan, evaluate_range, initial_partial
from daskval.samplers import CoalitionSampler

TOL = 1e-10


# -- references ----------------------------------------------------------------
def utility_table(game: Game) -> list[float]:
    n, counters = game.n, dv.EvalStats()
    return [
        game.evaluate(np.array([i for i in range(n) if m >> i & 1], np.intp), counters)
        for m in range(1 << n)
    ]


def brute_force(
    table: list[float], n: int, weight: Callable[[int], float]
) -> np.ndarray:
    """sum over S not containing i of weight(|S|) (u(S + i) - u(S))."""
    values = np.zeros(n)
    for i in range(n):
        terms = [
            weight(bin(m).count("1")) * (table[m | 1 << i] - table[m])
            for m in range(1 << n)
            if not m >> i & 1
        ]
        values[i] = math.fsum(terms)
    return values


def beta_function(x: float, y: float) -> float:
    return math.exp(math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y))


def reference_weights(n: int) -> dict[str, Callable[[int], float]]:
    """The weight of one coalition of k others, from each paper's formula."""
    return {
        "shapley": lambda k: (
            math.factorial(k) * math.factorial(n - 1 - k) / math.factorial(n)
        ),
        "banzhaf": lambda k: 0.5 ** (n - 1),
        "weighted-banzhaf(0.3)": lambda k: 0.3**k * 0.7 ** (n - 1 - k),
        "beta(16,1)": lambda k: (
            beta_function(k + 1, n - 1 - k + 16) / beta_function(16, 1)
        ),
        "beta(4,2)": lambda k: (
            beta_function(k + 2, n - 1 - k + 4) / beta_function(4, 2)
        ),
    }


SEMIVALUES = [
    dv.Shapley(),
    dv.Banzhaf(),
    dv.WeightedBanzhaf(0.3),
    dv.Beta(16, 1),
    dv.Beta(4, 2),
]


def references(game: Game) -> dict[str, np.ndarray]:
    table = utility_table(game)
    return {
        name: brute_force(table, game.n, weight)
        for name, weight in reference_weights(game.n).items()
    }


def run_in_process(plan: Plan, game: Game, samples: int) -> Partial:
    """Samples 0 .. samples-1 in a few ranges, merged as the engine would."""
    if plan.anchors():
        plan.bind_anchors([game.evaluate(a, dv.EvalStats()) for a in plan.anchors()])
    state = initial_partial(plan)
    edges = np.linspace(0, samples, 4).astype(int)
    for start, stop in itertools.pairwise(edges):
        state = state.merge(evaluate_range(plan, game, int(start), int(stop)))
    return state


# -- exact --------------------------------------------------------------------
GAMES = [
    AirportGame([1, 2, 3, 5, 8, 9, 11, 12, 14]),
    WeightedVotingGame([1, 2, 3, 5, 8, 13, 21]),
    GlovesGame(3, 4),
]


@pytest.mark.parametrize("game", GAMES, ids=lambda g: type(g).__name__)
def test_exact_semivalues_equal_brute_force(game: Game) -> None:
    valuation = dv.SemivalueValuation(game, SEMIVALUES, sampler=dv.ExactSampler())
    plan = valuation.make_plan()
    state = run_in_process(plan, game, 1 << game.n)
    estimates = plan.estimates(state.moments)
    assert estimates is not None
    expected = references(game)
    assert list(estimates) == [v.name for v in SEMIVALUES]
    for name, (values, stderr, _) in estimates.items():
        np.testing.assert_allclose(values, expected[name], rtol=0, atol=TOL)
        np.testing.assert_array_equal(stderr, 0.0)


def test_exact_valuations_on_a_cluster(client: Client) -> None:
    game = GAMES[0]
    expected = references(game)
    runs = {
        "banzhaf": dv.BanzhafValuation(game, sampler=dv.ExactSampler()),
        "weighted-banzhaf(0.3)": dv.WeightedBanzhafValuation(
            game, 0.3, sampler=dv.ExactSampler()
        ),
        "beta(16,1)": dv.BetaShapleyValuation(game, 16, 1, sampler=dv.ExactSampler()),
    }
    for name, valuation in runs.items():
        result = valuation.fit(client=client, samples_per_task=64).result_
        assert result is not None and result.status == "completed"
        assert result.n_evaluations == 1 << game.n
        np.testing.assert_allclose(result.values, expected[name], rtol=0, atol=TOL)
        assert list(valuation.results_) == [valuation.method_name]


def test_beta_one_one_is_shapley() -> None:
    n = 30
    np.testing.assert_allclose(
        dv.Beta(1, 1).log_weights(n), dv.Shapley().log_weights(n), atol=1e-12
    )


@pytest.mark.parametrize("n", [2, 10, 1000, 100_000])
def test_size_probabilities_sum_to_one_at_any_n(n: int) -> None:
    for semivalue in SEMIVALUES:
        p = np.exp(semivalue.log_size_probabilities(n))
        assert np.isfinite(p).all()
        assert math.fsum(p) == pytest.approx(1.0, abs=1e-9)


# -- Monte Carlo calibration ------------------------------------------------------
CALIBRATION_GAME = AirportGame([1, 2, 3, 5, 8, 9, 11, 12, 14])
SEEDS = range(40)

# (sampler, samples per run): budgets large enough for every player to have
# contributions in every stratum; every pair here is unbiased
CALIBRATED = [
    (dv.PermutationSampler(), 100),
    (dv.PermutationSampler(antithetic=True), 100),
    # Bernoulli(1/2) coalitions are far from Shapley's and Beta's size laws:
    # their importance weights are heavy-tailed (up to 28x at n=9), and at 200
    # samples the stderr was 0.69-0.76 of the SD; at 1500 it is calibrated
    (dv.UniformSampler(), 1500),
    (dv.AntitheticSampler(), 200),
    (dv.StratifiedSampler(), 200),
    (dv.StratifiedSampler(strata=4, antithetic=True), 200),
    (dv.OwenSampler(8), 200),
    (dv.OwenSampler(8, antithetic=True), 200),
    (dv.MSRSampler(), 2000),
    (dv.MSRSampler(0.3), 2000),
    (dv.MSRSampler(None), 2000),
]

# Shapley from Bernoulli(0.3) coalitions weighs the full coalition (probability
# 2e-5) by 5600: the self-normalised estimate's stderr stays too small (0.74 of
# the SD at 12,000 samples) until such rare coalitions have been seen often.
# Not a sampler to use for Shapley; documented, and left out here.
UNRELIABLE = {("MSRSampler", 0.3, "shapley")}


@pytest.fixture(scope="module")
def calibration_reference() -> dict[str, np.ndarray]:
    return references(CALIBRATION_GAME)


@pytest.mark.parametrize(
    ("sampler", "samples"),
    CALIBRATED,
    ids=[f"{type(s).__name__}-{i}" for i, (s, _) in enumerate(CALIBRATED)],
)
def test_stderr_is_calibrated(
    sampler: dv.PermutationSampler | CoalitionSampler,
    samples: int,
    calibration_reference: dict[str, np.ndarray],
) -> None:
    """Over 40 seeds: mean reported stderr / empirical SD in [0.8, 1.25], and
    the mean estimate within 4 standard errors of the exact value."""
    game = CALIBRATION_GAME
    estimates: dict[str, list[np.ndarray]] = {v.name: [] for v in SEMIVALUES}
    stderrs: dict[str, list[np.ndarray]] = {v.name: [] for v in SEMIVALUES}
    for seed in SEEDS:
        valuation = dv.SemivalueValuation(
            game, SEMIVALUES, sampler=sampler, stop=dv.MaxSamples(samples), seed=seed
        )
        plan = valuation.make_plan()
        out = plan.estimates(run_in_process(plan, game, samples).moments)
        assert out is not None
        for name, (values, stderr, _) in out.items():
            estimates[name].append(values)
            stderrs[name].append(stderr)
    kind = (type(sampler).__name__, getattr(sampler, "inclusion", None))
    for name in estimates:
        if (*kind, name) in UNRELIABLE:
            continue
        values = np.array(estimates[name])
        empirical_sd = values.std(axis=0, ddof=1)
        ratio = np.mean(np.array(stderrs[name]), axis=0) / empirical_sd
        assert 0.8 <= ratio.mean() <= 1.25, (name, ratio)
        bias = values.mean(axis=0) - calibration_reference[name]
        assert np.all(np.abs(bias) <= 4 * empirical_sd / math.sqrt(len(SEEDS))), (
            name,
            bias / (empirical_sd / math.sqrt(len(SEEDS))),
        )


# -- samplers' size laws ----------------------------------------------------------
SIZE_LAWS = [
    dv.UniformSampler(),
    dv.AntitheticSampler(),
    dv.MSRSampler(),
    dv.MSRSampler(0.2),
    dv.MSRSampler(None),
    dv.StratifiedSampler(),
    dv.StratifiedSampler(np.arange(13) + 1.0, strata=5),
    dv.OwenSampler(4),
]


@pytest.mark.parametrize(
    "sampler",
    SIZE_LAWS,
    ids=[f"{type(s).__name__}-{i}" for i, s in enumerate(SIZE_LAWS)],
)
def test_coalition_sizes_follow_the_stated_law(sampler: CoalitionSampler) -> None:
    n, draws = 12, 6000  # a whole number of stratum cycles
    sizes = np.array(
        [
            mask.sum()
            for j in range(draws)
            for mask in sampler.coalitions(seed=7, index=j, n=n)[:1]
        ]
    )
    expected = sampler.size_probabilities(n) * draws
    observed = np.bincount(sizes, minlength=n + 1).astype(float)
    # pool sparse tail cells so the chi-square approximation holds
    keep = expected >= 5
    pooled_obs = np.append(observed[keep], observed[~keep].sum())
    pooled_exp = np.append(expected[keep], expected[~keep].sum())
    if pooled_exp[-1] == 0:
        pooled_obs, pooled_exp = pooled_obs[:-1], pooled_exp[:-1]
    assert stats.chisquare(pooled_obs, pooled_exp).pvalue > 1e-3


def test_permutation_positions_are_uniform() -> None:
    n, draws = 10, 5000
    sampler = dv.PermutationSampler()
    positions = [
        int(np.flatnonzero(sampler.permutation(3, j, n) == 0)[0]) for j in range(draws)
    ]
    observed = np.bincount(positions, minlength=n)
    assert stats.chisquare(observed).pvalue > 1e-3


# -- one run, several semivalues --------------------------------------------------
def test_one_run_equals_separate_runs_with_the_same_samples() -> None:
    """Each output of a multi-semivalue run is bit-identical to a run of that
    semivalue alone on the same seed: the same samples serve all."""
    game = CALIBRATION_GAME
    sampler = dv.MSRSampler(None)
    together = dv.SemivalueValuation(
        game, SEMIVALUES, sampler=sampler, stop=dv.MaxSamples(500), seed=3
    ).make_plan()
    out = together.estimates(run_in_process(together, game, 500).moments)
    assert out is not None
    for semivalue in SEMIVALUES:
        alone = dv.SemivalueValuation(
            game, [semivalue], sampler=sampler, stop=dv.MaxSamples(500), seed=3
        ).make_plan()
        values, stderr, _ = alone.estimate(run_in_process(alone, game, 500).moments)
        np.testing.assert_array_equal(out[semivalue.name][0], values)
        np.testing.assert_array_equal(out[semivalue.name][1], stderr)


def test_uniform_ranges_merge_to_the_same_values() -> None:
    """Values do not depend on how samples are split into tasks (up to the
    rounding of sums in another order)."""
    game = CALIBRATION_GAME
    for sampler in (dv.MSRSampler(None), dv.StratifiedSampler(), dv.OwenSampler(4)):
        plan = dv.SemivalueValuation(
            game, SEMIVALUES, sampler=sampler, stop=dv.MaxSamples(90), seed=1
        ).make_plan()
        whole = initial_partial(plan).merge(evaluate_range(plan, game, 0, 90))
        split = initial_partial(plan)
        for start in range(0, 90, 13):
            split = split.merge(evaluate_range(plan, game, start, min(start + 13, 90)))
        a, b = plan.estimates(whole.moments), plan.estimates(split.moments)
        assert a is not None and b is not None
        for name in a:
            np.testing.assert_allclose(a[name][0], b[name][0], rtol=0, atol=1e-12)
            np.testing.assert_allclose(a[name][1], b[name][1], rtol=1e-9)


def test_one_run_agrees_with_separate_runs_within_stderr(client: Client) -> None:
    game = CALIBRATION_GAME
    stop = dv.MaxSamples(3000)
    together = dv.SemivalueValuation(
        game,
        [dv.Shapley(), dv.Banzhaf(), dv.Beta(16, 1)],
        sampler=dv.StratifiedSampler(),
        stop=stop,
        seed=11,
    ).fit(client=client)
    assert list(together.results_) == ["shapley", "banzhaf", "beta(16,1)"]
    separate = {
        "shapley": dv.ShapleyValuation(game, stop=dv.MaxSamples(600), seed=12),
        "banzhaf": dv.BanzhafValuation(game, stop=stop, seed=13),
        "beta(16,1)": dv.BetaShapleyValuation(
            game, 16, 1, stop=dv.MaxSamples(600), seed=14
        ),
    }
    for name, valuation in separate.items():
        alone = valuation.fit(client=client).result_
        joint = together.results_[name]
        assert alone is not None
        assert joint.metadata["output"] == name
        assert joint.n_samples == 3000
        combined = np.sqrt(joint.stderr**2 + alone.stderr**2)
        assert np.all(np.abs(joint.values - alone.values) <= 4.5 * combined), name


def test_results_are_deterministic_across_task_sizes(client: Client) -> None:
    game = GAMES[1]

    def run(samples_per_task: int | None) -> dv.ValuationResult:
        valuation = dv.BanzhafValuation(game, stop=dv.MaxSamples(700), seed=5)
        result = valuation.fit(client=client, samples_per_task=samples_per_task).result_
        assert result is not None
        return result

    first, second = run(7), run(None)
    # sums merge in another order: equal up to rounding
    np.testing.assert_allclose(first.values, second.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(first.stderr, second.stderr, rtol=1e-9)
    assert first.n_samples == second.n_samples == 700
    assert first.n_evaluations == 700  # MSR: one call per coalition, no anchors


# -- bad input --------------------------------------------------------------------
BAD = [
    (
        lambda g: dv.BetaShapleyValuation(g, 0, 1, stop=dv.MaxSamples(1)),
        ValueError,
        "alpha",
    ),
    (
        lambda g: dv.BetaShapleyValuation(g, 1, -2, stop=dv.MaxSamples(1)),
        ValueError,
        "beta",
    ),
    (
        lambda g: dv.BetaShapleyValuation(g, "16", 1, stop=dv.MaxSamples(1)),
        TypeError,
        "alpha",
    ),
    (
        lambda g: dv.WeightedBanzhafValuation(g, 1.0, stop=dv.MaxSamples(1)),
        ValueError,
        "w must",
    ),
    (
        lambda g: dv.WeightedBanzhafValuation(g, 0, stop=dv.MaxSamples(1)),
        ValueError,
        "w must",
    ),
    (
        lambda g: dv.SemivalueValuation(g, [], stop=dv.MaxSamples(1)),
        ValueError,
        "semivalues",
    ),
    (
        lambda g: dv.SemivalueValuation(g, dv.Shapley(), stop=dv.MaxSamples(1)),
        TypeError,
        "semivalues",
    ),
    (
        lambda g: dv.SemivalueValuation(g, ["shapley"], stop=dv.MaxSamples(1)),
        TypeError,
        "semivalues",
    ),
    (
        lambda g: dv.SemivalueValuation(
            g, [dv.Banzhaf(), dv.Banzhaf()], stop=dv.MaxSamples(1)
        ),
        ValueError,
        "differ",
    ),
    (
        lambda g: dv.BanzhafValuation(g, sampler="msr", stop=dv.MaxSamples(1)),
        TypeError,
        "sampler",
    ),
    (lambda g: dv.BanzhafValuation(g), ValueError, "stop is required"),
    (
        lambda g: dv.BanzhafValuation(
            g, sampler=dv.ExactSampler(), stop=dv.MaxSamples(1)
        ),
        ValueError,
        "stop must be None",
    ),
    (lambda g: dv.MSRSampler(0), ValueError, "inclusion"),
    (lambda g: dv.MSRSampler(1.5), ValueError, "inclusion"),
    (lambda g: dv.OwenSampler(1), ValueError, "n_q"),
    (lambda g: dv.OwenSampler(4, antithetic=1), TypeError, "antithetic"),
    (lambda g: dv.StratifiedSampler("sizes"), ValueError, "allocation"),
    (lambda g: dv.StratifiedSampler([1, -1, 1]), ValueError, "allocation"),
    (
        lambda g: dv.ShapleyValuation(
            g, sampler=dv.StratifiedSampler([1.0, 1.0, 1.0]), stop=dv.MaxSamples(1)
        ),
        ValueError,
        "n\\+1",
    ),
    (
        lambda g: dv.ShapleyValuation(
            g, sampler=dv.StratifiedSampler(strata=99), stop=dv.MaxSamples(1)
        ),
        ValueError,
        "strata",
    ),
    (
        lambda g: dv.ShapleyValuation(
            g,
            sampler=dv.StratifiedSampler([0.0] * 4 + [1.0] * 6),
            stop=dv.MaxSamples(1),
        ).make_plan(),
        ValueError,
        "never draws",
    ),
]


@pytest.mark.parametrize(("make", "error", "match"), BAD)
def test_bad_arguments_are_refused(make: Callable, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make(GAMES[0])


def test_regression_sampler_through_the_engine(client: Client) -> None:
    """Kernel SHAP and Banzhaf regression run as valuations; with a budget
    that pays for every coalition, Kernel SHAP's border trick makes it exact."""
    game = GAMES[1]  # 7 players: 126 coalitions besides the anchors
    expected = references(game)
    exact = dv.ShapleyValuation(
        game, sampler=dv.RegressionSampler(), stop=dv.MaxEvaluations(2 + 126)
    ).fit(client=client)
    result = exact.result_
    assert result is not None and result.n_evaluations == 128
    np.testing.assert_allclose(result.values, expected["shapley"], atol=TOL)
    for valuation, name in [
        (
            dv.BanzhafValuation(
                game, sampler=dv.RegressionSampler(), stop=dv.MaxSamples(4000), seed=2
            ),
            "banzhaf",
        ),
        (
            dv.WeightedBanzhafValuation(
                game,
                0.3,
                sampler=dv.RegressionSampler(paired=False),
                stop=dv.MaxSamples(4000),
                seed=2,
            ),
            "weighted-banzhaf(0.3)",
        ),
    ]:
        estimate = valuation.fit(client=client).result_
        assert estimate is not None
        assert np.all(
            np.abs(estimate.values - expected[name]) <= 4 * estimate.stderr + 1e-12
        ), name


def test_regression_sampler_refuses_other_semivalues() -> None:
    with pytest.raises(ValueError, match="one semivalue at a time"):
        dv.BetaShapleyValuation(
            GAMES[0], 16, 1, sampler=dv.RegressionSampler(), stop=dv.MaxSamples(5)
        )
    with pytest.raises(ValueError, match="one semivalue at a time"):
        dv.SemivalueValuation(
            GAMES[0],
            [dv.Shapley(), dv.Banzhaf()],
            sampler=dv.RegressionSampler(),
            stop=dv.MaxSamples(5),
        )
