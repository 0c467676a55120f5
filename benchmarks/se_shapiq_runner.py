"""shapiq's approximators over a tabulated game, at fixed budgets of utility calls.

Runs in shapiq's own environment (setup_shapiq_venv.sh). A shapiq game is a
callable from a boolean (coalitions, n) matrix to values; ours reads the
table. ``approximator.approximate(B, game)`` spends at most B calls (the
empty and full coalitions included); the first-order values are the
estimates. Budgets are below 2^n, where shapiq would enumerate and be exact.
shapiq draws coalitions without replacement, so its calls are distinct
coalitions and ``--unit distinct`` changes nothing.

Run by sample_efficiency.py; imports shapiq, numpy and the harness's
tabulated module, never daskval.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from tabulated import (
    TableGame,
    bitmasks,
    emit_runs,
    run_table,
    runner_arguments,
)
from workloads import versions

warnings.filterwarnings("ignore")

import shapiq.approximator as sa  # noqa: E402

# builder(n, seed) -> an approximator
Builder = Callable[[int, int], Any]


class ShapiqGame:
    """A shapiq game reading a :class:`TableGame`."""

    def __init__(self, game: TableGame) -> None:
        self.game = game

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        masks = bitmasks(np.atleast_2d(coalitions))
        return np.array([self.game.by_mask(int(m)) for m in masks])


def estimators() -> list[tuple[str, str, Builder]]:
    """(name, semivalue, builder) of every shapiq approximator benchmarked."""
    return [
        (
            "KernelSHAP paired",
            "shapley",
            lambda n, s: sa.KernelSHAP(n, pairing_trick=True, random_state=s),
        ),
        ("KernelSHAP", "shapley", lambda n, s: sa.KernelSHAP(n, random_state=s)),
        (
            "kADD-SHAP k=2",
            "shapley",
            lambda n, s: sa.kADDSHAP(n, max_order=2, random_state=s),
        ),
        (
            "kADD-SHAP k=2 paired",
            "shapley",
            lambda n, s: sa.kADDSHAP(
                n, max_order=2, pairing_trick=True, random_state=s
            ),
        ),
        # shapiq 1.4.1's SVARM stratifies by coalition size (StratifiedSVARM)
        ("SVARM (stratified)", "shapley", lambda n, s: sa.SVARM(n, random_state=s)),
        (
            "UnbiasedKernelSHAP",
            "shapley",
            lambda n, s: sa.UnbiasedKernelSHAP(n, pairing_trick=True, random_state=s),
        ),
        (
            "PermutationSamplingSV",
            "shapley",
            lambda n, s: sa.PermutationSamplingSV(n, random_state=s),
        ),
        (
            "StratifiedSamplingSV",
            "shapley",
            lambda n, s: sa.StratifiedSamplingSV(n, random_state=s),
        ),
        (
            "RegressionFBII order 1",
            "banzhaf",
            lambda n, s: sa.RegressionFBII(n, max_order=1, random_state=s),
        ),
        (
            "RegressionFBII order 1 paired",
            "banzhaf",
            lambda n, s: sa.RegressionFBII(
                n, max_order=1, pairing_trick=True, random_state=s
            ),
        ),
        ("SVARM BV", "banzhaf", lambda n, s: sa.SVARM(n, index="BV", random_state=s)),
    ]


def run_one(
    builder: Builder, table: np.ndarray, budget: int, seed: int
) -> tuple[np.ndarray, int, int]:
    """One estimate: values, calls spent, distinct coalitions."""
    game = TableGame(table)
    if budget >= len(table):
        raise ValueError(f"budget {budget} >= 2^n: shapiq would be exact")
    values = builder(game.n, seed).approximate(budget, ShapiqGame(game))
    first = np.asarray(values.get_n_order_values(1), dtype=float)
    return first, game.calls, len(game.seen)


def main() -> None:
    """Run the approximators and print their values."""
    args = runner_arguments(__doc__.splitlines()[0]).parse_args()
    runs, skipped = run_table(estimators(), args, run_one)
    emit_runs("shapiq", runs, skipped, versions("shapiq", "numpy"))


if __name__ == "__main__":
    main()
