"""Small real utilities tabulated over all 2^n coalitions, and their exact values.

The sample-efficiency benchmark compares estimators on utility *calls*, not
fit time: every utility of a game is computed once, stored as a table indexed
by bitmask (bit ``i`` set = player ``i`` in the coalition), and every
estimator, of every library, reads that table. Exact Shapley and Banzhaf
values come from the same table.

Games (each a fixed, seeded subsample of a scikit-learn bundled dataset; the
players are its training points, the rest of the dataset is the scoring
split; accuracy; 0 for the empty set or a fit that fails, e.g. one class):

- ``wine12``: ``load_wine``, 12 players drawn with
  ``np.random.default_rng(5).choice(len(x), 12, replace=False)``,
  ``LogisticRegression(max_iter=2000)`` on the raw features (as in
  ``shared/notes/benchmarks.md``).
- ``wine6``: the same with 6 players (the smoke test's game).
- ``cancer14``: ``load_breast_cancer``, features standardised once with the
  whole dataset's mean and standard deviation, 14 players drawn with
  ``np.random.default_rng(14).choice(len(x), 14, replace=False)``,
  ``LogisticRegression(max_iter=2000)``.

This module imports only numpy (and scikit-learn to tabulate), so the runners
of every environment (daskval's, pyDVL's numpy<2 one, shapiq's) share it.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BUDGETS",
    "GAMES",
    "RESULT_MARKER",
    "Game",
    "RunRecord",
    "TableGame",
    "bitmask",
    "exact_banzhaf",
    "exact_shapley",
    "load_table",
    "emit_runs",
    "rmse",
    "runner_arguments",
    "table_path",
]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RESULT_MARKER = "SAMPLE-EFFICIENCY "
BUDGETS = (100, 300, 1000, 3000)


@dataclass(frozen=True)
class Game:
    """A tabulated utility: which data, how many players, which draw."""

    name: str
    dataset: str  # "wine" or "breast_cancer"
    n: int
    rng_seed: int
    standardise: bool

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "players": self.n,
            "draw": f"np.random.default_rng({self.rng_seed}).choice(len(x), "
            f"{self.n}, replace=False)",
            "standardised": self.standardise,
            "model": "LogisticRegression(max_iter=2000)",
            "scoring": "accuracy on the rest of the dataset; 0 for empty/failed",
        }


GAMES: dict[str, Game] = {
    "wine12": Game("wine12", "wine", 12, 5, standardise=False),
    # a tiny game for the smoke test (64 fits)
    "wine6": Game("wine6", "wine", 6, 5, standardise=False),
    "cancer14": Game("cancer14", "breast_cancer", 14, 14, standardise=True),
}


def bitmask(players: Any) -> int:
    """The table index of a coalition given as player indices."""
    mask = 0
    for i in players:
        mask |= 1 << int(i)
    return mask


def bitmasks(coalitions: np.ndarray) -> np.ndarray:
    """Table indices of a boolean (coalitions, n) matrix."""
    weights = 1 << np.arange(coalitions.shape[1], dtype=np.int64)
    return np.asarray(coalitions, dtype=np.int64) @ weights


def load_data(game: Game) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` of a game."""
    from sklearn import datasets

    loader = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}
    x, y = loader[game.dataset](return_X_y=True)
    if game.standardise:
        x = (x - x.mean(axis=0)) / x.std(axis=0)
    train = np.random.default_rng(game.rng_seed).choice(len(x), game.n, replace=False)
    test = np.setdiff1d(np.arange(len(x)), train)
    return x[train], y[train], x[test], y[test]


def tabulate(game: Game) -> np.ndarray:
    """u(S) for every bitmask S = 0 .. 2^n - 1 (one fit each)."""
    from sklearn.linear_model import LogisticRegression

    x_train, y_train, x_test, y_test = load_data(game)
    table = np.zeros(1 << game.n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mask in range(1, 1 << game.n):
            members = [i for i in range(game.n) if mask >> i & 1]
            try:
                model = LogisticRegression(max_iter=2000)
                model.fit(x_train[members], y_train[members])
            except ValueError:
                continue  # a single class: scores 0
            table[mask] = model.score(x_test, y_test)
    return table


def table_path(game: Game, directory: Path = RESULTS) -> Path:
    """Where a game's table is cached (benchmarks/results/ is git-ignored)."""
    return directory / f"table-{game.name}.npy"


def load_table(game: Game, directory: Path = RESULTS) -> np.ndarray:
    """The game's table, tabulated and cached on first use."""
    path = table_path(game, directory)
    if path.exists():
        table = np.load(path)
        if table.shape == (1 << game.n,):
            return table
    table = tabulate(game)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, table)
    return table


def _marginal_pairs(n: int, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Bitmasks of every S not containing ``i``, and of S + i."""
    masks = np.arange(1 << n, dtype=np.int64)
    without = masks[(masks >> i & 1) == 0]
    return without, without | (1 << i)


def _sizes(masks: np.ndarray, n: int) -> np.ndarray:
    return sum((masks >> j) & 1 for j in range(n))


def exact_shapley(table: np.ndarray) -> np.ndarray:
    """Shapley values: sum over S not containing i of |S|!(n-|S|-1)!/n! marginals."""
    from math import comb

    n = int(np.log2(len(table)))
    weight = np.array([1.0 / (n * comb(n - 1, k)) for k in range(n)])
    values = np.empty(n)
    for i in range(n):
        without, with_i = _marginal_pairs(n, i)
        values[i] = np.sum(
            weight[_sizes(without, n)] * (table[with_i] - table[without])
        )
    return values


def exact_banzhaf(table: np.ndarray) -> np.ndarray:
    """Banzhaf values: the mean marginal over the 2^(n-1) coalitions without i."""
    n = int(np.log2(len(table)))
    values = np.empty(n)
    for i in range(n):
        without, with_i = _marginal_pairs(n, i)
        values[i] = np.mean(table[with_i] - table[without])
    return values


def rmse(estimate: Any, exact: np.ndarray) -> float:
    """Root mean squared error over players."""
    diff = np.asarray(estimate, dtype=float) - exact
    return float(np.sqrt(np.mean(diff**2)))


class TableGame:
    """u(S) read from a table; counts calls and the distinct coalitions asked for.

    Called with player indices (``players``) or a bitmask (``mask``). The
    empty coalition is counted once however often it is asked for: in a
    model utility it costs no fit, and pyDVL asks for it at the start of
    every permutation.
    """

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.n = int(np.log2(len(table)))
        self.calls = 0
        self.seen: set[int] = set()

    def __call__(self, players: Any) -> float:
        return self.by_mask(bitmask(players))

    def by_mask(self, mask: int) -> float:
        if mask != 0 or 0 not in self.seen:
            self.calls += 1
        self.seen.add(mask)
        return float(self.table[mask])


RunRecord = dict[str, Any]


def runner_arguments(description: str) -> argparse.ArgumentParser:
    """The command line every sample-efficiency runner shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--game", required=True, choices=sorted(GAMES))
    parser.add_argument("--table-dir", type=Path, default=RESULTS)
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--estimators", nargs="*", default=None, help="run only these (by name)"
    )
    parser.add_argument(
        "--unit",
        choices=("calls", "distinct"),
        default="calls",
        help="what the budget counts: utility calls, or distinct coalitions"
        " (the calls a memo of evaluated coalitions lets through)",
    )
    return parser


def run_table(
    estimators: list[tuple[str, str, Any]],
    args: argparse.Namespace,
    run_one: Callable[[Any, np.ndarray, int, int], tuple[Any, int, int]],
) -> tuple[list[RunRecord], list[RunRecord]]:
    """Run every (name, semivalue, spec) at every budget and seed.

    ``run_one(spec, table, budget, seed)`` returns the estimated values, the
    utility calls spent and the distinct coalitions touched; it raises
    ``NotImplementedError`` (or ``ImportError``, ``AttributeError``,
    ``TypeError``) when the estimator is not available, which skips it.
    """
    table = np.load(table_path(GAMES[args.game], args.table_dir))
    runs: list[RunRecord] = []
    skipped: list[RunRecord] = []
    for name, semivalue, spec in estimators:
        if args.estimators and name not in args.estimators:
            continue
        try:
            for budget in args.budgets:
                for seed in range(args.seeds):
                    values, calls, distinct = run_one(spec, table, budget, seed)
                    runs.append(
                        {
                            "estimator": name,
                            "semivalue": semivalue,
                            "budget": budget,
                            "seed": seed,
                            "values": [float(v) for v in values],
                            "calls": int(calls),
                            "distinct": int(distinct),
                        }
                    )
        except (
            NotImplementedError,
            ImportError,
            AttributeError,
            TypeError,
            ValueError,
        ) as exc:
            runs = [r for r in runs if r["estimator"] != name]
            reason = f"{type(exc).__name__}: {exc}"
            skipped.append(
                {"estimator": name, "semivalue": semivalue, "reason": reason}
            )
            print(f"skipped {name}: {reason}", file=sys.stderr)
    return runs, skipped


def emit_runs(
    library: str,
    runs: list[RunRecord],
    skipped: list[RunRecord],
    versions: dict[str, str],
) -> None:
    """Print a runner's results as one marked JSON line."""
    record = {
        "library": library,
        "runs": runs,
        "skipped": skipped,
        "versions": versions,
    }
    sys.stdout.write(RESULT_MARKER + json.dumps(record) + "\n")
    sys.stdout.flush()
