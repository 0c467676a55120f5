"""Same seed and budget, same values: whatever the workers, task sizes or order.

Budgets are exact and applied in sample-index order: ``MaxSamples(k)`` holds
the first k samples, ``MaxEvaluations(n)`` the longest prefix of samples whose
utility calls (anchors included) fit in n. Each run is checked against a
sequential computation of the same samples in this process.
"""

from __future__ import annotations

import functools
import time
import zlib
from typing import Any

import numpy as np
import pytest
from distributed import Client

import daskval as dv
from daskval.games import AirportGame, WeightedVotingGame
from daskval.plan import evaluate_range

N_PLAYERS = 8
_VOTING = WeightedVotingGame([2, 3, 4, 5, 6, 7, 8, 9])


def jittery_voting(players: np.ndarray) -> float:
    """A weighted voting game that takes a varying time (0-1 ms) per call.

    The delay depends on the wall clock, so tasks finish in a different
    order from run to run; the value does not.
    """
    time.sleep((time.perf_counter_ns() % 1000) * 1e-6)
    return _VOTING.value(players)


def jittery_utility() -> dv.FunctionUtility:
    return dv.FunctionUtility(jittery_voting, N_PLAYERS)


def local_run(valuation: dv.ShapleyValuation, k: int) -> dict[str, Any]:
    """The first k samples of ``valuation``, evaluated sequentially here."""
    plan = valuation.make_plan()
    utility = valuation.utility
    anchors = plan.anchors()
    plan.bind_anchors([utility(a) for a in anchors])
    partial = evaluate_range(plan, utility, 0, k)
    values, stderr, counts = plan.estimate(partial.moments)
    return {
        "values": values,
        "stderr": stderr,
        "counts": counts,
        "n_samples": k,
        "n_evaluations": len(anchors) + partial.n_evaluations,
    }


def assert_same(result: dv.ValuationResult, expected: dict[str, Any]) -> None:
    assert result.n_samples == expected["n_samples"]
    assert result.n_evaluations == expected["n_evaluations"]
    np.testing.assert_array_equal(result.counts, expected["counts"])
    np.testing.assert_allclose(result.values, expected["values"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.stderr, expected["stderr"], rtol=0, atol=1e-12)


def test_same_values_with_any_workers_and_task_sizes(
    client: Client, client1: Client
) -> None:
    k = 50
    runs = [
        (client, None),
        (client1, None),
        (client, 1),
        (client, 3),
        (client, 7),
        (client1, 3),
    ]
    results = []
    for cluster, samples_per_task in runs:
        valuation = dv.ShapleyValuation(
            jittery_utility(), stop=dv.MaxSamples(k), seed=2024
        )
        valuation.fit(client=cluster, samples_per_task=samples_per_task)
        assert valuation.result_ is not None
        results.append(valuation.result_)
    assert {r.metadata["n_workers"] for r in results} == {1, 2}
    expected = local_run(
        dv.ShapleyValuation(jittery_utility(), stop=dv.MaxSamples(k), seed=2024), k
    )
    for result in results:
        assert_same(result, expected)
    # not vacuous: a different seed gives different values
    other = local_run(
        dv.ShapleyValuation(jittery_utility(), stop=dv.MaxSamples(k), seed=2025), k
    )
    assert np.abs(other["values"] - expected["values"]).max() > 1e-3


TMC = dv.PermutationSampler(truncation=dv.RelativeTruncation(rtol=0.1, burn_in=0.3))


def per_sample_evaluations(valuation: dv.ShapleyValuation, n: int) -> np.ndarray:
    """Utility calls of each of the first n samples, one sample at a time."""
    plan = valuation.make_plan()
    utility = valuation.utility
    plan.bind_anchors([utility(a) for a in plan.anchors()])
    return np.array(
        [evaluate_range(plan, utility, j, j + 1).n_evaluations for j in range(n)]
    )


def tmc_valuation(budget: int) -> dv.ShapleyValuation:
    game = AirportGame([1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0])
    return dv.ShapleyValuation(
        game, sampler=TMC, stop=dv.MaxEvaluations(budget), seed=99
    )


def longest_prefix(limit: int) -> tuple[int, int]:
    """(samples, evaluations) of the longest prefix that fits ``limit``."""
    calls = per_sample_evaluations(tmc_valuation(limit), 200)
    used = 2 + np.concatenate([[0], np.cumsum(calls)])  # u(empty), u(N) first
    k = int(np.searchsorted(used, limit, side="right")) - 1
    assert k < len(calls)  # the 200 samples looked at cover the budget
    assert used[k] <= limit < used[k + 1]
    return k, int(used[k])


@functools.cache
def budget(kind: str) -> int:
    """An evaluation budget: the anchors only, a sample boundary, or inside one."""
    calls = per_sample_evaluations(tmc_valuation(1), 200)
    assert len(set(calls.tolist())) > 2  # truncation makes sample costs vary
    used = 2 + np.cumsum(calls)
    if kind == "anchors-only":
        return 2
    if kind == "boundary":
        return int(used[40])  # exactly the cost of the first 41 samples
    assert kind == "inside"
    assert calls[60] > 1  # so one call short of its end is not a boundary
    return int(used[60]) - 1


@pytest.mark.parametrize(
    ("kind", "samples_per_task"),
    [
        ("inside", 1),
        ("inside", 3),
        ("inside", 7),
        ("inside", None),
        ("boundary", 1),
        ("boundary", None),
        ("anchors-only", None),
    ],
)
def test_evaluation_budget_holds_the_longest_prefix_that_fits(
    kind: str, samples_per_task: int | None, client: Client
) -> None:
    limit = budget(kind)
    k, used = longest_prefix(limit)
    valuation = tmc_valuation(limit)
    result = valuation.fit(client=client, samples_per_task=samples_per_task).result_
    assert result is not None
    assert result.n_samples == k
    assert result.n_evaluations == used <= limit
    if k:
        assert_same(result, local_run(tmc_valuation(limit), k))


def test_evaluation_budget_on_one_worker(client1: Client) -> None:
    limit = budget("inside")
    k, used = longest_prefix(limit)
    result = tmc_valuation(limit).fit(client=client1, samples_per_task=5).result_
    assert result is not None
    assert (result.n_samples, result.n_evaluations) == (k, used)
    assert_same(result, local_run(tmc_valuation(limit), k))


def test_evaluation_budget_with_a_fixed_cost_per_sample(client: Client) -> None:
    game = AirportGame([1.0, 2.0, 3.0, 5.0, 8.0])  # 4 calls per permutation
    valuation = dv.ShapleyValuation(game, stop=dv.MaxEvaluations(2 + 4 * 9 + 3))
    result = valuation.fit(client=client).result_
    assert result is not None
    assert (result.n_samples, result.n_evaluations) == (9, 2 + 4 * 9)


@pytest.mark.parametrize(
    "sampler",
    [dv.PermutationSampler(), dv.PermutationSampler(antithetic=True), TMC],
    ids=["plain", "antithetic", "truncated"],
)
def test_sample_budget_holds_exactly_k_samples(
    sampler: dv.PermutationSampler, client: Client
) -> None:
    k = 37
    valuation = dv.ShapleyValuation(
        jittery_utility(), sampler=sampler, stop=dv.MaxSamples(k), seed=7
    )
    result = valuation.fit(client=client, samples_per_task=4).result_
    assert result is not None
    assert result.n_samples == k
    np.testing.assert_array_equal(result.counts, k)
    expected = local_run(
        dv.ShapleyValuation(
            jittery_utility(), sampler=sampler, stop=dv.MaxSamples(k), seed=7
        ),
        k,
    )
    assert_same(result, expected)
    per_permutation = N_PLAYERS - 1
    if sampler.truncation is None:
        scans = 2 if sampler.antithetic else 1
        assert result.n_evaluations == 2 + k * scans * per_permutation


def test_exact_values_do_not_depend_on_the_cluster(
    client: Client, client1: Client
) -> None:
    runs = [(client, None), (client1, 13), (client, 5)]
    values = [
        dv.ShapleyValuation(jittery_utility(), sampler=dv.ExactSampler())
        .fit(client=cluster, samples_per_task=size)
        .result_.values  # type: ignore[union-attr]
        for cluster, size in runs
    ]
    for v in values:
        np.testing.assert_allclose(v, _VOTING.shapley_values(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(v, values[0], rtol=0, atol=1e-12)


def test_a_randomised_model_gives_the_same_values_on_any_cluster(
    client: Client, client1: Client
) -> None:
    # imported here: workers import this module for jittery_voting, lean is quick
    from sklearn.datasets import load_wine
    from sklearn.ensemble import ExtraTreesClassifier

    x, y = load_wine(return_X_y=True)
    rng = np.random.default_rng(zlib.crc32(b"wine"))
    order = rng.permutation(len(y))
    data = dv.Dataset(x[order[:8]], y[order[:8]], x[order[8:60]], y[order[8:60]])
    model = ExtraTreesClassifier(n_estimators=3)  # random_state set per subset
    results = []
    for cluster, size in [(client, 1), (client1, None)]:
        utility = dv.ModelUtility(model, data, scoring="accuracy", seed=5)
        valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(6), seed=1)
        result = valuation.fit(client=cluster, samples_per_task=size).result_
        assert result is not None
        results.append(result)
    np.testing.assert_allclose(results[0].values, results[1].values, atol=1e-12)
    np.testing.assert_allclose(results[0].stderr, results[1].stderr, atol=1e-12)
    assert results[0].n_evaluations == results[1].n_evaluations == 2 + 6 * 7
    # and u(S) is a function of S: the same subset scores the same twice
    utility = dv.ModelUtility(model, data, scoring="accuracy", seed=5)
    subset = np.array([0, 2, 3, 5, 7])
    assert utility(subset) == utility(subset[::-1])


def test_both_budgets_combined_are_deterministic(client: Client) -> None:
    game = AirportGame([1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0])
    results = []
    for samples_per_task in (1, 7):
        valuation = dv.ShapleyValuation(
            game, sampler=TMC, stop=dv.MaxSamples(30) & dv.MaxEvaluations(150), seed=99
        )
        valuation.fit(client=client, samples_per_task=samples_per_task)
        assert valuation.result_ is not None
        results.append(valuation.result_)
    # "&" ends at the later of the two stops: 30 samples, or the longest
    # prefix whose evaluations fit in 150
    k = results[0].n_samples
    assert k == max(30, longest_prefix(150)[0])
    expected = local_run(
        dv.ShapleyValuation(game, sampler=TMC, stop=dv.MaxSamples(k), seed=99), k
    )
    for result in results:
        assert_same(result, expected)


def test_a_one_player_game_is_refused_by_permutation_sampling(client: Client) -> None:
    # its permutations cost no evaluations: MaxEvaluations(n) would never bind
    # (fit() used to spin forever); the exact sampler gives the value instead
    from daskval.games import AdditiveGame

    game = AdditiveGame([2.0], offset=0.5)
    with pytest.raises(ValueError, match="players"):
        dv.ShapleyValuation(game, stop=dv.MaxEvaluations(10), seed=0)
    valuation = dv.ShapleyValuation(game, sampler=dv.ExactSampler())
    result = valuation.fit(client=client).result_
    assert result is not None
    assert result.values.tolist() == [2.0]
