"""Offline datasets: train/valid/test splits, and noise on the training split only."""

from __future__ import annotations

import numpy as np
import pytest

from daskval import datasets as ds


@pytest.mark.parametrize("name", sorted(ds.DATASETS))
def test_every_dataset_loads_offline_into_three_splits(name: str) -> None:
    data = ds.load(name, train_size=0.5, valid_size=0.2, test_size=0.2)
    task = ds.DATASETS[name][0]
    assert data.task == task
    n_rows = len(data.y_train) + len(data.y_valid) + len(data.y_test)
    total = n_rows / 0.9  # 10% of the rows are left out
    assert len(data.y_train) == pytest.approx(0.5 * total, abs=2)
    assert len(data.y_valid) == pytest.approx(0.2 * total, abs=2)
    for x, y in (
        (data.x_train, data.y_train),
        (data.x_valid, data.y_valid),
        (data.x_test, data.y_test),
    ):
        assert x.shape == (len(y), data.x_train.shape[1])
        assert np.isfinite(x).all()
    assert len(data.corrupted) == 0
    assert len(data.feature_names) == data.x_train.shape[1]
    # no row is in two splits (bundled rows are distinct, up to a few duplicates)
    rows = np.vstack([data.x_train, data.x_valid, data.x_test])
    assert len(np.unique(rows, axis=0)) >= len(rows) - 5
    if task == "classification":
        # stratified: every class is in every split
        classes = set(np.unique(data.y_train))
        assert set(np.unique(data.y_valid)) == classes
        assert set(np.unique(data.y_test)) == classes
    # the utility's split is valid; the test split is held out
    assert data.dataset().x_test is not None
    np.testing.assert_array_equal(data.dataset().y_test, data.y_valid)
    np.testing.assert_array_equal(data.holdout_dataset().y_test, data.y_test)


def test_row_counts_and_seeds() -> None:
    a = ds.load("breast_cancer", train_size=100, valid_size=50, test_size=80)
    b = ds.load("breast_cancer", train_size=100, valid_size=50, test_size=80)
    c = ds.load(
        "breast_cancer", train_size=100, valid_size=50, test_size=80, random_state=1
    )
    assert (len(a.y_train), len(a.y_valid), len(a.y_test)) == (100, 50, 80)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def test_label_flips_change_exactly_the_reported_training_labels() -> None:
    clean = ds.load("wine", train_size=100, valid_size=30, test_size=30)
    noisy = ds.add_label_noise(clean, 0.2, random_state=3)
    changed = np.flatnonzero(noisy.y_train != clean.y_train)
    np.testing.assert_array_equal(changed, noisy.corrupted)
    assert len(noisy.corrupted) == 20
    np.testing.assert_array_equal(noisy.y_train_clean, clean.y_train)
    np.testing.assert_array_equal(noisy.is_corrupted, np.isin(range(100), changed))
    # only the training split is touched
    for name in ("x_train", "x_valid", "y_valid", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(noisy, name), getattr(clean, name))
    # flipped labels are valid classes; the input object is unchanged
    assert set(noisy.y_train) <= set(clean.y_train)
    assert len(clean.corrupted) == 0


def test_regression_label_noise_and_feature_noise() -> None:
    clean = ds.load("diabetes", train_size=200, valid_size=50, test_size=50)
    noisy = ds.add_label_noise(clean, 0.1, scale=2.0, random_state=0)
    changed = np.flatnonzero(noisy.y_train != clean.y_train)
    np.testing.assert_array_equal(changed, noisy.corrupted)
    assert len(changed) == 20
    shift = noisy.y_train[changed] - clean.y_train[changed]
    assert np.std(shift) > np.std(clean.y_train)  # scale 2 of the spread

    both = ds.add_feature_noise(noisy, 0.1, random_state=1)
    moved = np.flatnonzero((both.x_train != clean.x_train).any(axis=1))
    assert len(moved) == 20
    np.testing.assert_array_equal(both.corrupted, np.union1d(changed, moved))
    np.testing.assert_array_equal(both.x_valid, clean.x_valid)
    np.testing.assert_array_equal(both.x_test, clean.x_test)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ds.load("mnist"), ValueError, "name must be one of"),
        (lambda: ds.load("iris", train_size=0), ValueError, "train_size"),
        (lambda: ds.load("iris", valid_size=1.5), ValueError, "valid_size"),
        (lambda: ds.load("iris", test_size="a"), TypeError, "test_size"),
        (lambda: ds.load("iris", train_size=140, test_size=20), ValueError, "has 150"),
        (lambda: ds.load("iris", random_state=-1), ValueError, "random_state"),
        (
            lambda: ds.add_label_noise(ds.load("iris"), 1.0),
            ValueError,
            "fraction must be a number in [0, 1)",
        ),
        (lambda: ds.add_label_noise("data", 0.1), TypeError, "ExperimentData"),
        (
            lambda: ds.add_feature_noise(ds.load("iris"), 0.1, scale=0),
            ValueError,
            "scale must be a positive number",
        ),
    ],
)
def test_bad_input_names_the_argument(call: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("[", r"\[").replace(")", r"\)")):
        call()  # type: ignore[operator]
