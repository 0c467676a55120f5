"""Datasets: the training rows being valued and the split that scores them.

A :class:`Dataset` holds a training split (whose rows, or groups of rows, are
the players of the valuation game) and a scoring split on which every model is
evaluated. Arrays may be numpy arrays or pandas objects; pandas column names
and dtypes reach the model unchanged.

Data too large to ship from the client can stay on storage that every worker
reads (an HPC file system): a Dataset made by :meth:`Dataset.from_npz` or
:meth:`Dataset.from_parquet`, or from memory-mapped arrays
(``np.load(path, mmap_mode="r")``, ``np.memmap``), pickles as the paths of its
files, and each worker loads the arrays itself and checks that they still
have the fingerprint the client computed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = ["Dataset"]

ArrayLike = Any  # numpy array, pandas DataFrame/Series, or a nested sequence


def _own(array: np.ndarray, value: Any) -> np.ndarray:
    """``array`` (made from the caller's ``value``), copied when it may share
    the caller's memory: a Dataset caches its fingerprint, so an in-place
    change by the caller afterwards must not reach its arrays. A whole
    memory-mapped file is kept as it is: workers load it from the file and
    check its fingerprint there."""
    if _memmap_source(array) is not None:
        return array
    if array is value or array.base is not None or not array.flags.owndata:
        return array.copy()
    return array


def _as_table(value: ArrayLike, name: str, *, ndim: int) -> np.ndarray | pd.DataFrame:
    """Return features as a 2-D array or DataFrame, or targets as 1-D (our
    own copies, see :func:`_own`)."""
    if value is None:
        raise ValueError(f"{name} is required, got None")
    if isinstance(value, pd.DataFrame):
        if ndim != 2:
            raise ValueError(f"{name} must be one-dimensional, got a DataFrame")
        _check_unique_columns(value, name)
        return value.reset_index(drop=True).copy(deep=True)
    if isinstance(value, pd.Series):
        if ndim == 2:
            raise ValueError(f"{name} must be two-dimensional, got a Series")
        return value.to_numpy(copy=True)
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be converted to an array: {exc}") from exc
    if array.ndim != ndim:
        shape = "(n_samples, n_features)" if ndim == 2 else "(n_samples,)"
        raise ValueError(f"{name} must have shape {shape}, got shape {array.shape}")
    if ndim == 2 and array.dtype.kind not in "biufc":
        raise TypeError(
            f"{name} must hold numbers, got an array of dtype {array.dtype}; "
            "use a pandas DataFrame for text, categorical or mixed columns"
        )
    return _own(array, value)


def _check_unique_columns(frame: pd.DataFrame, name: str) -> None:
    """Refuse repeated column names: ``frame[c]`` would then be a DataFrame,
    and a model or a column selection could silently use the wrong one."""
    repeated = frame.columns[frame.columns.duplicated()].unique()
    if len(repeated):
        raise ValueError(
            f"{name} has duplicate column names {list(repeated)[:10]}; "
            "rename them so that every column is named once"
        )


def _check_aligned(x: Any, y: Any, x_name: str, y_name: str) -> None:
    """Refuse pandas features and targets whose indexes differ.

    Rows are paired by position; a target whose index is, say, a shuffled
    copy of the features' would pair every row with another row's target.
    A target with a default index (``pd.Series(array)``, or a slice of
    one: a RangeIndex) names no rows, so it pairs by position whatever the
    features' index.
    """
    if not isinstance(x, pd.DataFrame) or not isinstance(y, pd.Series):
        return
    if len(x) != len(y) or x.index.equals(y.index):
        return  # a length mismatch has its own message
    if isinstance(y.index, pd.RangeIndex) and y.index.step == 1:
        return
    differing = int((x.index != y.index).sum())
    raise ValueError(
        f"{y_name}'s index does not match {x_name}'s ({differing} of {len(x)} "
        f"labels differ in place): rows would be paired by position, not by "
        f"label; align them first ({y_name} = {y_name}.loc[{x_name}.index]) or "
        "drop both indexes (.reset_index(drop=True))"
    )


def _row_ids(x: Any) -> np.ndarray:
    """The user's identity of each row: a pandas index when it is unique,
    else the row positions."""
    index = getattr(x, "index", None)
    if isinstance(index, pd.Index) and index.is_unique:
        return index.to_numpy()
    return np.arange(len(x))


def _check_no_missing(
    value: np.ndarray | pd.DataFrame, name: str, *, allow_nan: bool = False
) -> None:
    """Raise naming ``name`` on infinities, and on missing values unless allowed."""
    if isinstance(value, pd.DataFrame):
        numeric = value.select_dtypes(include="number")
        as_float = numeric.to_numpy(dtype=float, na_value=np.nan)
        missing = 0 if allow_nan else int(value.isna().to_numpy().sum())
        infinite = int(np.isinf(as_float).sum())
    elif value.dtype.kind in "fc":
        missing = 0 if allow_nan else int(np.isnan(value).sum())
        infinite = int(np.isinf(value).sum())
    elif value.dtype == object:
        missing = 0 if allow_nan else int(pd.isna(value).sum())
        infinite = 0
    else:
        return
    if infinite:
        raise ValueError(f"{name} contains {infinite} infinite value(s)")
    if missing:
        hint = " (pass allow_nan=True if the model handles them)"
        raise ValueError(
            f"{name} contains {missing} NaN or missing value(s)"
            + (hint if name.startswith("x_") else "")
        )


def _check_columns(x_train: Any, x_test: Any) -> None:
    """DataFrame features must come with the same columns in both splits."""
    train_df, test_df = (isinstance(x, pd.DataFrame) for x in (x_train, x_test))
    if train_df != test_df:
        kinds = {True: "a DataFrame", False: "an array"}
        raise TypeError(
            f"x_test must be of the same kind as x_train: x_train is "
            f"{kinds[train_df]} but x_test is {kinds[test_df]}"
        )
    if train_df and list(x_train.columns) != list(x_test.columns):
        raise ValueError(
            "x_test must have the columns of x_train, in the same order: "
            f"x_train has {list(x_train.columns)[:10]}, "
            f"x_test has {list(x_test.columns)[:10]}"
        )


def _n_rows(value: np.ndarray | pd.DataFrame) -> int:
    return int(value.shape[0])


def _hash_update(digest: Any, value: np.ndarray | pd.DataFrame) -> None:
    """Feed an array or a DataFrame into ``digest``, dtypes and shapes included."""
    if isinstance(value, pd.DataFrame):
        digest.update(repr(list(value.columns)).encode())
        digest.update(repr([str(t) for t in value.dtypes]).encode())
        hashed = pd.util.hash_pandas_object(value, index=False).to_numpy()
        digest.update(hashed.tobytes())
        return
    array = np.ascontiguousarray(value)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    if array.dtype == object:
        digest.update(repr(array.tolist()).encode())
    else:
        digest.update(array.tobytes())


_SPLITS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class _NpzMember:
    """One array of an ``.npz`` file."""

    path: str
    key: str

    def load(self) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as archive:
            return np.asarray(archive[self.key])


@dataclass(frozen=True)
class _MemmapArray:
    """An array that is a whole memory map of (part of) a file."""

    path: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    order: Literal["C", "F"]

    def load(self) -> np.ndarray:
        return np.asarray(
            np.memmap(
                self.path,
                mode="r",
                dtype=np.dtype(self.dtype),
                shape=self.shape,
                offset=self.offset,
                order=self.order,
            )
        )


@dataclass(frozen=True)
class _ParquetPart:
    """The features (every column but ``target``) or the target of a file."""

    path: str
    target: str
    part: str  # "x" or "y"

    def load(self) -> np.ndarray | pd.DataFrame:
        frame = pd.read_parquet(self.path)
        if self.part == "y":
            return frame[self.target].to_numpy()
        return frame.drop(columns=[self.target]).reset_index(drop=True)


_Source = _NpzMember | _MemmapArray | _ParquetPart


def _memmap_source(value: Any) -> _MemmapArray | None:
    """Where ``value`` lives, when it is exactly a whole memory-mapped array."""
    if not isinstance(value, np.ndarray):
        return None
    root = value if isinstance(value, np.memmap) else value.base
    while isinstance(root, np.memmap) and isinstance(root.base, np.memmap):
        root = root.base
    filename = getattr(root, "filename", None)
    if not isinstance(root, np.memmap) or not filename:
        return None
    same_view = (
        value.dtype == root.dtype
        and value.shape == root.shape
        and value.ctypes.data == root.ctypes.data
    )
    if not same_view or value.dtype.hasobject:
        return None  # a slice or a view of another type: shipped by value
    order: Literal["C", "F"]
    if value.flags.c_contiguous:
        order = "C"
    elif value.flags.f_contiguous:
        order = "F"
    else:
        return None
    return _MemmapArray(
        os.path.abspath(filename), value.dtype.str, value.shape, int(root.offset), order
    )


def _check_file(path: Any, name: str, suffixes: tuple[str, ...]) -> str:
    """``path`` as an absolute path to an existing file, or a clear error."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise TypeError(f"{name} must be a file path, got {type(path).__name__}")
    absolute = os.path.abspath(os.fspath(path))
    if not os.path.isfile(absolute):
        raise FileNotFoundError(f"{name}={str(path)!r}: no such file")
    if suffixes and not absolute.endswith(suffixes):
        raise ValueError(f"{name}={str(path)!r} must be a {' or '.join(suffixes)} file")
    return absolute


class Dataset:
    """Training and scoring splits, and who the players are.

    Parameters
    ----------
    x_train, y_train : array-like or pandas objects
        The training rows. Their rows (or their groups, see ``groups``) are
        the players being valued.
    x_test, y_test : array-like or pandas objects
        The scoring split: every utility evaluation scores a model on it.
    names : sequence of str, optional
        One name per player. Defaults to the labels of ``x_train``'s index
        (as text) for a DataFrame whose index is unique, so that values join
        back to the data; else to the row positions ``"0"``, ``"1"``, ...;
        with ``groups``, to the group labels.
    groups : array-like, optional
        One label per training row. When given, the players are the distinct
        labels (in sorted order) and a coalition trains on all rows of its
        groups.
    allow_nan : bool
        Accept missing values (NaN, None, ``pd.NA``) in ``x_train`` and
        ``x_test``, for models that handle them (an imputing Pipeline,
        ``HistGradientBoostingClassifier``). Infinite values and missing
        targets are always refused.

    Raises
    ------
    ValueError, TypeError
        On mismatched lengths, missing or infinite values, an empty training
        split, ``names``/``groups`` of the wrong length, repeated column
        names, or a pandas target whose (non-default) index differs from
        its features' (rows are paired by position: align them first).

    Notes
    -----
    An array given as a whole memory map (``np.load(path, mmap_mode="r")``
    or ``np.memmap``) is not copied to the workers: each worker maps the same
    file, which must be readable there at the same path (see
    :attr:`file_backed`).
    """

    def __init__(
        self,
        x_train: ArrayLike,
        y_train: ArrayLike,
        x_test: ArrayLike,
        y_test: ArrayLike,
        *,
        names: Sequence[str] | None = None,
        groups: ArrayLike | None = None,
        allow_nan: bool = False,
    ) -> None:
        if not isinstance(allow_nan, bool):
            raise TypeError(f"allow_nan must be a bool, got {type(allow_nan).__name__}")
        self.allow_nan = allow_nan
        _check_aligned(x_train, y_train, "x_train", "y_train")
        _check_aligned(x_test, y_test, "x_test", "y_test")
        # the user's row ids (a DataFrame's index) name the players by default
        row_ids = _row_ids(x_train) if isinstance(x_train, pd.DataFrame) else None
        self.x_train = _as_table(x_train, "x_train", ndim=2)
        self.y_train = _as_table(y_train, "y_train", ndim=1)
        self.x_test = _as_table(x_test, "x_test", ndim=2)
        self.y_test = _as_table(y_test, "y_test", ndim=1)
        self._check_shapes()
        _check_columns(self.x_train, self.x_test)
        for name in ("x_train", "y_train", "x_test", "y_test"):
            features = name.startswith("x_")
            _check_no_missing(
                getattr(self, name), name, allow_nan=allow_nan and features
            )
        self.groups, self._group_rows = self._make_groups(groups)
        self.names = self._make_names(names, row_ids)
        self._fingerprint: str | None = None
        # arrays that workers load from files instead of receiving them
        self._sources: dict[str, _Source] = {}
        for name in _SPLITS:
            source = _memmap_source(getattr(self, name))
            if source is not None:
                self._sources[name] = source
        if self._sources:
            self.fingerprint()  # computed here, checked where the files load

    # -- construction helpers -------------------------------------------------
    def _check_shapes(self) -> None:
        n_train, n_test = _n_rows(self.x_train), _n_rows(self.x_test)
        if n_train == 0:
            raise ValueError("x_train is empty: there is nothing to value")
        if n_test == 0:
            raise ValueError("x_test is empty: utilities have nothing to score on")
        if len(self.y_train) != n_train:
            raise ValueError(
                f"y_train has {len(self.y_train)} rows but x_train has {n_train}"
            )
        if len(self.y_test) != n_test:
            raise ValueError(
                f"y_test has {len(self.y_test)} rows but x_test has {n_test}"
            )
        if self.x_train.shape[1] == 0:
            raise ValueError("x_train has no features (shape (n_samples, 0))")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ValueError(
                f"x_test has {self.x_test.shape[1]} features but x_train has "
                f"{self.x_train.shape[1]}"
            )

    def _make_groups(
        self, groups: ArrayLike | None
    ) -> tuple[np.ndarray | None, list[np.ndarray] | None]:
        if groups is None:
            return None, None
        labels = np.asarray(
            groups.to_numpy() if hasattr(groups, "to_numpy") else groups
        )
        if labels.ndim != 1 or len(labels) != _n_rows(self.x_train):
            raise ValueError(
                "groups must give one label per training row "
                f"({_n_rows(self.x_train)}), got shape {labels.shape}"
            )
        if labels.dtype.kind in "fc" and not np.isfinite(labels).all():
            raise ValueError(
                "groups contains NaN or infinite labels: every training row "
                "needs a group"
            )
        if labels.dtype == object and pd.isna(labels).any():
            raise ValueError(
                "groups contains missing labels (None or NaN): every training "
                "row needs a group"
            )
        try:
            unique, inverse = np.unique(labels, return_inverse=True)
        except TypeError as exc:
            raise TypeError(
                "groups labels must be mutually comparable (all numbers or all "
                f"strings): {exc}"
            ) from exc
        rows = [np.flatnonzero(inverse == g) for g in range(len(unique))]
        return unique, rows

    def _make_names(
        self, names: Sequence[str] | None, row_ids: np.ndarray | None = None
    ) -> np.ndarray:
        if names is None:
            if self.groups is not None:
                return np.array([str(g) for g in self.groups], dtype=object)
            if row_ids is None:
                row_ids = np.arange(self.n)
            return np.array([str(i) for i in row_ids], dtype=object)
        if isinstance(names, (str, bytes)):
            raise TypeError(
                "names must be a sequence with one name per player, got a string"
            )
        names_arr = np.asarray(list(names), dtype=object)
        if names_arr.ndim != 1 or len(names_arr) != self.n:
            raise ValueError(
                f"names must give one name per player ({self.n}), got {len(names_arr)}"
            )
        names_arr = np.array([str(x) for x in names_arr], dtype=object)
        if len(set(names_arr)) != len(names_arr):
            values, counts = np.unique(names_arr.astype(str), return_counts=True)
            raise ValueError(
                f"names must be unique; repeated: {list(values[counts > 1][:5])}"
            )
        return names_arr

    @classmethod
    def from_arrays(
        cls,
        x: ArrayLike,
        y: ArrayLike,
        *,
        train_size: float | int = 0.7,
        stratify: bool = True,
        random_state: int | None = None,
        allow_nan: bool = False,
    ) -> Dataset:
        """Split features and targets into a training and a scoring split.

        Parameters
        ----------
        x : array-like or pandas.DataFrame
            Features, one row per data point.
        y : array-like or pandas.Series
            Targets; a Series must have the index of ``x``.
        train_size : float or int
            Fraction or number of rows in the training split; the rest scores.
        stratify : bool
            Stratify the split by target when ``y`` holds class labels.
        random_state : int, optional
            Seed of the (shuffled) split.
        allow_nan : bool
            As for :class:`Dataset`.

        Returns
        -------
        Dataset
            Its players are named by the rows' identity in ``x``: the labels
            of a DataFrame's (unique) index, else the row numbers in ``x``, so
            values join back to the data whatever the shuffle.
        """
        from sklearn.model_selection import train_test_split

        if not isinstance(stratify, bool):
            raise TypeError(f"stratify must be a bool, got {type(stratify).__name__}")
        _check_aligned(x, y, "x", "y")
        ids = _row_ids(x)
        y_arr = np.asarray(y)
        classes = y_arr.dtype.kind in "iubOU" and y_arr.ndim == 1
        try:
            x_tr, x_te, y_tr, y_te, ids_tr, _ = train_test_split(
                x,
                y,
                ids,
                train_size=train_size,
                random_state=random_state,
                stratify=y_arr if stratify and classes else None,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"x, y cannot be split (train_size={train_size!r}): {exc}"
            ) from exc
        names = [str(i) for i in ids_tr]
        return cls(x_tr, y_tr, x_te, y_te, names=names, allow_nan=allow_nan)

    @classmethod
    def from_pandas(
        cls,
        frame: pd.DataFrame,
        *,
        target: str,
        train_size: float | int = 0.7,
        stratify: bool = True,
        random_state: int | None = None,
        allow_nan: bool = False,
    ) -> Dataset:
        """Split one DataFrame: the ``target`` column against all the others.

        Parameters
        ----------
        frame : pandas.DataFrame
            One row per data point; its index names the players.
        target : str
            The target column; every other column is a feature.
        train_size, stratify, random_state, allow_nan
            As for :meth:`from_arrays`.
        """
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(
                f"frame must be a pandas DataFrame, got {type(frame).__name__}"
            )
        _check_unique_columns(frame, "frame")
        if target not in frame.columns:
            raise ValueError(
                f"target={target!r} is not a column of frame; its columns: "
                f"{list(frame.columns)[:10]}"
            )
        return cls.from_arrays(
            frame.drop(columns=[target]),
            frame[target],
            train_size=train_size,
            stratify=stratify,
            random_state=random_state,
            allow_nan=allow_nan,
        )

    @classmethod
    def from_sklearn(
        cls,
        bunch: Any,
        *,
        train_size: float | int = 0.7,
        random_state: int | None = None,
        stratify: bool = True,
    ) -> Dataset:
        """Split a scikit-learn ``Bunch`` (``load_*(...)``) into a Dataset.

        Parameters
        ----------
        bunch : sklearn.utils.Bunch
            As returned by e.g. ``sklearn.datasets.load_breast_cancer()``;
            ``as_frame=True`` bunches keep their column names.
        train_size : float or int
            Fraction or number of rows in the training split; the rest scores.
        random_state : int, optional
            Seed of the split.
        stratify : bool
            Stratify the split by target for classification targets.

        Returns
        -------
        Dataset
            Players named by their row numbers in ``bunch.data``.
        """
        if not hasattr(bunch, "data") or not hasattr(bunch, "target"):
            raise TypeError(
                "bunch must have 'data' and 'target', like sklearn's load_*"
            )
        y = np.asarray(bunch.target)
        # only integer labels stratify: a Bunch's float targets are regression
        return cls.from_arrays(
            bunch.data,
            bunch.target,
            train_size=train_size,
            random_state=random_state,
            stratify=stratify and y.dtype.kind in "iub",
        )

    # -- players --------------------------------------------------------------
    @property
    def n(self) -> int:
        """The number of players (training rows, or groups)."""
        if self._group_rows is not None:
            return len(self._group_rows)
        return _n_rows(self.x_train)

    @property
    def n_train(self) -> int:
        """The number of training rows."""
        return _n_rows(self.x_train)

    def rows(self, players: np.ndarray) -> np.ndarray:
        """Training row positions of the given players, in increasing order.

        The order of ``players`` does not matter: a coalition is a set, and
        the model always sees its rows in the same order.
        """
        if self._group_rows is None:
            return np.sort(players)
        if len(players) == 0:
            return np.empty(0, dtype=np.intp)
        return np.sort(np.concatenate([self._group_rows[p] for p in players]))

    def train_subset(self, rows: np.ndarray) -> tuple[Any, Any]:
        """The training features and targets of the given rows."""
        x = self.x_train
        x_rows = x.iloc[rows] if isinstance(x, pd.DataFrame) else x[rows]
        return x_rows, self.y_train[rows]

    def fingerprint(self) -> str:
        """A stable hash of the arrays, the grouping and the names."""
        if self._fingerprint is None:
            digest = hashlib.sha256(b"daskval.Dataset/1")
            for value in (self.x_train, self.y_train, self.x_test, self.y_test):
                _hash_update(digest, value)
            if self.groups is not None:
                for rows in self._group_rows or []:
                    digest.update(rows.astype(np.int64).tobytes() + b"|")
            digest.update(repr(list(self.names)).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @property
    def file_backed(self) -> tuple[str, ...]:
        """The splits (``"x_train"``, ...) that workers load from files
        themselves instead of receiving them from the client."""
        return tuple(
            name for name in _SPLITS if name in self.__dict__.get("_sources", {})
        )

    @classmethod
    def from_npz(
        cls,
        path: str | os.PathLike[str],
        *,
        names: Sequence[str] | None = None,
        allow_nan: bool = False,
    ) -> Dataset:
        """A Dataset whose arrays each worker loads from an ``.npz`` file.

        Parameters
        ----------
        path : str or PathLike
            An ``.npz`` file (``np.savez``) with the arrays ``x_train``,
            ``y_train``, ``x_test`` and ``y_test``, and optionally ``groups``,
            on storage that the workers read at the same path (a shared file
            system). Object arrays are refused (no pickle is loaded).
        names, allow_nan
            As for :class:`Dataset`.

        Notes
        -----
        The client reads the file once (to check it and compute the
        fingerprint, which equals that of ``Dataset`` built from the same
        arrays); what travels to the workers is the path. A worker that finds
        other contents there refuses them (the utility's registration fails
        with the reason).
        """
        absolute = _check_file(path, "path", (".npz",))
        with np.load(absolute, allow_pickle=False) as archive:
            missing = [k for k in _SPLITS if k not in archive.files]
            if missing:
                raise ValueError(
                    f"path={str(path)!r} lacks the array(s) {missing}; it must hold "
                    f"x_train, y_train, x_test, y_test (and optionally groups), "
                    f"found {sorted(archive.files)}"
                )
            arrays = {k: archive[k] for k in _SPLITS}
            groups = archive["groups"] if "groups" in archive.files else None
        data = cls(**arrays, names=names, groups=groups, allow_nan=allow_nan)
        data._sources = {k: _NpzMember(absolute, k) for k in _SPLITS}
        data.fingerprint()
        return data

    @classmethod
    def from_parquet(
        cls,
        train: str | os.PathLike[str],
        test: str | os.PathLike[str],
        *,
        target: str,
        names: Sequence[str] | None = None,
        groups: ArrayLike | None = None,
        allow_nan: bool = False,
    ) -> Dataset:
        """A Dataset whose tables each worker loads from Parquet files.

        Parameters
        ----------
        train, test : str or PathLike
            Parquet files of the training and scoring rows, on storage that
            the workers read at the same paths. Needs pandas' Parquet engine
            (``pyarrow``).
        target : str
            The target column; every other column is a feature (a DataFrame
            with the file's column names and dtypes).
        names, groups, allow_nan
            As for :class:`Dataset`.
        """
        paths = {
            "train": _check_file(train, "train", (".parquet", ".pq")),
            "test": _check_file(test, "test", (".parquet", ".pq")),
        }
        if not isinstance(target, str):
            raise TypeError(
                f"target must be a column name, got {type(target).__name__}"
            )
        sources: dict[str, _Source] = {}
        for split, path in paths.items():
            columns = list(pd.read_parquet(path).columns)
            if target not in columns:
                raise ValueError(
                    f"{split}={str(path)!r} has no column {target!r} (target); "
                    f"its columns: {columns[:10]}"
                )
            sources[f"x_{split}"] = _ParquetPart(path, target, "x")
            sources[f"y_{split}"] = _ParquetPart(path, target, "y")
        arrays = {name: source.load() for name, source in sources.items()}
        data = cls(**arrays, names=names, groups=groups, allow_nan=allow_nan)
        data._sources = sources
        data.fingerprint()
        return data

    def __getstate__(self) -> dict[str, Any]:
        sources = self.__dict__.get("_sources")
        if not sources:
            return self.__dict__
        # the paths travel, not the arrays; the fingerprint checks what loads
        self.fingerprint()
        state = self.__dict__.copy()
        for name in sources:
            state[name] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        sources: dict[str, _Source] = state.get("_sources") or {}
        self.__dict__["_sources"] = sources
        if not sources:
            return
        for name, source in sources.items():
            try:
                setattr(self, name, source.load())
            except Exception as exc:
                raise OSError(
                    f"Dataset: cannot load {name} from {source.path!r} here "
                    f"({type(exc).__name__}: {exc}); file-backed data must be "
                    "readable at the same path on every worker"
                ) from exc
        expected, self._fingerprint = self._fingerprint, None
        if self.fingerprint() != expected:
            raise ValueError(
                "Dataset: the files "
                f"{sorted({source.path for source in sources.values()})} hold other "
                "data than when the client read them (fingerprint mismatch); "
                "were they changed or replaced during the run?"
            )

    def __repr__(self) -> str:
        kind = f"{self.n} groups of " if self.groups is not None else ""
        return (
            f"Dataset({kind}{self.n_train} training rows, "
            f"{_n_rows(self.x_test)} scoring rows, "
            f"{self.x_train.shape[1]} features)"
        )
