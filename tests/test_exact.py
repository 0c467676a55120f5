"""Exact Shapley values on a real cluster against closed forms and brute force.

The reference is computed here, independently of daskval's weight code: a
table of all 2^n utilities, then the Shapley formula summed over all subsets
with ``math.factorial`` weights.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from distributed import Client
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import get_scorer
from threadpoolctl import threadpool_limits

import daskval as dv
from daskval.games import (
    AdditiveGame,
    AirportGame,
    Game,
    GlovesGame,
    MinerGame,
    SymmetricVotingGame,
    WeightedVotingGame,
)

TOL = 1e-10


def subsets(n: int) -> list[np.ndarray]:
    """All coalitions of n players, indexed by bitmask."""
    return [
        np.array([i for i in range(n) if mask >> i & 1], dtype=np.intp)
        for mask in range(1 << n)
    ]


def shapley_by_subsets(table: list[float], n: int) -> np.ndarray:
    """phi_i = sum over S not containing i of |S|!(n-|S|-1)!/n! (u(S+i) - u(S))."""
    values = np.zeros(n)
    for i in range(n):
        terms = []
        for mask in range(1 << n):
            if mask >> i & 1:
                continue
            size = bin(mask).count("1")
            weight = (
                math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            )
            terms.append(weight * (table[mask | 1 << i] - table[mask]))
        values[i] = math.fsum(terms)
    return values


def exact_on_cluster(
    utility: dv.Utility, client: Client, samples_per_task: int | None = 32
) -> dv.ValuationResult:
    valuation = dv.ShapleyValuation(utility, sampler=dv.ExactSampler())
    result = valuation.fit(client=client, samples_per_task=samples_per_task).result_
    assert result is not None
    assert result.status == "completed"
    assert result.n_samples == 1 << utility.n
    assert result.n_evaluations == 1 << utility.n
    assert result.n_failed == 0 or isinstance(utility, dv.ModelUtility)
    np.testing.assert_array_equal(result.stderr, 0.0)
    return result


GAMES = [
    SymmetricVotingGame(8),
    WeightedVotingGame([1, 2, 3, 5, 8, 13, 21]),
    GlovesGame(1, 1),
    GlovesGame(3, 4),
    GlovesGame(2, 5),
    AdditiveGame([0.5, -1.25, 3.0, 0.0, 2.2, 7.5], offset=-4.0),
    AirportGame([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]),
    MinerGame(7),
]


@pytest.mark.parametrize("game", GAMES, ids=repr)
def test_exact_shapley_of_games(game: Game, client: Client) -> None:
    result = exact_on_cluster(game, client)
    table = [game(s) for s in subsets(game.n)]
    reference = shapley_by_subsets(table, game.n)
    np.testing.assert_allclose(reference, game.shapley_values(), rtol=0, atol=TOL)
    np.testing.assert_allclose(result.values, game.shapley_values(), rtol=0, atol=TOL)
    np.testing.assert_allclose(result.values, reference, rtol=0, atol=TOL)
    assert abs(result.values.sum() - (table[-1] - table[0])) <= TOL


def test_exact_shapley_with_engine_sized_tasks(client: Client) -> None:
    game = AirportGame([1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0])
    result = exact_on_cluster(game, client, samples_per_task=None)
    np.testing.assert_allclose(result.values, game.shapley_values(), rtol=0, atol=TOL)


def direct_table(
    model: Any, data: tuple[np.ndarray, ...], scoring: str, default: float
) -> list[float]:
    """u(S) for every S by plain clone / fit / score; failed fits score default.

    BLAS runs single-threaded: on a busy 2-core machine, multithreaded BLAS on
    these tiny fits is 10-15x slower than one thread.
    """
    x_train, y_train, x_test, y_test = data
    scorer = get_scorer(scoring)
    table = []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for players in subsets(len(x_train)):
            if len(players) == 0:
                table.append(default)
                continue
            try:
                fitted = clone(model).fit(x_train[players], y_train[players])
                table.append(float(scorer(fitted, x_test, y_test)))
            except ValueError:  # e.g. a classifier fitted on a single class
                table.append(default)
    return table


def iris_points() -> tuple[np.ndarray, ...]:
    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(7)
    order = rng.permutation(len(y))
    train = order[:8]
    test = order[8:48]
    assert len(set(y[train])) == 3  # every class among the players
    return x[train], y[train], x[test], y[test]


def diabetes_points() -> tuple[np.ndarray, ...]:
    x, y = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(3)
    order = rng.permutation(len(y))
    return x[order[:8]], y[order[:8]], x[order[8:68]], y[order[8:68]]


@pytest.mark.parametrize(
    ("points", "model", "scoring"),
    [
        (iris_points, LogisticRegression(max_iter=500), "accuracy"),
        (diabetes_points, Ridge(alpha=0.1), "r2"),
    ],
    ids=["iris-logistic-accuracy", "diabetes-ridge-r2"],
)
def test_exact_shapley_of_a_model_utility(
    points: Any, model: Any, scoring: str, client: Client
) -> None:
    data = points()
    utility = dv.ModelUtility(model, dv.Dataset(*data), scoring=scoring, default=0.0)
    result = exact_on_cluster(utility, client)
    table = direct_table(model, data, scoring, default=0.0)
    reference = shapley_by_subsets(table, len(data[0]))
    assert np.ptp(reference) > 0.01  # the players are told apart
    np.testing.assert_allclose(result.values, reference, rtol=0, atol=TOL)
    assert abs(result.values.sum() - (table[-1] - table[0])) <= TOL
