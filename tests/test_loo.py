"""Leave-one-out values against u(N) - u(N minus i) computed directly here."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from distributed import Client
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import daskval as dv
from daskval.games import AdditiveGame, AirportGame, Game, GlovesGame


def loo_on_cluster(utility: dv.Utility, client: Client) -> dv.ValuationResult:
    result = dv.LOOValuation(utility).fit(client=client).result_
    assert result is not None
    assert result.status == "completed"
    assert result.n_samples == utility.n
    assert result.n_evaluations == utility.n + 1  # u(N) once, then each u(N - i)
    np.testing.assert_array_equal(result.counts, 1)
    np.testing.assert_array_equal(result.stderr, 0.0)
    return result


def direct_score(model: Any, scoring: str, x: Any, y: Any, data: dv.Dataset) -> float:
    """A fresh clone fitted on (x, y), scored on the dataset's scoring split."""
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = clone(model).fit(x, y)
        return float(get_scorer(scoring)(fitted, data.x_test, data.y_test))


def direct_loo(
    model: Any, scoring: str, data: dv.Dataset, groups: np.ndarray | None = None
) -> np.ndarray:
    """u(N) - u(N minus i) by plain scikit-learn, for each row or group."""
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    labels = np.arange(len(y)) if groups is None else groups
    full = direct_score(model, scoring, x, y, data)
    values = []
    for label in np.unique(labels):
        keep = labels != label
        values.append(full - direct_score(model, scoring, x[keep], y[keep], data))
    return np.array(values)


def breast_cancer_rows(n_train: int) -> tuple[np.ndarray, ...]:
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(4).permutation(len(y))
    train, test = order[:n_train], order[n_train : n_train + 150]
    y_train = y[train].copy()
    y_train[:3] = 1 - y_train[:3]  # a few flipped labels: values of both signs
    return x[train], y_train, x[test], y[test]


def test_loo_of_a_classifier(client: Client) -> None:
    data = dv.Dataset(*breast_cancer_rows(14))
    model = make_pipeline(StandardScaler(), LogisticRegression())
    result = loo_on_cluster(dv.ModelUtility(model, data, scoring="accuracy"), client)
    expected = direct_loo(model, "accuracy", data)
    assert np.ptp(expected) > 0  # not all zero: the check can fail
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-12)


def test_loo_of_a_regressor(client: Client) -> None:
    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(8).permutation(len(y))
    train, test = order[:25], order[25:125]
    data = dv.Dataset(x[train], y[train], x[test], y[test])
    model = LinearRegression()
    utility = dv.ModelUtility(model, data, scoring="neg_mean_squared_error")
    result = loo_on_cluster(utility, client)
    expected = direct_loo(model, "neg_mean_squared_error", data)
    assert np.ptp(expected) > 0
    # scores are MSEs of ~3e3: atol=1e-9 is ~3e-13 of them
    np.testing.assert_allclose(result.values, expected, rtol=1e-12, atol=1e-9)


def test_loo_of_groups(client: Client) -> None:
    x_train, y_train, x_test, y_test = breast_cancer_rows(20)
    groups = np.repeat(["a", "b", "c", "d", "e"], 4)
    np.random.default_rng(1).shuffle(groups)
    data = dv.Dataset(x_train, y_train, x_test, y_test, groups=groups)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    result = loo_on_cluster(dv.ModelUtility(model, data, scoring="accuracy"), client)
    expected = direct_loo(model, "accuracy", data, groups=groups)
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-12)
    assert list(result.names) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("game", "closed_form"),
    [
        # additive: every marginal is the player's weight
        (
            AdditiveGame([0.5, -1.0, 2.25, 0.0, 3.0], offset=2.0),
            [0.5, -1.0, 2.25, 0, 3],
        ),
        # airport: only the most expensive runway's user matters, by 21 - 13
        (AirportGame([3.0, 21.0, 1.0, 13.0, 8.0]), [0, 8, 0, 0, 0]),
        # gloves: 2 left, 3 right; losing a left glove loses a pair
        (GlovesGame(2, 3), [1, 1, 0, 0, 0]),
    ],
    ids=repr,
)
def test_loo_of_games(game: Game, closed_form: list[float], client: Client) -> None:
    result = loo_on_cluster(game, client)
    everyone = np.arange(game.n)
    direct = [game(everyone) - game(np.delete(everyone, i)) for i in everyone]
    np.testing.assert_allclose(direct, closed_form, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.values, direct, rtol=0, atol=1e-12)
