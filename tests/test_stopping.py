"""Stopping criteria: each criterion, the | & ~ algebra, budgets and completion."""

from __future__ import annotations

import numpy as np
import pytest
from distributed import Client

import daskval as dv
from daskval.stopping import Snapshot, StoppingCriterion


def additive(players: np.ndarray) -> float:
    """Every marginal of player i is i + 1: zero variance, so stderr is 0."""
    return float(np.sum(players + 1))


def majority(players: np.ndarray) -> float:
    weights = np.arange(1, 7)
    return float(weights[players].sum() > weights.sum() / 2)


def snap(
    n_samples: int = 0,
    n_evaluations: int = 0,
    elapsed: float = 0.0,
    values: list[float] | None = None,
    stderr: list[float] | None = None,
    counts: list[int] | None = None,
) -> Snapshot:
    v = np.asarray(values if values is not None else [0.0, 0.0, 0.0], dtype=float)
    s = np.asarray(stderr if stderr is not None else [np.inf] * len(v), dtype=float)
    c = np.asarray(counts if counts is not None else [n_samples] * len(v))
    return Snapshot(v, s, c, n_samples, n_evaluations, elapsed)


def costs(n_samples: int, *, per_sample: int, anchors: int = 2) -> np.ndarray:
    """Cumulative evaluations after 0 .. n_samples samples of a fixed cost."""
    return anchors + per_sample * np.arange(n_samples + 1)


# --------------------------------------------------------------------------
# single criteria


def test_max_samples() -> None:
    stop = dv.MaxSamples(10)
    assert not stop.check(snap(n_samples=9)) and stop.check(snap(n_samples=10))
    assert stop.completion(snap(n_samples=5)) == 0.5
    assert stop.completion(snap(n_samples=30)) == 1.0
    assert stop.count_stop(costs(9, per_sample=3), 0) is None  # 10th not known yet
    assert stop.count_stop(costs(10, per_sample=3), 0) == 10
    assert stop.count_stop(costs(5, per_sample=3), offset=8) == 10
    assert repr(stop) == "MaxSamples(10)"


def test_max_evaluations() -> None:
    stop = dv.MaxEvaluations(200)
    assert not stop.check(snap(n_evaluations=199))
    assert stop.check(snap(n_evaluations=200))
    assert stop.completion(snap(n_evaluations=50)) == 0.25
    # 2 anchor calls, then 3 per sample: 66 samples cost 200, the 67th overshoots
    assert stop.count_stop(costs(66, per_sample=3), 0) is None
    assert stop.count_stop(costs(67, per_sample=3), 0) == 66
    assert stop.count_stop(costs(80, per_sample=3), 0) == 66
    # anchors alone over budget: they are spent anyway, and no sample fits
    assert dv.MaxEvaluations(1).count_stop(costs(3, per_sample=3), 0) == 0
    assert stop.describe() == "MaxEvaluations(200)"


def test_max_time() -> None:
    stop = dv.MaxTime(2.5)
    assert not stop.check(snap(elapsed=2.4)) and stop.check(snap(elapsed=2.5))
    assert stop.completion(snap(elapsed=1.0)) == pytest.approx(0.4)
    assert stop.completion(snap(elapsed=9.0)) == 1.0
    assert stop.count_stop(costs(10**4, per_sample=3), 0) is None


def test_max_stderr_needs_every_player_below_the_threshold() -> None:
    stop = dv.MaxStderr(0.1, burn_in=5)
    assert not stop.check(snap(stderr=[0.05, 0.2, 0.01], counts=[9, 9, 9]))
    assert stop.completion(snap(stderr=[0.05, 0.2, 0.01], counts=[9, 9, 9])) == (
        pytest.approx(2 / 3)
    )
    assert stop.check(snap(stderr=[0.05, 0.1, 0.01], counts=[9, 9, 9]))
    # a player with too few contributions is never trusted, whatever its stderr
    assert not stop.check(snap(stderr=[0.0, 0.0, 0.0], counts=[9, 4, 9]))
    assert not stop.check(snap(stderr=[np.inf] * 3, counts=[1, 1, 1]))


def _values_sequence(stop: StoppingCriterion, values: list[list[float]]) -> list[bool]:
    return [
        stop.check(snap(n_samples=10 * (i + 1), values=v)) for i, v in enumerate(values)
    ]


def test_rank_stable_counts_consecutive_stable_checks() -> None:
    stop = dv.RankStable(threshold=0.99, patience=2, min_samples=10)
    same, swapped = [1.0, 2.0, 3.0], [2.0, 1.0, 3.0]
    # first check has nothing to compare; then stable, swapped (reset), stable x2
    assert _values_sequence(stop, [same, same, swapped, swapped, swapped]) == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert stop.completion(snap()) == 1.0
    stop.reset()
    assert stop.completion(snap()) == 0.0
    assert not stop.check(snap(n_samples=10, values=same))


def test_rank_stable_waits_for_min_samples_between_comparisons() -> None:
    stop = dv.RankStable(threshold=0.99, patience=1, min_samples=10)
    assert not stop.check(snap(n_samples=10, values=[1, 2, 3]))
    assert not stop.check(snap(n_samples=15, values=[1, 2, 3]))  # too soon
    assert stop.completion(snap()) == 0.0
    assert stop.check(snap(n_samples=20, values=[1, 2, 3]))


# --------------------------------------------------------------------------
# the algebra


def test_or_stops_when_either_stops() -> None:
    stop = dv.MaxSamples(10) | dv.MaxTime(5)
    assert not stop.check(snap(n_samples=5, elapsed=1))
    assert stop.check(snap(n_samples=10, elapsed=1))
    assert stop.check(snap(n_samples=1, elapsed=5))
    assert stop.completion(snap(n_samples=2, elapsed=4)) == pytest.approx(0.8)
    assert stop.describe() == "(MaxSamples(10) | MaxTime(5))"


def test_and_stops_when_both_stop() -> None:
    stop = dv.MaxSamples(10) & dv.MaxTime(5)
    assert not stop.check(snap(n_samples=10, elapsed=1))
    assert not stop.check(snap(n_samples=1, elapsed=5))
    assert stop.check(snap(n_samples=10, elapsed=5))
    assert stop.completion(snap(n_samples=2, elapsed=4)) == pytest.approx(0.2)
    assert stop.describe() == "(MaxSamples(10) & MaxTime(5))"


def test_not_inverts_and_double_negation_is_the_original() -> None:
    inner = dv.MaxSamples(10)
    stop = ~inner
    assert stop.check(snap(n_samples=3)) and not stop.check(snap(n_samples=10))
    assert stop.completion(snap(n_samples=4)) == pytest.approx(0.6)
    assert stop.describe() == "~MaxSamples(10)"
    assert ~stop is inner


def test_count_stops_of_combinations() -> None:
    samples10, samples5 = dv.MaxSamples(10), dv.MaxSamples(5)
    evals, time = dv.MaxEvaluations(100), dv.MaxTime(1)
    known = costs(200, per_sample=3)  # evaluations: 2 + 3 j; 100 fits 32 samples

    def stop_at(criterion: dv.StoppingCriterion) -> int | None:
        return criterion.count_stop(known, 0)

    # either: the earlier count ends the run
    assert stop_at(samples10 | samples5) == 5
    assert stop_at(samples10 | time) == 10
    assert stop_at(samples10 | evals) == 10
    assert stop_at(dv.MaxSamples(50) | evals) == 32
    # both: the later count, and no count-decided end if one side is not counts
    assert stop_at(samples10 & samples5) == 10
    assert stop_at(samples10 & time) is None
    assert stop_at(samples10 & evals) == 32
    assert stop_at(dv.MaxSamples(50) & evals) == 50
    # not: "not yet 10 samples" is no count-decided end at all
    assert stop_at(~samples10) is None
    assert stop_at(~~samples10) == 10
    nested = (samples10 | evals) & (samples5 | dv.MaxEvaluations(300))
    assert stop_at(nested) == 10
    # undecided until enough samples are known
    assert (samples10 & evals).count_stop(costs(20, per_sample=3), 0) is None


def test_completion_of_nested_combinations_stays_in_the_unit_interval() -> None:
    stop = (dv.MaxSamples(10) | dv.MaxTime(100)) & ~dv.MaxEvaluations(50)
    for n in range(0, 30, 3):
        value = stop.completion(snap(n_samples=n, n_evaluations=5 * n, elapsed=n))
        assert 0.0 <= value <= 1.0


def test_combined_stateful_criteria_see_every_snapshot() -> None:
    """| and & must not short-circuit: RankStable needs every check."""
    rank = dv.RankStable(threshold=0.99, patience=1, min_samples=1)
    stop = dv.MaxSamples(1) | rank
    assert stop.check(snap(n_samples=1, values=[1, 2, 3]))
    assert stop.check(snap(n_samples=2, values=[1, 2, 3]))
    assert rank.completion(snap()) == 1.0  # rank saw both snapshots
    stop.reset()
    assert rank.completion(snap()) == 0.0


def test_combining_with_a_non_criterion_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot combine"):
        dv.MaxSamples(3) & 3  # type: ignore[operator]


# --------------------------------------------------------------------------
# on a cluster: budgets reach the engine


def test_combined_budgets_are_exact_on_the_cluster(client: Client) -> None:
    game = dv.FunctionUtility(majority, 6)
    by_samples = dv.ShapleyValuation(
        game, stop=dv.MaxSamples(7) | dv.MaxTime(600), seed=0
    ).fit(client=client)
    assert by_samples.result_ is not None and by_samples.result_.n_samples == 7
    # 2 anchor evaluations, then 5 per permutation: 3 permutations fit in 20
    by_evals = dv.ShapleyValuation(
        game, stop=dv.MaxEvaluations(20) | dv.MaxSamples(1000), seed=0
    ).fit(client=client)
    result = by_evals.result_
    assert result is not None
    assert (result.n_samples, result.n_evaluations) == (3, 17)


def test_max_stderr_stops_a_zero_variance_game_after_burn_in(client: Client) -> None:
    game = dv.FunctionUtility(additive, 5)
    stop = dv.MaxStderr(1e-9, burn_in=4) | dv.MaxTime(120)
    result = dv.ShapleyValuation(game, stop=stop, seed=0).fit(client=client).result_
    assert result is not None and result.status == "completed"
    assert result.n_samples >= 4
    assert result.metadata["elapsed_seconds"] < 60  # stopped by the stderr
    np.testing.assert_allclose(result.values, np.arange(1, 6))
    assert (result.stderr <= 1e-9).all()


def test_seconds_left_bounds_the_end_only_where_a_time_budget_does() -> None:
    assert dv.MaxTime(10).seconds_left(3) == 7
    assert dv.MaxTime(10).seconds_left(12) == 0
    assert (dv.MaxTime(10) | dv.MaxSamples(5)).seconds_left(3) == 7
    assert (dv.MaxTime(10) | dv.MaxTime(4)).seconds_left(3) == 1
    # both must hold: a sample budget may end it later than the clock
    assert (dv.MaxTime(10) & dv.MaxSamples(5)).seconds_left(3) is None
    assert (dv.MaxTime(10) & dv.MaxTime(20)).seconds_left(3) == 17
    assert (~dv.MaxTime(10)).seconds_left(3) is None
    assert dv.MaxSamples(5).seconds_left(3) is None
