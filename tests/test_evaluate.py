"""Noisy-label detection, removal/addition curves (retraining on Dask), comparisons."""

from __future__ import annotations

import time

import numpy as np
import pytest
from distributed import Client
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score

import daskval as dv
from daskval import datasets as ds
from daskval import evaluate as ev
from daskval.result import ValuationResult


@pytest.fixture(scope="module")
def noisy() -> ds.ExperimentData:
    data = ds.load("breast_cancer", train_size=80, valid_size=80, test_size=200)
    return ds.add_label_noise(data, 0.2, random_state=0)


# -- 2-means and detection scores ------------------------------------------------
def brute_force_low_cluster(values: np.ndarray) -> np.ndarray:
    """Try every assignment consistent with a threshold, by direct SSE."""
    best, best_mask = np.inf, np.zeros(len(values), bool)
    for t in np.unique(values)[:-1]:
        mask = values <= t
        sse = ((values[mask] - values[mask].mean()) ** 2).sum() + (
            (values[~mask] - values[~mask].mean()) ** 2
        ).sum()
        if sse < best - 1e-12:
            best, best_mask = sse, mask
    return best_mask


@pytest.mark.parametrize("seed", range(20))
def test_low_cluster_is_the_exact_2_means_split(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [rng.normal(0, 1, rng.integers(1, 15)), rng.normal(3, 2, rng.integers(1, 15))]
    )
    values = np.round(values, 1)  # ties
    np.testing.assert_array_equal(
        ev.low_cluster(values), brute_force_low_cluster(values)
    )


def test_low_cluster_of_equal_values_is_empty() -> None:
    assert not ev.low_cluster(np.ones(5)).any()


def test_detection_scores_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random(50) < 0.3
    values = rng.normal(size=50) - 1.5 * truth
    scores = ev.detection_scores(values, np.flatnonzero(truth))
    flagged = ev.low_cluster(values)
    assert scores.f1 == pytest.approx(f1_score(truth, flagged))
    assert scores.auroc == pytest.approx(roc_auc_score(truth, -values))
    assert scores.n_flagged == flagged.sum()
    assert scores.n_corrupted == truth.sum()
    # a mask gives the same as indices
    assert ev.detection_scores(values, truth) == scores


def test_perfect_and_reversed_values() -> None:
    truth = np.zeros(20, bool)
    truth[:4] = True
    perfect = ev.detection_scores(np.where(truth, 0.0, 1.0), truth)
    assert (perfect.f1, perfect.precision, perfect.recall, perfect.auroc) == (
        1.0,
        1.0,
        1.0,
        1.0,
    )
    reversed_ = ev.detection_scores(np.where(truth, 1.0, 0.0), truth)
    assert reversed_.f1 == 0.0
    assert reversed_.auroc == 0.0


def test_a_sorted_result_is_read_in_player_order() -> None:
    values = np.array([0.1, 0.9, 0.2, 0.8, 0.7])
    result = ValuationResult(values, np.zeros(5), np.ones(5, int))
    unsorted = ev.detection_scores(result, [0, 2])
    assert ev.detection_scores(result.sort(descending=True), [0, 2]) == unsorted
    assert unsorted.f1 == 1.0


def test_random_baseline_is_near_chance() -> None:
    truth = np.zeros(1000, bool)
    truth[:200] = True
    scores = ev.detection_scores(ev.random_values(1000, seed=1), truth)
    assert scores.auroc == pytest.approx(0.5, abs=0.06)
    assert scores.f1 < 0.36  # precision ~0.2 at any split


@pytest.mark.parametrize(
    ("values", "corrupted", "message"),
    [
        ([0.1, np.nan, 0.3], [0], "1 NaN or infinite"),
        ([[0.1, 0.2]], [0], "one value per player"),
        ([0.1, 0.2, 0.3], [], "some but not all"),
        ([0.1, 0.2, 0.3], [0, 1, 2], "some but not all"),
        ([0.1, 0.2, 0.3], [5], "outside"),
        ([0.1, 0.2, 0.3], [True, False], "one entry per player"),
    ],
)
def test_detection_bad_input(values: object, corrupted: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ev.detection_scores(values, corrupted)


# -- retraining on the cluster -----------------------------------------------------
def test_retrain_scores_equal_a_plain_loop(
    noisy: ds.ExperimentData, client: Client, client1: Client
) -> None:
    model = ev.make_model("logistic", "classification")
    rng = np.random.default_rng(0)
    subsets = [rng.choice(noisy.n_train, size=k, replace=False) for k in (30, 50, 80)]
    subsets.append(subsets[0][::-1])  # the same set twice: fitted once
    expected = [
        clone(model)
        .fit(noisy.x_train[np.sort(s)], noisy.y_train[np.sort(s)])
        .score(noisy.x_test, noisy.y_test)
        for s in subsets
    ]
    for c in (client, client1):
        scores = ev.retrain_scores(subsets, noisy, model, client=c)
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)


def test_removal_curves_find_the_noise(
    noisy: ds.ExperimentData, client: Client
) -> None:
    """Values that rank the flipped labels lowest: removing the lowest first
    removes the noise (the held-out score rises); removing the highest first
    removes clean points (it falls)."""
    oracle = np.where(noisy.is_corrupted, 0.0, 1.0) + 1e-3 * np.arange(noisy.n_train)
    fractions = [0.0, 0.2, 0.4]
    model = ev.make_model("logistic", "classification")
    high, low = ev.removal_curves(
        {"oracle": oracle}, noisy, model, fractions=fractions, client=client
    )
    assert (high.order, low.order) == ("high", "low")
    np.testing.assert_array_equal(high.n_points, [80, 64, 48])
    assert high.scores[0] == low.scores[0]  # nothing removed yet
    assert low.scores[1] > low.scores[0]  # the 16 flipped labels are gone
    assert high.scores[2] < low.scores[2]
    assert high.area() < low.area()
    frame = ev.curves_frame([high, low])
    assert list(frame.columns) == [
        "method",
        "kind",
        "order",
        "fraction",
        "n_points",
        "score",
    ]
    assert len(frame) == 6


def test_addition_curve_counts_points(noisy: ds.ExperimentData, client: Client) -> None:
    values = np.arange(noisy.n_train, dtype=float)
    (curve,) = ev.addition_curves(
        values,
        noisy,
        ev.make_model("tree", "classification"),
        fractions=[0.25, 1.0],
        orders="high",
        client=client,
    )
    assert curve.kind == "addition"
    np.testing.assert_array_equal(curve.n_points, [20, 80])
    assert ((0 <= curve.scores) & (curve.scores <= 1)).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fractions": [0.0, 1.0]}, ValueError, "below 1"),
        ({"fractions": []}, ValueError, "non-empty"),
        ({"orders": "middle"}, ValueError, "orders must be"),
        ({"values": {"a": np.ones(3)}}, ValueError, "have 3 entries"),
        ({"values": {}}, ValueError, "at least one method"),
        ({"data": "data"}, TypeError, "ExperimentData"),
    ],
)
def test_curve_bad_input_fails_before_any_cluster_work(
    noisy: ds.ExperimentData, kwargs: dict, error: type, message: str
) -> None:
    args = {"values": np.ones(noisy.n_train), "data": noisy, **kwargs}
    began = time.monotonic()
    with pytest.raises(error, match=message):
        ev.removal_curves(
            args.pop("values"), args.pop("data"), LogisticRegression(), **args
        )
    assert time.monotonic() - began < 2


# -- methods by name and the comparison ------------------------------------------
def test_every_method_builds_for_classification(noisy: ds.ExperimentData) -> None:
    model = ev.make_model("logistic", "classification")
    for method, spec in ev.METHODS.items():
        if spec.regression_only:
            continue
        valuation = ev.make_valuation(method, noisy.dataset(), model, budget=100)
        assert valuation.utility.n == noisy.n_train


def test_models_and_methods_by_name_refuse_unknowns() -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        ev.make_model("svm", "classification")
    with pytest.raises(ValueError, match="does not do regression"):
        ev.make_model("logistic", "regression")
    with pytest.raises(ValueError, match="method must be one of"):
        ev.check_method("shapely", "classification")
    with pytest.raises(ValueError, match="classifiers only"):
        ev.check_method("knn-shapley", "regression")
    with pytest.raises(ValueError, match="regression targets only"):
        ev.check_method("knn-regression-shapley", "classification")


def test_the_knn_family_builds_by_name() -> None:
    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(20, 3)), rng.normal(size=(5, 3))
    target = dv.Dataset(x, rng.normal(size=20), x_test, rng.normal(size=5))
    labels = dv.Dataset(x, rng.integers(0, 2, 20), x_test, rng.integers(0, 2, 5))
    for name, data, kind in [
        ("knn-regression-shapley", target, dv.KNNRegressionShapleyValuation),
        ("soft-knn-shapley", labels, dv.SoftLabelKNNShapleyValuation),
    ]:
        assert ev.check_method(
            name, "regression" if data is target else "classification"
        )
        assert isinstance(ev.make_valuation(name, data, None, budget=1), kind)


def test_compare_methods_ranks_against_the_random_baseline(
    noisy: ds.ExperimentData, client: Client
) -> None:
    comparison = ev.compare_methods(
        noisy,
        ["knn-shapley", "data-oob"],
        budget=150,
        client=client,
        curves=True,
        curve_fractions=[0.0, 0.25],
    )
    table = comparison.table
    assert set(table.index) == {"knn-shapley", "data-oob", "random"}
    ranks = list(zip(table["f1"], table["auroc"], strict=True))
    assert ranks == sorted(ranks, reverse=True)
    for method in ("knn-shapley", "data-oob"):
        assert table.loc[method, "auroc"] > table.loc["random", "auroc"] + 0.2
    assert len(comparison.curves) == 3
    assert set(comparison.results) == set(table.index)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"methods": []}, ValueError, "non-empty list"),
        ({"methods": "loo"}, ValueError, "non-empty list"),
        ({"methods": ["nope"]}, ValueError, "method must be one of"),
        ({"methods": ["loo"], "budget": 0}, ValueError, "budget"),
    ],
)
def test_compare_bad_input(
    noisy: ds.ExperimentData, kwargs: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        ev.compare_methods(noisy, **kwargs)


def test_compare_needs_corrupted_points() -> None:
    clean = ds.load("iris")
    with pytest.raises(ValueError, match="no corrupted points"):
        ev.compare_methods(clean, ["loo"])


def test_a_method_without_values_for_some_points_gets_nan_scores(
    noisy: ds.ExperimentData, client: Client
) -> None:
    """One bootstrap leaves most points without an out-of-bag value: the row
    says so instead of failing the whole comparison."""
    comparison = ev.compare_methods(
        noisy,
        ["data-oob", "loo"],
        budget=1,
        client=client,
        curves=True,
        curve_fractions=[0.0, 0.5],
    )
    table = comparison.table
    assert np.isnan(table.loc["data-oob", "f1"])
    assert "NaN" in table.loc["data-oob", "note"]
    assert table.index[-1] == "data-oob"  # NaN ranks last
    assert table.loc["loo", "note"] == ""
    assert {c.method for c in comparison.curves} == {"loo", "random"}


def test_regression_comparison(client: Client) -> None:
    data = ds.load("diabetes", train_size=80, valid_size=80, test_size=80)
    data = ds.add_label_noise(data, 0.2, scale=3.0, random_state=0)
    table = ev.compare_methods(data, ["data-oob"], budget=100, client=client).table
    # shifted targets fit badly out of bag (the baseline is ~0.5 +- 0.08 here)
    assert table.loc["data-oob", "auroc"] >= 0.7, table
    assert table.loc["data-oob", "auroc"] > table.loc["random", "auroc"], table
