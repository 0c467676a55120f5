"""Offline datasets for valuation experiments, with noise injection.

Every dataset here is available without a network: scikit-learn's bundled
tables (``breast_cancer``, ``wine``, ``iris``, ``digits``, ``diabetes``) and
its generators (``classification``, ``regression``). :func:`load` splits one
into three parts:

- **train**: the rows being valued (the players);
- **valid**: the utility's scoring split (``Dataset.x_test``): every u(S)
  scores a model on it;
- **test**: held out for experiments (removal curves), never seen by the
  utility, so that judging values on it is not circular.

:func:`add_label_noise` and :func:`add_feature_noise` corrupt a fraction of
the *training* rows only and record which (``ExperimentData.corrupted``),
the ground truth of noisy-label detection (:mod:`daskval.evaluate`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from daskval.data import Dataset

__all__ = [
    "DATASETS",
    "ExperimentData",
    "add_feature_noise",
    "add_label_noise",
    "load",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass(frozen=True, eq=False)  # arrays: compare fields, not objects
class ExperimentData:
    """A dataset split into train, valid and test, and what was corrupted.

    Attributes
    ----------
    name : str
        The dataset's name (as given to :func:`load`).
    task : {"classification", "regression"}
        What the targets are.
    x_train, y_train : np.ndarray
        The rows being valued (possibly corrupted).
    x_valid, y_valid : np.ndarray
        The utility's scoring split.
    x_test, y_test : np.ndarray
        Held out for experiments; the utility never sees it.
    corrupted : np.ndarray of int
        Sorted positions (in the training split) of the rows whose label or
        features were corrupted; empty for clean data.
    y_train_clean : np.ndarray
        The training labels before any label noise.
    feature_names : list of str
        One name per column.
    target_names : list of str or None
        Class names, for classification.
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    corrupted: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))
    y_train_clean: np.ndarray | None = None
    feature_names: list[str] = field(default_factory=list)
    target_names: list[str] | None = None

    @property
    def n_train(self) -> int:
        """The number of training rows."""
        return len(self.y_train)

    @property
    def is_corrupted(self) -> np.ndarray:
        """A boolean mask over the training rows: True where corrupted."""
        mask = np.zeros(self.n_train, dtype=bool)
        mask[self.corrupted] = True
        return mask

    def dataset(self) -> Dataset:
        """The :class:`~daskval.Dataset` a utility sees: train, scored on valid."""
        return Dataset(self.x_train, self.y_train, self.x_valid, self.y_valid)

    def holdout_dataset(self) -> Dataset:
        """Train scored on the held-out test split (for judging values)."""
        return Dataset(self.x_train, self.y_train, self.x_test, self.y_test)

    def __repr__(self) -> str:
        return (
            f"ExperimentData({self.name!r}, {self.task}, train={self.n_train}, "
            f"valid={len(self.y_valid)}, test={len(self.y_test)}, "
            f"features={self.x_train.shape[1]}, corrupted={len(self.corrupted)})"
        )


# -- sources --------------------------------------------------------------------
def _bundled(loader_name: str) -> Callable[[int], tuple[Any, Any, Any, Any]]:
    def load_bundled(seed: int) -> tuple[Any, Any, Any, Any]:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()
        names = [str(n) for n in getattr(bunch, "feature_names", [])]
        targets = getattr(bunch, "target_names", None)
        return bunch.data, bunch.target, names, targets

    return load_bundled


def _make_classification(seed: int) -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=1000,
        n_features=10,
        n_informative=5,
        n_redundant=2,
        class_sep=1.0,
        random_state=seed,
    )
    return x, y, [f"x{i}" for i in range(x.shape[1])], ["0", "1"]


def _make_regression(seed: int) -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import make_regression

    x, y = make_regression(
        n_samples=1000, n_features=10, n_informative=5, noise=10.0, random_state=seed
    )
    return x, y, [f"x{i}" for i in range(x.shape[1])], None


#: name -> (task, loader(seed) -> (x, y, feature names, target names))
DATASETS: dict[str, tuple[str, Callable[[int], tuple[Any, Any, Any, Any]]]] = {
    "breast_cancer": (CLASSIFICATION, _bundled("load_breast_cancer")),
    "wine": (CLASSIFICATION, _bundled("load_wine")),
    "iris": (CLASSIFICATION, _bundled("load_iris")),
    "digits": (CLASSIFICATION, _bundled("load_digits")),
    "diabetes": (REGRESSION, _bundled("load_diabetes")),
    "classification": (CLASSIFICATION, _make_classification),
    "regression": (REGRESSION, _make_regression),
}


# -- argument checks ------------------------------------------------------------
def _check_size(value: Any, name: str) -> float | int:
    """A split size: a fraction in (0, 1) or a positive row count."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a fraction in (0, 1) or a positive number of rows, "
            f"got {type(value).__name__}"
        )
    if isinstance(value, numbers.Integral):
        if value < 1:
            raise ValueError(f"{name} must be a positive number of rows, got {value}")
        return int(value)
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a fraction in (0, 1), got {value}")
    return float(value)


def _check_seed(value: Any, name: str = "random_state") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a number in [0, 1), got {type(value).__name__}"
        )
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value}")
    return float(value)


def _rows(size: float | int, total: int) -> int:
    return size if isinstance(size, int) else max(1, round(size * total))


# -- loading and splitting ------------------------------------------------------
def load(
    name: str,
    *,
    train_size: float | int = 0.6,
    valid_size: float | int = 0.2,
    test_size: float | int = 0.2,
    random_state: int = 0,
) -> ExperimentData:
    """Load a bundled or generated dataset, split into train, valid and test.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`: ``"breast_cancer"``, ``"wine"``, ``"iris"``,
        ``"digits"``, ``"classification"`` (classification); ``"diabetes"``,
        ``"regression"`` (regression). Nothing is downloaded.
    train_size, valid_size, test_size : float or int
        Each a fraction of the rows in (0, 1) or a number of rows; together
        at most all rows (the rest are left out, so a small training split
        keeps valuations cheap).
    random_state : int
        Seed of the split (and of the generators). Classification splits are
        stratified by class.

    Returns
    -------
    ExperimentData
        Clean data (``corrupted`` is empty).

    Raises
    ------
    ValueError
        For an unknown name, or sizes that need more rows than there are.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(
            f"name must be one of {sorted(DATASETS)}, got {name!r} "
            "(only offline datasets are bundled)"
        )
    sizes = {
        "train_size": _check_size(train_size, "train_size"),
        "valid_size": _check_size(valid_size, "valid_size"),
        "test_size": _check_size(test_size, "test_size"),
    }
    seed = _check_seed(random_state)
    task, loader = DATASETS[name]
    x, y, feature_names, target_names = loader(seed)
    x, y = np.asarray(x, dtype=float), np.asarray(y)
    counts = {k: _rows(v, len(y)) for k, v in sizes.items()}
    if sum(counts.values()) > len(y):
        raise ValueError(
            f"train_size, valid_size and test_size ask for {counts} rows, "
            f"{sum(counts.values())} in all, but {name} has {len(y)}"
        )
    train, valid, test = _split(y, task, list(counts.values()), seed)
    return ExperimentData(
        name=name,
        task=task,
        x_train=x[train],
        y_train=y[train],
        x_valid=x[valid],
        y_valid=y[valid],
        x_test=x[test],
        y_test=y[test],
        y_train_clean=y[train].copy(),
        feature_names=list(feature_names),
        target_names=None if target_names is None else [str(t) for t in target_names],
    )


def _split(y: np.ndarray, task: str, counts: list[int], seed: int) -> list[np.ndarray]:
    """Row positions of each part, stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    rest = np.arange(len(y))
    parts = []
    for count in counts:
        if count >= len(rest):
            parts.append(rest)
            rest = rest[:0]
            continue
        strata = y[rest] if task == CLASSIFICATION else None
        try:
            taken, rest = train_test_split(
                rest, train_size=count, random_state=seed, stratify=strata
            )
        except ValueError:  # too few rows of a class to stratify
            taken, rest = train_test_split(rest, train_size=count, random_state=seed)
        parts.append(np.sort(taken))
    return parts


# -- noise ----------------------------------------------------------------------
def _choose_rows(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    k = round(fraction * n)
    return np.sort(rng.choice(n, size=k, replace=False))


def add_label_noise(
    data: ExperimentData,
    fraction: float,
    *,
    scale: float = 1.0,
    random_state: int = 0,
) -> ExperimentData:
    """Corrupt the labels of a fraction of the training rows (only those).

    Classification: each chosen row's label is replaced by another class,
    drawn uniformly from the other classes (so every chosen label really
    changes). Regression: each chosen target gets Gaussian noise of
    standard deviation ``scale`` times the targets' standard deviation.

    Parameters
    ----------
    data : ExperimentData
        From :func:`load` (possibly already corrupted: the indices add up).
    fraction : float
        The fraction of training rows to corrupt, in [0, 1).
    scale : float
        Regression only: the noise's size relative to the targets' spread.
    random_state : int
        Seed of the choice of rows and of the new labels.

    Returns
    -------
    ExperimentData
        A copy whose ``corrupted`` holds the chosen rows (with any earlier
        ones) and whose ``y_train_clean`` keeps the original labels.
    """
    data = _check_data(data)
    fraction = _check_fraction(fraction, "fraction")
    scale = _check_scale(scale)
    rng = np.random.default_rng(_check_seed(random_state))
    rows = _choose_rows(data.n_train, fraction, rng)
    y = data.y_train.copy()
    if data.task == CLASSIFICATION:
        classes = np.unique(data.y_train)
        if len(classes) < 2:
            raise ValueError("label noise needs at least two classes in y_train")
        for row in rows:
            others = classes[classes != y[row]]
            y[row] = others[rng.integers(len(others))]
    else:
        y = y.astype(float)
        y[rows] += rng.normal(0.0, scale * float(np.std(data.y_train)), len(rows))
    return replace(data, y_train=y, corrupted=np.union1d(data.corrupted, rows))


def add_feature_noise(
    data: ExperimentData,
    fraction: float,
    *,
    scale: float = 1.0,
    random_state: int = 0,
) -> ExperimentData:
    """Add Gaussian noise to the features of a fraction of the training rows.

    Each chosen row gets, in every column, noise of standard deviation
    ``scale`` times that column's standard deviation over the training rows.

    Parameters
    ----------
    data : ExperimentData
        From :func:`load`.
    fraction : float
        The fraction of training rows to corrupt, in [0, 1).
    scale : float
        The noise's size relative to each feature's spread.
    random_state : int
        Seed of the choice of rows and of the noise.

    Returns
    -------
    ExperimentData
        A copy whose ``corrupted`` holds the chosen rows (with any earlier ones).
    """
    data = _check_data(data)
    fraction = _check_fraction(fraction, "fraction")
    scale = _check_scale(scale)
    rng = np.random.default_rng(_check_seed(random_state))
    rows = _choose_rows(data.n_train, fraction, rng)
    x = data.x_train.astype(float, copy=True)
    spread = x.std(axis=0)
    x[rows] += rng.normal(0.0, 1.0, (len(rows), x.shape[1])) * scale * spread
    return replace(data, x_train=x, corrupted=np.union1d(data.corrupted, rows))


def _check_data(data: Any) -> ExperimentData:
    if not isinstance(data, ExperimentData):
        raise TypeError(
            "data must be an ExperimentData from daskval.datasets.load(), "
            f"got {type(data).__name__}"
        )
    return data


def _check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a positive number, got {type(scale).__name__}")
    if not 0.0 < float(scale) < float("inf"):
        raise ValueError(f"scale must be a positive number, got {scale}")
    return float(scale)
