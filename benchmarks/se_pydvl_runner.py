"""pyDVL 0.10's estimators over a tabulated game, at fixed budgets of utility calls.

Runs in pyDVL's own environment (numpy<2; setup_pydvl_venv.sh) inside
``joblib.parallel_config(n_jobs=1)``, so batches are evaluated one at a time
as pyDVL consumes them. The utility is a ``UtilityBase`` that reads the
table; the budget is a ``StoppingCriterion`` that stops before the next batch
could take the calls past B (a batch's calls are the largest increment seen
between two checks: one permutation, one coalition pair, ...); with
``--unit distinct``, past B distinct coalitions (as with a utility cache).
pyDVL asks for u(empty) at the start of every permutation; it is counted once
(it costs no fit in a model utility). Finite samplers (Owen) are sized to the budget.

Run by sample_efficiency.py; imports pyDVL, numpy and the harness's
tabulated module, never daskval.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from tabulated import TableGame, emit_runs, run_table, runner_arguments
from workloads import versions

warnings.filterwarnings("ignore")

from joblib import parallel_config  # noqa: E402
from pydvl.valuation import (  # noqa: E402
    AntitheticOwenSampler,
    AntitheticPermutationSampler,
    AntitheticSampler,
    BanzhafValuation,
    Dataset,
    GridOwenStrategy,
    MSRBanzhafValuation,
    MSRSampler,
    OwenSampler,
    PermutationSampler,
    ShapleyValuation,
    Status,
    StratifiedShapleyValuation,
    UniformSampler,
)
from pydvl.valuation.stopping import StoppingCriterion  # noqa: E402
from pydvl.valuation.utility.base import UtilityBase  # noqa: E402

OWEN_INNER = 2


class TableUtility(UtilityBase):
    """pyDVL utility reading a :class:`TableGame` (shallow copies share it)."""

    def __init__(self, game: TableGame) -> None:
        self.game = game

    def __call__(self, sample: Any) -> float:
        if sample is None:
            return self.game.by_mask(0)
        return self.game(sample.subset)


class CallBudget(StoppingCriterion):
    """Stop when the next batch could take the game's calls past ``budget``.

    ``unit="distinct"`` counts distinct coalitions instead (what pyDVL would
    fit with a cache of its utility).
    """

    def __init__(self, game: TableGame, budget: int, unit: str = "calls") -> None:
        super().__init__()
        self.game, self.budget, self.unit = game, budget, unit
        self.last = self.step = 0

    def _check(self, result: Any) -> Status:
        calls = self.game.calls if self.unit == "calls" else len(self.game.seen)
        self.step, self.last = max(self.step, calls - self.last), calls
        if calls + self.step > self.budget:
            self._converged = np.full_like(result.indices, True, dtype=bool)
            return Status.Converged
        return Status.Pending


# builder(utility, stop, seed, n, budget) -> a pyDVL valuation
Builder = Callable[[TableUtility, CallBudget, int, int, int], Any]


def _owen_outer(n: int, budget: int) -> int:
    # each (player, q, inner sample) costs two calls
    return max(2, budget // (2 * n * OWEN_INNER))


def estimators() -> list[tuple[str, str, Builder]]:
    """(name, semivalue, builder) of every pyDVL estimator benchmarked."""
    return [
        (
            "permutation",
            "shapley",
            lambda u, c, s, n, b: ShapleyValuation(u, PermutationSampler(seed=s), c),
        ),
        (
            "permutation antithetic",
            "shapley",
            lambda u, c, s, n, b: ShapleyValuation(
                u, AntitheticPermutationSampler(seed=s), c
            ),
        ),
        (
            "uniform",
            "shapley",
            lambda u, c, s, n, b: ShapleyValuation(u, UniformSampler(seed=s), c),
        ),
        (
            "antithetic",
            "shapley",
            lambda u, c, s, n, b: ShapleyValuation(u, AntitheticSampler(seed=s), c),
        ),
        (
            "msr",
            "shapley",
            lambda u, c, s, n, b: ShapleyValuation(u, MSRSampler(seed=s), c),
        ),
        (
            "stratified (VRDS)",
            "shapley",
            lambda u, c, s, n, b: StratifiedShapleyValuation(u, c, seed=s),
        ),
        (
            "owen",
            "shapley",
            lambda u, c, s, n, b: ShapleyValuation(
                u,
                OwenSampler(GridOwenStrategy(_owen_outer(n, b)), OWEN_INNER, seed=s),
                c,
            ),
        ),
        (
            "owen antithetic",
            "shapley",
            lambda u, c, s, n, b: ShapleyValuation(
                u,
                AntitheticOwenSampler(
                    GridOwenStrategy(_owen_outer(n, b)), OWEN_INNER, seed=s
                ),
                c,
            ),
        ),
        (
            "msr",
            "banzhaf",
            lambda u, c, s, n, b: MSRBanzhafValuation(u, c, batch_size=1, seed=s),
        ),
        (
            "uniform",
            "banzhaf",
            lambda u, c, s, n, b: BanzhafValuation(u, UniformSampler(seed=s), c),
        ),
        (
            "antithetic",
            "banzhaf",
            lambda u, c, s, n, b: BanzhafValuation(u, AntitheticSampler(seed=s), c),
        ),
        (
            "permutation",
            "banzhaf",
            lambda u, c, s, n, b: BanzhafValuation(u, PermutationSampler(seed=s), c),
        ),
    ]


def run_one(
    spec: tuple[Builder, str], table: np.ndarray, budget: int, seed: int
) -> tuple[np.ndarray, int, int]:
    """One estimate: values, calls spent, distinct coalitions."""
    builder, unit = spec
    game = TableGame(table)
    n = game.n
    data = Dataset(np.arange(n, dtype=float).reshape(-1, 1), np.zeros(n))
    stop = CallBudget(game, budget, unit)
    with parallel_config(n_jobs=1):
        valuation = builder(TableUtility(game), stop, seed, n, budget)
        valuation.fit(data)
    result = valuation.result
    values = np.zeros(n)
    values[np.asarray(result.indices, dtype=int)] = result.values
    return values, game.calls, len(game.seen)


def main() -> None:
    """Run the estimators and print their values."""
    args = runner_arguments(__doc__.splitlines()[0]).parse_args()
    specs = [(name, sv, (builder, args.unit)) for name, sv, builder in estimators()]
    runs, skipped = run_table(specs, args, run_one)
    emit_runs("pydvl", runs, skipped, versions("pydvl", "numpy", "joblib"))


if __name__ == "__main__":
    main()
