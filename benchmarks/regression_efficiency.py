"""Sample efficiency of daskval's regression estimators on the wine12 utility.

The utility of ``shared/notes/benchmarks.md`` ("Sample efficiency"): scikit-learn's
wine data, 12 training points drawn with
``np.random.default_rng(5).choice(len(x), 12, replace=False)``, the rest as the
scoring split, ``LogisticRegression(max_iter=2000)``, accuracy, 0 for a failed
fit or the empty set. All 4096 utilities are tabulated once (cached), so
estimators are compared on utility calls, not fit time. The budget ``B``
counts every call, the anchors u(empty) and u(N) included.

Prints the RMSE over players against the exact values, mean over 20 seeds, for
Kernel SHAP (paired, border on/off; unpaired; 2-additive) and Banzhaf
regression (paired; 2-additive), drawn without replacement (the default) and
with replacement, next to the best figures of the notes (shapiq / pyDVL). With
``--seeds`` above 20 it also prints the standard error of each mean.

Run: ``python benchmarks/regression_efficiency.py [--seeds 20] [--cache PATH]``
"""

from __future__ import annotations

import argparse
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np

from daskval.methods.regression import RegressionSampler, make_regression_plan
from daskval.plan import evaluate_anchors, evaluate_range
from daskval.utility import FunctionUtility

BUDGETS = (100, 300, 1000, 3000)
N = 12
# best estimators of the notes' table, per budget
NOTES = {
    "shapley": (2.3e-2, 1.1e-2, 3.6e-3, 9.0e-4),
    "banzhaf": (2.5e-2, 1.4e-2, 6.7e-3, 2.8e-3),
}


def tabulate() -> np.ndarray:
    """u(S) for every bitmask S of the 12 wine players (4096 fits)."""
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression

    x, y = load_wine(return_X_y=True)
    train = np.random.default_rng(5).choice(len(x), N, replace=False)
    test = np.setdiff1d(np.arange(len(x)), train)
    table = np.zeros(1 << N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mask in range(1, 1 << N):
            members = [i for i in range(N) if mask >> i & 1]
            try:
                model = LogisticRegression(max_iter=2000)
                model.fit(x[train][members], y[train][members])
            except ValueError:  # a single class among the members
                continue
            table[mask] = model.score(x[test], y[test])
    return table


def load_table(path: Path) -> np.ndarray:
    if path.exists():
        return np.load(path)
    table = tabulate()
    np.save(path, table)
    return table


def exact_values(table: np.ndarray, kind: str) -> np.ndarray:
    """Shapley or Banzhaf values by summing over all subsets."""
    masks = np.arange(1 << N)
    sizes = np.array([bin(m).count("1") for m in masks])
    values = np.empty(N)
    for i in range(N):
        without = masks[(masks >> i & 1) == 0]
        gain = table[without | 1 << i] - table[without]
        if kind == "shapley":
            s = sizes[without]
            weight = np.array([1 / (N * math.comb(N - 1, k)) for k in s])
        else:
            weight = np.full(len(without), 1 / 2 ** (N - 1))
        values[i] = np.sum(weight * gain)
    return values


class Table:
    """A picklable lookup utility over the tabulated values."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def __call__(self, players: np.ndarray) -> float:
        return float(self.table[int(np.sum(1 << np.asarray(players, np.int64)))])


def estimate(
    utility: FunctionUtility,
    kind: str,
    sampler: RegressionSampler,
    budget: int,
    seed: int,
) -> np.ndarray:
    """One run of ``budget`` utility calls (anchors included)."""
    per_sample = 2 if sampler.paired else 1
    samples = (budget - 2) // per_sample
    plan = make_regression_plan(kind, N, seed, sampler, sample_cap=samples)
    anchors, _, _ = evaluate_anchors(plan, utility)
    plan.bind_anchors(anchors)
    limit = plan.sample_limit()
    samples = samples if limit is None else min(samples, limit)
    partial = evaluate_range(plan, utility, 0, samples)
    return plan.estimate(partial.moments)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "daskval-wine12-table.npy",
    )
    args = parser.parse_args()
    table = load_table(args.cache)
    utility = FunctionUtility(Table(table), n=N)
    contenders = [
        ("shapley", "Kernel SHAP, paired, border", RegressionSampler()),
        (
            "shapley",
            "Kernel SHAP, paired, border, with replacement",
            RegressionSampler(replace=True),
        ),
        (
            "shapley",
            "Kernel SHAP, paired, no border, with replacement",
            RegressionSampler(border=False, replace=True),
        ),
        ("shapley", "Kernel SHAP, unpaired, border", RegressionSampler(paired=False)),
        (
            "shapley",
            "2-additive Kernel SHAP, paired, border",
            RegressionSampler(order=2),
        ),
        ("banzhaf", "Banzhaf regression, paired", RegressionSampler()),
        (
            "banzhaf",
            "Banzhaf regression, paired, with replacement",
            RegressionSampler(replace=True),
        ),
        (
            "banzhaf",
            "2-additive Banzhaf regression, paired",
            RegressionSampler(order=2),
        ),
    ]
    print(f"wine, n={N}; RMSE over players, mean of {args.seeds} seeds")
    print("| estimator | " + " | ".join(f"B={b}" for b in BUDGETS) + " |")
    print("|---|" + "---|" * len(BUDGETS))
    for kind, label, sampler in contenders:
        exact = exact_values(table, kind)
        cells = []
        for budget in BUDGETS:
            errors = [
                np.sqrt(
                    np.mean((estimate(utility, kind, sampler, budget, s) - exact) ** 2)
                )
                for s in range(args.seeds)
            ]
            cell = f"{np.mean(errors):.2g}"
            if args.seeds > 20:
                cell += f" ± {np.std(errors, ddof=1) / np.sqrt(args.seeds):.1g}"
            cells.append(cell)
        print(f"| {label} | " + " | ".join(cells) + " |")
    for kind, figures in NOTES.items():
        row = " | ".join(f"{f:.2g}" for f in figures)
        print(f"| notes: best {kind} | {row} |")


if __name__ == "__main__":
    main()
