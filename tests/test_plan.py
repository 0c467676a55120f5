"""Plans travel in every task: their pickles stay small at any n, and a plan
rebuilt from its pickle (its derived tables recomputed) runs the same samples."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np
import pytest

import daskval as dv
from daskval.games import AdditiveGame
from daskval.plan import Plan, derived, evaluate_range

STOP = dv.MaxSamples(10)

VALUATIONS: dict[str, Callable[[dv.Utility], dv.Valuation]] = {
    "permutation-shapley": lambda u: dv.ShapleyValuation(u, stop=STOP),
    "permutation-beta": lambda u: dv.BetaShapleyValuation(u, 4, 1, stop=STOP),
    "msr-banzhaf": lambda u: dv.BanzhafValuation(u, sampler=dv.MSRSampler(), stop=STOP),
    "msr-weighted-banzhaf": lambda u: dv.WeightedBanzhafValuation(
        u, 0.3, sampler=dv.MSRSampler(0.3), stop=STOP
    ),
    "stratified-shapley": lambda u: dv.ShapleyValuation(
        u, sampler=dv.StratifiedSampler(), stop=STOP
    ),
    "group-testing": lambda u: dv.GroupTestingShapleyValuation(
        u, n_samples=10, epsilon=0.5
    ),
}


def _plan(name: str, n: int) -> tuple[Plan, AdditiveGame]:
    game = AdditiveGame(np.linspace(-1.0, 1.0, n))
    plan = VALUATIONS[name](game).make_plan()
    if plan.anchors():
        plan.bind_anchors([game(a) for a in plan.anchors()])
    return plan, game


@pytest.mark.parametrize("name", list(VALUATIONS))
def test_a_plan_pickles_small_at_a_large_n(name: str) -> None:
    plan, _ = _plan(name, 100_000)
    tables = [
        getattr(plan, attr)  # built on the client too, as a run does
        for klass in type(plan).__mro__
        for attr, value in vars(klass).items()
        if isinstance(value, derived)
    ]
    assert tables
    # the per-size tables (O(n) floats, megabytes here) are not in the pickle
    assert len(pickle.dumps(tables)) > 500_000
    assert len(pickle.dumps(plan)) < 4096


@pytest.mark.parametrize("name", list(VALUATIONS))
def test_a_plan_from_its_pickle_runs_the_same_samples(name: str) -> None:
    plan, game = _plan(name, 40)
    original = evaluate_range(plan, game, 0, 5)
    copy = pickle.loads(pickle.dumps(plan))
    again = evaluate_range(copy, game, 0, 5)
    assert original.moments.keys() == again.moments.keys()
    for key, statistic in original.moments.items():
        assert pickle.dumps(statistic) == pickle.dumps(again.moments[key])


def test_plans_of_different_runs_never_share_derived_tables() -> None:
    shapley, _ = _plan("permutation-shapley", 30)
    beta, _ = _plan("permutation-beta", 30)
    # both rebuilt in this process, as on one worker
    shapley_copy = pickle.loads(pickle.dumps(shapley))
    beta_copy = pickle.loads(pickle.dumps(beta))
    np.testing.assert_array_equal(shapley_copy.factors, shapley.factors)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(beta_copy.factors, beta.factors)  # type: ignore[attr-defined]
    assert not np.array_equal(shapley_copy.factors, beta_copy.factors)
