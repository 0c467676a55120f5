"""daskval's estimators over a tabulated game, at fixed budgets of utility calls.

Runs in-process through daskval's plans, with no cluster: the anchors, then
samples ``0 .. k-1`` with ``daskval.plan.evaluate_range``, merged, cut where a
``MaxEvaluations(B)`` budget would cut them (the longest prefix of samples
whose calls, anchors included, stay within B), then ``plan.estimate``. With
``--unit distinct`` the budget counts distinct coalitions instead: what a run
fits with daskval's memo (on by default in ``fit``), which answers repeats. The
values equal a ``.fit()`` of the same valuation with ``stop=MaxEvaluations(B)``
on any cluster (sample ``j`` depends on ``(seed, j)`` only).

Estimators are a table of (name, semivalue, factory); a factory missing from
the installed daskval is skipped with a note. Run by sample_efficiency.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tabulated import TableGame, emit_runs, run_table, runner_arguments
from workloads import versions

import daskval as dv
from daskval.plan import Plan, evaluate_anchors, evaluate_range, initial_partial

# factory(n, seed, budget) -> Plan
Factory = Callable[[int, int, int], Plan]


def _valuation(semivalue: str, sampler: Callable[[], Any]) -> Factory:
    """A factory building ``{Shapley,Banzhaf}Valuation(sampler=...)``'s plan."""

    def factory(n: int, seed: int, budget: int, utility: Any = None) -> Plan:
        cls = dv.ShapleyValuation if semivalue == "shapley" else dv.BanzhafValuation
        stop = dv.MaxEvaluations(budget)
        return cls(utility, sampler=sampler(), stop=stop, seed=seed).make_plan()

    return factory


def _multi(sampler: Callable[[], Any]) -> Factory:
    """Shapley and Banzhaf from one run (SemivalueValuation, both outputs)."""

    def factory(n: int, seed: int, budget: int, utility: Any = None) -> Plan:
        return dv.SemivalueValuation(
            utility,
            [dv.Shapley(), dv.Banzhaf()],
            sampler=sampler(),
            stop=dv.MaxEvaluations(budget),
            seed=seed,
        ).make_plan()

    return factory


def _regression(kind: str, paired: bool, **options: Any) -> Factory:
    """Kernel SHAP / Banzhaf regression with the border trick sized to the budget.

    Through ``{Shapley,Banzhaf}Valuation(sampler=RegressionSampler(...))``
    when the valuations accept it, else through ``make_regression_plan``
    with the sample count the budget allows (what a count budget gives the
    engine up front).
    """

    def factory(n: int, seed: int, budget: int, utility: Any = None) -> Plan:
        from daskval.methods.regression import RegressionSampler, make_regression_plan

        sampler = RegressionSampler(paired=paired, **options)
        try:
            return _valuation(kind, lambda: sampler)(n, seed, budget, utility)
        except TypeError:  # the valuations do not take it (yet)
            samples = (budget - 2) // sampler.max_evaluations_per_sample(n)
            return make_regression_plan(kind, n, seed, sampler, sample_cap=samples)

    return factory


def estimators() -> list[tuple[str, str, Factory]]:
    """(name, semivalue, factory) of every daskval estimator benchmarked."""
    samplers: list[tuple[str, Callable[[], Any]]] = [
        ("permutation", lambda: dv.PermutationSampler()),
        ("permutation antithetic", lambda: dv.PermutationSampler(antithetic=True)),
        ("uniform", lambda: dv.UniformSampler()),
        ("antithetic", lambda: dv.AntitheticSampler()),
        ("stratified", lambda: dv.StratifiedSampler()),
        ("owen n_q=4", lambda: dv.OwenSampler(n_q=4)),
        ("owen n_q=4 antithetic", lambda: dv.OwenSampler(n_q=4, antithetic=True)),
        ("msr", lambda: dv.MSRSampler()),
        ("msr sizes uniform", lambda: dv.MSRSampler(inclusion=None)),
    ]
    table: list[tuple[str, str, Factory]] = []
    for semivalue in ("shapley", "banzhaf"):
        for name, sampler in samplers:
            table.append((name, semivalue, _valuation(semivalue, sampler)))
        table.append(
            ("regression paired", semivalue, _regression(semivalue, paired=True))
        )
        table.append(("regression", semivalue, _regression(semivalue, paired=False)))
        table.append(
            (
                "regression paired, with replacement",
                semivalue,
                _regression(semivalue, paired=True, replace=True),
            )
        )
    return table


def run_plan(
    plan: Plan,
    utility: dv.FunctionUtility,
    game: TableGame,
    budget: int,
    unit: str = "calls",
) -> Any:
    """The merged state of the longest prefix of samples within the budget.

    ``unit="calls"``: utility calls, anchors included (``MaxEvaluations``);
    ``"distinct"``: distinct coalitions (what a run with daskval's memo
    fits). ``game.seen`` ends up holding the coalitions of those samples only.
    """
    values, anchor_stats, _ = evaluate_anchors(plan, utility)
    plan.bind_anchors(values)
    state = initial_partial(plan, anchor_stats)

    def cost(s: Any) -> int:
        return int(s.n_evaluations) if unit == "calls" else len(game.seen)

    start, single = 0, False
    limit, widest = plan.sample_limit(), plan.max_evaluations_per_sample()
    while limit is None or start < limit:
        size = 1 if single else max(1, (budget - cost(state)) // widest)
        if limit is not None:
            size = min(size, limit - start)
        seen = set(game.seen)
        merged = state.merge(evaluate_range(plan, utility, start, start + size))
        if cost(merged) <= budget:
            state, start = merged, start + size
            continue
        game.seen = seen  # forget the samples past the budget
        if size == 1:
            break
        single = True  # near the end: one sample at a time
    return state


def run_one(
    spec: tuple[str, Factory, str], table: np.ndarray, budget: int, seed: int
) -> tuple[np.ndarray, int, int]:
    """One estimate: values, calls spent (anchors included), distinct coalitions."""
    semivalue, factory, unit = spec
    game = TableGame(table)
    utility = dv.FunctionUtility(game, n=game.n)
    plan = factory(game.n, seed, budget, utility)
    state = run_plan(plan, utility, game, budget, unit)
    outputs = plan.estimates(state.moments)
    if outputs is not None and semivalue in outputs:
        values = outputs[semivalue][0]
    else:
        values = plan.estimate(state.moments)[0]
    return values, state.n_evaluations, len(game.seen)


def main() -> None:
    """Run the estimators and print their values."""
    args = runner_arguments(__doc__.splitlines()[0]).parse_args()
    specs = [(name, sv, (sv, f, args.unit)) for name, sv, f in estimators()]
    runs, skipped = run_table(specs, args, run_one)
    emit_runs("daskval", runs, skipped, versions("daskval", "numpy"))


if __name__ == "__main__":
    main()
