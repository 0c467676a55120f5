"""Dataset: numpy and pandas inputs, from_sklearn, groups, names, fingerprints."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

import daskval as dv


def _arrays(n: int = 12, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    return x, (x[:, 0] > 0).astype(int)


def _frame(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "height": rng.normal(170, 10, size=n),
            "visits": rng.integers(0, 9, size=n).astype("int16"),
            "colour": pd.Categorical(rng.choice(["red", "blue"], size=n)),
            "note": rng.choice(["a", "b"], size=n).astype(object),
        },
        index=np.arange(n)[::-1] * 10,
    )


def test_numpy_inputs() -> None:
    x, y = _arrays()
    data = dv.Dataset(x, y, x[:5], y[:5])
    assert (data.n, data.n_train) == (12, 12)
    assert list(data.names) == [str(i) for i in range(12)]
    assert data.groups is None
    rows = data.rows(np.array([7, 2, 5]))
    assert list(rows) == [2, 5, 7]  # a coalition is a set: always sorted
    x_rows, y_rows = data.train_subset(rows)
    np.testing.assert_array_equal(x_rows, x[[2, 5, 7]])
    np.testing.assert_array_equal(y_rows, y[[2, 5, 7]])
    assert "12 training rows, 5 scoring rows, 3 features" in repr(data)


def test_nested_lists_are_accepted() -> None:
    data = dv.Dataset([[0.0, 1.0], [1.0, 0.0]], [0, 1], [[1.0, 1.0]], [1])
    assert data.n == 2 and data.x_train.dtype == float


def test_pandas_inputs_keep_columns_dtypes_and_drop_the_index() -> None:
    frame = _frame()
    y = pd.Series(np.arange(12) % 2, index=frame.index)
    data = dv.Dataset(frame, y, frame.iloc[:4], y.iloc[:4])
    assert isinstance(data.x_train, pd.DataFrame)
    assert list(data.x_train.columns) == list(frame.columns)
    assert list(data.x_train.dtypes) == list(frame.dtypes)
    assert list(data.x_train.index) == list(range(12))
    assert isinstance(data.y_train, np.ndarray)
    x_rows, y_rows = data.train_subset(data.rows(np.array([3, 0])))
    assert isinstance(x_rows, pd.DataFrame)
    assert list(x_rows["height"]) == list(frame["height"].iloc[[0, 3]])
    assert list(y_rows) == [0, 1]


def test_missing_values_are_refused_unless_allowed() -> None:
    frame = _frame()
    frame["visits"] = frame["visits"].astype("Int64")
    frame.loc[frame.index[2], "visits"] = pd.NA
    frame.loc[frame.index[3], "note"] = None
    y = np.arange(12) % 2
    with pytest.raises(
        ValueError, match=r"x_train contains 2 NaN or missing.*allow_nan"
    ):
        dv.Dataset(frame, y, frame, y)
    data = dv.Dataset(frame, y, frame, y, allow_nan=True)
    assert data.allow_nan
    y_nan = y.astype(float)
    y_nan[4] = np.nan
    with pytest.raises(ValueError, match="y_train contains 1 NaN"):
        dv.Dataset(frame, y_nan, frame, y, allow_nan=True)
    inf = frame.copy()
    inf.loc[inf.index[0], "height"] = np.inf
    with pytest.raises(ValueError, match="x_test contains 1 infinite"):
        dv.Dataset(frame, y, inf, y, allow_nan=True)


def test_missing_values_reach_a_model_that_handles_them() -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x, y = _arrays(40)
    x[::7, 1] = np.nan
    data = dv.Dataset(x, y, x, y, allow_nan=True)
    utility = dv.ModelUtility(
        make_pipeline(SimpleImputer(), LogisticRegression()), data
    )
    stats = dv.EvalStats()
    with utility.context():
        assert utility.evaluate(np.arange(40), stats) > 0.8
    assert stats.n_failed == 0


def test_from_sklearn_numpy_bunch() -> None:
    bunch = load_breast_cancer()
    data = dv.Dataset.from_sklearn(bunch, train_size=0.25, random_state=0)
    assert data.n_train == round(0.25 * len(bunch.target))
    assert data.n_train + len(data.y_test) == len(bunch.target)
    # stratified: class proportions match the full data
    share = np.mean(bunch.target)
    assert np.mean(data.y_train) == pytest.approx(share, abs=0.01)
    again = dv.Dataset.from_sklearn(bunch, train_size=0.25, random_state=0)
    assert again.fingerprint() == data.fingerprint()
    other = dv.Dataset.from_sklearn(bunch, train_size=0.25, random_state=1)
    assert other.fingerprint() != data.fingerprint()


def test_from_sklearn_frame_bunch_keeps_columns() -> None:
    bunch = load_diabetes(as_frame=True)
    data = dv.Dataset.from_sklearn(bunch, train_size=30, random_state=0)
    assert data.n == 30
    assert isinstance(data.x_train, pd.DataFrame)
    assert list(data.x_train.columns) == list(bunch.data.columns)
    assert list(data.x_test.columns) == list(bunch.data.columns)


# --------------------------------------------------------------------------
# the user's row identity names the players (issue 14.3)


def _joined(data: dv.Dataset, frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """A result whose value of each player is its training row's ``column``,
    joined back to ``frame`` by name, as a user would."""
    x = data.x_train
    own = (x[column] if isinstance(x, pd.DataFrame) else x[:, column]).to_numpy()
    result = dv.ValuationResult(
        own, np.zeros(data.n), np.ones(data.n), names=data.names
    )
    return frame.rename(index=str).join(result.to_pandas(), how="inner")


def test_a_dataframe_index_names_the_players() -> None:
    frame = _frame()
    y = pd.Series(np.arange(12) % 2, index=frame.index)
    data = dv.Dataset(frame, y, frame.iloc[:4], y.iloc[:4])
    assert list(data.names) == [str(i) for i in frame.index]
    # a repeated index names nothing: positions
    repeated = frame.set_axis([1] * 12)
    assert list(dv.Dataset(repeated, y.to_numpy(), frame, y).names) == [
        str(i) for i in range(12)
    ]


def test_from_sklearn_names_are_row_numbers_in_the_original_data() -> None:
    bunch = load_breast_cancer()
    data = dv.Dataset.from_sklearn(bunch, train_size=0.25, random_state=0)
    rows = np.array([int(name) for name in data.names])
    assert sorted(rows) != list(rows)  # the split shuffled them
    np.testing.assert_array_equal(data.x_train, bunch.data[rows])
    np.testing.assert_array_equal(data.y_train, bunch.target[rows])
    framed = load_diabetes(as_frame=True)
    data = dv.Dataset.from_sklearn(framed, train_size=30, random_state=0)
    joined = _joined(data, framed.frame, "bmi")
    assert len(joined) == 30
    np.testing.assert_array_equal(joined["value"], joined["bmi"])


def test_from_arrays_splits_and_keeps_the_index_through_the_shuffle() -> None:
    frame = _frame(40)
    y = pd.Series(np.arange(40) % 2, index=frame.index)
    data = dv.Dataset.from_arrays(frame, y, train_size=0.5, random_state=3)
    assert (data.n_train, len(data.y_test)) == (20, 20)
    assert np.mean(data.y_train) == 0.5  # stratified by default
    assert set(data.names) <= {str(i) for i in frame.index}
    joined = _joined(data, frame, "height")
    assert len(joined) == 20
    np.testing.assert_array_equal(joined["value"], joined["height"])
    again = dv.Dataset.from_arrays(frame, y, train_size=0.5, random_state=3)
    assert again.fingerprint() == data.fingerprint()
    x, labels = _arrays(30)
    plain = dv.Dataset.from_arrays(x, labels, train_size=10, stratify=False)
    rows = [int(name) for name in plain.names]
    np.testing.assert_array_equal(plain.x_train, x[rows])


def test_from_pandas_takes_the_target_column() -> None:
    frame = _frame(40).assign(label=np.arange(40) % 2)
    data = dv.Dataset.from_pandas(frame, target="label", random_state=0)
    assert "label" not in data.x_train.columns
    assert data.n_train == 28
    joined = _joined(data, frame, "visits")
    np.testing.assert_array_equal(joined["value"], joined["visits"])
    with pytest.raises(ValueError, match="target='nope' is not a column of frame"):
        dv.Dataset.from_pandas(frame, target="nope")
    with pytest.raises(TypeError, match="frame must be a pandas DataFrame"):
        dv.Dataset.from_pandas(frame.to_numpy(), target="label")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x, y cannot be split"):
        dv.Dataset.from_pandas(frame, target="label", train_size=40)
    with pytest.raises(ValueError, match="y's index does not match x's"):
        dv.Dataset.from_arrays(frame, frame["label"].sample(frac=1, random_state=0))


def test_from_sklearn_refuses_a_non_bunch() -> None:
    with pytest.raises(TypeError, match="bunch must have 'data' and 'target'"):
        dv.Dataset.from_sklearn(np.zeros((3, 3)))


def test_groups_make_the_players() -> None:
    x, y = _arrays(9)
    groups = np.array(["b", "a", "c", "a", "b", "c", "a", "b", "c"])
    data = dv.Dataset(x, y, x, y, groups=groups)
    assert (data.n, data.n_train) == (3, 9)
    assert list(data.names) == ["a", "b", "c"]
    assert list(data.rows(np.array([2, 0]))) == [1, 2, 3, 5, 6, 8]
    assert list(data.rows(np.array([], dtype=int))) == []
    assert "3 groups of 9 training rows" in repr(data)


def test_groups_from_a_series_and_integers_and_custom_names() -> None:
    x, y = _arrays(6)
    groups = pd.Series([10, 20, 10, 30, 20, 30])
    data = dv.Dataset(x, y, x, y, groups=groups, names=["ten", "twenty", "thirty"])
    assert list(data.groups) == [10, 20, 30]
    assert list(data.names) == ["ten", "twenty", "thirty"]
    assert list(data.rows(np.array([1]))) == [1, 4]


def test_names_are_strings() -> None:
    x, y = _arrays(3)
    data = dv.Dataset(x, y, x, y, names=[7, 8, 9])
    assert list(data.names) == ["7", "8", "9"]
    assert all(isinstance(n, str) for n in data.names)


# --------------------------------------------------------------------------
# fingerprints


def _fingerprint(**changes: Any) -> str:
    x, y = _arrays()
    args: dict[str, Any] = {"x_train": x, "y_train": y, "x_test": x, "y_test": y}
    args.update(changes)
    return dv.Dataset(**args).fingerprint()


def test_fingerprint_is_a_function_of_the_content() -> None:
    x, y = _arrays()
    assert _fingerprint() == _fingerprint(x_train=x.copy(), y_train=list(y))
    assert len(_fingerprint()) == 64


def test_fingerprint_changes_with_any_part() -> None:
    x, y = _arrays()
    nudged = x.copy()
    nudged[5, 2] = np.nextafter(nudged[5, 2], np.inf)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    variants = {
        "base": _fingerprint(),
        "x_train value": _fingerprint(x_train=nudged),
        "x_test value": _fingerprint(x_test=nudged),
        "y_train": _fingerprint(y_train=1 - y),
        "y_test": _fingerprint(y_test=1 - y),
        "dtype": _fingerprint(
            x_train=x.astype(np.float32), x_test=x.astype(np.float32)
        ),
        "rows order": _fingerprint(x_train=x[::-1], y_train=y[::-1]),
        "names": _fingerprint(names=[f"p{i}" for i in range(12)]),
        "groups": _fingerprint(groups=np.arange(12) // 3),
        "other groups": _fingerprint(groups=np.arange(12) % 4),
        "frame": _fingerprint(x_train=frame, x_test=frame),
        "columns": _fingerprint(
            x_train=frame.set_axis(["a", "b", "z"], axis=1),
            x_test=frame.set_axis(["a", "b", "z"], axis=1),
        ),
    }
    assert len(set(variants.values())) == len(variants)


def test_fingerprint_survives_pickling() -> None:
    frame = _frame()
    y = np.arange(12) % 2
    data = dv.Dataset(frame, y, frame, y, groups=np.arange(12) % 3)
    clone = pickle.loads(pickle.dumps(data))
    clone._fingerprint = None  # recompute, do not reuse the cached value
    assert clone.fingerprint() == data.fingerprint()
