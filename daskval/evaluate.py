"""Judging values: noisy-label detection and point removal/addition curves.

Two standard experiments (as OpenDataVal reports them):

- **Noisy-label detection** (:func:`detection_scores`): corrupt some training
  labels (:func:`daskval.datasets.add_label_noise`), value the points, and
  flag the *low cluster* of an exact one-dimensional 2-means split of the
  values. The F1 score of the flags against the corrupted rows, and the
  AUROC of ranking by value (low = noisy), say how well a method finds them.
- **Removal and addition curves** (:func:`removal_curves`,
  :func:`addition_curves`): remove (or add) points in order of value, in
  bins, retrain the model on what is left and score it on the **held-out
  test split**, which the utility never saw (scoring on the utility's own
  split would be circular). Good values make the score drop fast when the
  highest-valued points go first.

The retraining runs on Dask through the engine: every (method, order, bin)
of every curve is one sample of a plan, so all the fits of all curves fan
out over the cluster at once.

:func:`compare_methods` runs the noisy-label experiment for several methods,
with a random valuation as the baseline row; :data:`METHODS` names the
methods the command line knows and :func:`make_valuation` builds them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from daskval._validation import check_positive_int
from daskval.accumulate import Moments, Statistic
from daskval.data import Dataset
from daskval.datasets import CLASSIFICATION, ExperimentData
from daskval.methods.base import Valuation
from daskval.plan import EnumerationPlan, Plan
from daskval.result import ValuationResult
from daskval.utility import EvalStats, ModelUtility, Utility

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = [
    "BASELINE",
    "METHODS",
    "MODELS",
    "Comparison",
    "Curve",
    "DetectionScores",
    "MethodSpec",
    "RetrainUtility",
    "addition_curves",
    "check_method",
    "compare_methods",
    "curves_frame",
    "detection_scores",
    "low_cluster",
    "make_model",
    "make_valuation",
    "player_values",
    "random_values",
    "removal_curves",
    "retrain_scores",
]

ValuesLike = Any  # a ValuationResult, or an array of one value per player


# -- values in player order -----------------------------------------------------
def player_values(values: ValuesLike, name: str = "values") -> np.ndarray:
    """One finite float per player, in player order (0 .. n-1).

    A :class:`~daskval.ValuationResult` is put back in player order (a sorted
    result is not); an array is taken as is.

    Raises
    ------
    ValueError
        On NaN or infinite values (e.g. a Data-OOB point no bootstrap left
        out), or a value array that is not one-dimensional.
    """
    if isinstance(values, ValuationResult):
        out = np.empty(len(values))
        out[values.indices] = values.values
    else:
        out = np.asarray(values, dtype=float)
    if out.ndim != 1 or len(out) == 0:
        raise ValueError(
            f"{name} must hold one value per player (1-D, non-empty), "
            f"got shape {out.shape}"
        )
    bad = int((~np.isfinite(out)).sum())
    if bad:
        raise ValueError(
            f"{name} has {bad} NaN or infinite value(s); a method that leaves "
            "some points without a value needs a larger budget"
        )
    return out


def _corrupted_mask(corrupted: Any, n: int) -> np.ndarray:
    """A boolean mask of the corrupted players from indices or a mask."""
    array = np.asarray(corrupted)
    if array.dtype == bool:
        if array.shape != (n,):
            raise ValueError(
                f"corrupted as a mask must have one entry per player ({n}), "
                f"got shape {array.shape}"
            )
        return array
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise TypeError(
            "corrupted must be indices of the corrupted players (1-D integers) "
            "or a boolean mask"
        )
    if array.size and (array.min() < 0 or array.max() >= n):
        raise ValueError(f"corrupted holds indices outside [0, {n})")
    mask = np.zeros(n, dtype=bool)
    mask[array.astype(np.intp)] = True  # an empty list arrives as floats
    return mask


# -- noisy-label detection ------------------------------------------------------
def low_cluster(values: ValuesLike) -> np.ndarray:
    """The low cluster of the exact 1-D 2-means split of ``values``.

    The split minimises the within-cluster sum of squares over every cut of
    the sorted values (exact: in one dimension the optimal 2-means clusters
    are contiguous in sorted order); equal values stay in one cluster.

    Parameters
    ----------
    values : ValuationResult or array-like
        One value per player.

    Returns
    -------
    np.ndarray of bool
        True for the players of the low cluster (all False when every value
        is the same: there is nothing to split).
    """
    v = player_values(values)
    order = np.sort(v)
    n = len(order)
    centred = order - order.mean()  # fewer cancellations in the sums below
    cumsum = np.cumsum(centred)
    cumsq = np.cumsum(centred**2)
    k = np.arange(1, n)  # size of the low cluster
    low_sum, low_sq = cumsum[:-1], cumsq[:-1]
    high_sum, high_sq = cumsum[-1] - low_sum, cumsq[-1] - low_sq
    sse = (low_sq - low_sum**2 / k) + (high_sq - high_sum**2 / (n - k))
    valid = order[1:] > order[:-1]  # cut only between distinct values
    if not valid.any():
        return np.zeros(n, dtype=bool)
    sse = np.where(valid, sse, np.inf)
    cut = int(np.argmin(sse))
    return v <= order[cut]


@dataclass(frozen=True)
class DetectionScores:
    """How well low values find the corrupted points.

    Attributes
    ----------
    f1, precision, recall : float
        Of the low 2-means cluster against the corrupted points.
    auroc : float
        Of ranking the points by value, lowest first, as corrupted.
    n_flagged, n_corrupted : int
        Size of the low cluster, and of the corrupted set.
    """

    f1: float
    precision: float
    recall: float
    auroc: float
    n_flagged: int
    n_corrupted: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "f1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "auroc": self.auroc,
            "n_flagged": self.n_flagged,
            "n_corrupted": self.n_corrupted,
        }


def detection_scores(values: ValuesLike, corrupted: Any) -> DetectionScores:
    """F1 of the low 2-means cluster and AUROC of the values, against the truth.

    Parameters
    ----------
    values : ValuationResult or array-like
        One value per player (training point).
    corrupted : array-like
        Indices of the corrupted players (``ExperimentData.corrupted``) or a
        boolean mask.

    Returns
    -------
    DetectionScores

    Raises
    ------
    ValueError
        When no point, or every point, is corrupted (AUROC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    v = player_values(values)
    truth = _corrupted_mask(corrupted, len(v))
    if truth.all() or not truth.any():
        raise ValueError(
            "corrupted must mark some but not all players; got "
            f"{int(truth.sum())} of {len(v)}"
        )
    flagged = low_cluster(v)
    hits = int((flagged & truth).sum())
    precision = hits / flagged.sum() if flagged.any() else 0.0
    recall = hits / truth.sum()
    f1 = 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)
    return DetectionScores(
        f1=float(f1),
        precision=float(precision),
        recall=float(recall),
        auroc=float(roc_auc_score(truth, -v)),
        n_flagged=int(flagged.sum()),
        n_corrupted=int(truth.sum()),
    )


def random_values(n: int, seed: int = 0) -> ValuationResult:
    """A random valuation: i.i.d. uniform values, the experiments' baseline.

    Parameters
    ----------
    n : int
        Number of players.
    seed : int
        Seed of the values.
    """
    n = check_positive_int(n, "n")
    values = np.random.default_rng(seed).uniform(size=n)
    return ValuationResult(
        values,
        np.zeros(n),
        np.ones(n, dtype=np.int64),
        metadata={"method": "random", "seed": seed},
    )


# -- retraining on the cluster --------------------------------------------------
class RetrainUtility(Utility):
    """The retraining steps of curves as a game whose players are the steps.

    ``u({j})`` fits the model on the training rows ``subsets[j]`` and scores
    it on the held-out split; a plan evaluates each step once. The engine
    broadcasts this object to the workers once, and tasks carry step ranges.
    """

    def __init__(self, inner: ModelUtility, subsets: Sequence[np.ndarray]) -> None:
        self._inner = inner  # not ``data``: the engine names players after it
        self.subsets = [np.asarray(s, dtype=np.intp) for s in subsets]
        self.n = len(self.subsets)
        self.default = inner.default
        self._fingerprint: str | None = None

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        (step,) = np.asarray(players).tolist()
        return self._inner.evaluate(self.subsets[int(step)], stats)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256(b"daskval.RetrainUtility/1")
            digest.update(self._inner.fingerprint().encode())
            for subset in self.subsets:
                digest.update(subset.astype(np.int64).tobytes() + b"|")
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"class": "RetrainUtility", "n": self.n, "model": self._inner.describe()}

    def context(self) -> AbstractContextManager[Any]:
        return self._inner.context()


class _RetrainPlan(EnumerationPlan):
    """Sample ``j`` is retraining step ``j``; its value is the step's score."""

    def __init__(self, n: int) -> None:
        self.n, self.seed = n, 0

    def sample_limit(self) -> int | None:
        return self.n

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        moments = Moments.zeros(self.n)
        for step in range(start, stop):
            moments.count[step] = 1
            moments.total[step] = utility.evaluate(np.array([step]), stats)
        return {"marginals": moments}, np.ones(stop - start, dtype=np.int32)

    def describe(self) -> dict[str, Any]:
        return {"plan": "retrain-steps", "n": self.n}


class _RetrainRun(Valuation):
    method_name = "retrain-steps"

    def __init__(self, utility: RetrainUtility) -> None:
        super().__init__(utility, stop=None, seed=0)

    def make_plan(self) -> Plan:
        return _RetrainPlan(self.utility.n)


def retrain_scores(
    subsets: Sequence[np.ndarray],
    data: ExperimentData,
    model: Any,
    *,
    scoring: Any = None,
    seed: int = 0,
    client: Any = None,
) -> np.ndarray:
    """Fit ``model`` on each subset of training rows, score on the test split.

    The fits run on the Dask cluster (``client``, the current one, or the
    embedded cluster), one plan sample per distinct subset.

    Parameters
    ----------
    subsets : sequence of arrays of int
        Training row positions of each fit.
    data : ExperimentData
        The model trains on ``x_train`` and is scored on ``x_test``.
    model : scikit-learn estimator
        Cloned for every fit; a ``random_state`` is derived from the subset.
    scoring : str or callable, optional
        Default ``"accuracy"`` (classification) or ``"r2"`` (regression).
    seed : int
        Seed of the models' ``random_state``.
    client : distributed.Client, optional
        Where to fit.

    Returns
    -------
    np.ndarray
        One score per subset; an empty subset, or a fit that fails, scores 0.
    """
    utility = ModelUtility(
        model,
        data.holdout_dataset(),
        scoring=_default_scoring(data, scoring),
        seed=seed,
    )
    keys = [np.unique(np.asarray(s, dtype=np.intp)) for s in subsets]
    distinct: dict[bytes, int] = {}
    for key in keys:
        distinct.setdefault(key.tobytes(), len(distinct))
    unique = [np.frombuffer(k, dtype=np.intp) for k in distinct]
    if not unique:
        return np.empty(0)
    run = _RetrainRun(RetrainUtility(utility, unique))
    run.fit(client, memo=False, progress=False, dashboard=False)
    result = run.result_
    assert result is not None
    if result.status != "completed":
        raise RuntimeError(f"the retraining run ended early ({result.status})")
    scores = result.values
    return np.array([scores[distinct[key.tobytes()]] for key in keys])


def _default_scoring(data: ExperimentData, scoring: Any) -> Any:
    if scoring is not None:
        return scoring
    return "accuracy" if data.task == CLASSIFICATION else "r2"


# -- removal and addition curves ------------------------------------------------
@dataclass(frozen=True, eq=False)  # arrays: compare fields, not objects
class Curve:
    """Scores on the held-out split as points are removed or added by value.

    Attributes
    ----------
    method : str
        Whose values ordered the points.
    kind : {"removal", "addition"}
        Removal: train on all but the first ``fraction`` of the ordering.
        Addition: train on the first ``fraction`` only.
    order : {"high", "low"}
        Highest- or lowest-valued points first.
    fractions : np.ndarray
        Fractions of the training points removed (or added).
    n_points : np.ndarray
        Training points each model was fitted on.
    scores : np.ndarray
        The models' scores on the held-out test split.
    """

    method: str
    kind: str
    order: str
    fractions: np.ndarray
    n_points: np.ndarray
    scores: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.method} ({self.kind}, {self.order} first)"

    def area(self) -> float:
        """The mean score over the fractions (the normalised area under the curve)."""
        if len(self.fractions) < 2:
            return float(self.scores.mean())
        width = self.fractions[-1] - self.fractions[0]
        # the trapezoid rule (np.trapezoid is numpy >= 2 only)
        steps = np.diff(self.fractions) * (self.scores[1:] + self.scores[:-1]) / 2
        return float(steps.sum() / width)


def _check_fractions(fractions: Any, kind: str) -> np.ndarray:
    array = np.asarray(fractions, dtype=float)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(
            f"fractions must be a non-empty 1-D sequence, got {fractions!r}"
        )
    low_ok = (array >= 0) if kind == "removal" else (array > 0)
    if not (np.isfinite(array).all() and low_ok.all() and (array <= 1).all()):
        bounds = "[0, 1)" if kind == "removal" else "(0, 1]"
        raise ValueError(f"fractions of a {kind} curve must lie in {bounds}")
    if kind == "removal" and (array >= 1).any():
        raise ValueError("fractions of a removal curve must be below 1")
    return array


def _check_orders(orders: Any) -> tuple[str, ...]:
    if isinstance(orders, str):
        orders = (orders,)
    orders = tuple(orders)
    if not orders or any(o not in ("high", "low") for o in orders):
        raise ValueError(f"orders must be 'high', 'low' or both, got {orders!r}")
    return orders


def _named_values(values: Any, n: int) -> dict[str, np.ndarray]:
    """``{method: values in player order}`` from one result/array or a mapping."""
    if isinstance(values, Mapping):
        if not values:
            raise ValueError("values must name at least one method")
        named = {str(k): player_values(v, f"values[{k!r}]") for k, v in values.items()}
    else:
        method = (
            values.metadata.get("method", "values")
            if isinstance(values, ValuationResult)
            else "values"
        )
        named = {str(method): player_values(values)}
    for name, v in named.items():
        if len(v) != n:
            raise ValueError(
                f"values of {name!r} have {len(v)} entries but the data have "
                f"{n} training points"
            )
    return named


def _curve_subsets(
    v: np.ndarray, kind: str, order: str, fractions: np.ndarray
) -> list[np.ndarray]:
    ranking = np.argsort(-v if order == "high" else v, kind="stable")
    n = len(v)
    counts = np.rint(fractions * n).astype(int)
    if kind == "removal":
        return [np.sort(ranking[k:]) for k in counts]
    return [np.sort(ranking[:k]) for k in counts]


def _curves(
    kind: str,
    values: Any,
    data: ExperimentData,
    model: Any,
    fractions: Any,
    orders: Any,
    scoring: Any,
    seed: int,
    client: Any,
) -> list[Curve]:
    if not isinstance(data, ExperimentData):
        raise TypeError(
            "data must be an ExperimentData (daskval.datasets.load), whose test "
            f"split scores the curves; got {type(data).__name__}"
        )
    fractions = _check_fractions(fractions, kind)
    orders = _check_orders(orders)
    named = _named_values(values, data.n_train)
    plan = [(m, o) for m in named for o in orders]
    subsets = [s for m, o in plan for s in _curve_subsets(named[m], kind, o, fractions)]
    scores = retrain_scores(
        subsets, data, model, scoring=scoring, seed=seed, client=client
    ).reshape(len(plan), len(fractions))
    return [
        Curve(
            method=m,
            kind=kind,
            order=o,
            fractions=fractions.copy(),
            n_points=np.array(
                [len(s) for s in _curve_subsets(named[m], kind, o, fractions)]
            ),
            scores=scores[i],
        )
        for i, (m, o) in enumerate(plan)
    ]


def removal_curves(
    values: Any,
    data: ExperimentData,
    model: Any,
    *,
    fractions: Sequence[float] = tuple(np.linspace(0.0, 0.5, 11)),
    orders: str | Sequence[str] = ("high", "low"),
    scoring: Any = None,
    seed: int = 0,
    client: Any = None,
) -> list[Curve]:
    """Remove points in order of value, retrain, score on the held-out split.

    Parameters
    ----------
    values : ValuationResult, array-like, or mapping of name to either
        One method's values, or several (one curve per method and order).
    data : ExperimentData
        Training rows (the players of ``values``) and the held-out test split.
    model : scikit-learn estimator
        Refitted on what is left at each step.
    fractions : sequence of float
        Fractions of the training points removed, in [0, 1) (default 0, 5%,
        ..., 50%).
    orders : {"high", "low"} or both
        Remove the highest-valued points first, the lowest first, or both.
    scoring : str or callable, optional
        Default ``"accuracy"`` for classification, ``"r2"`` for regression.
    seed : int
        Seed of the models' ``random_state``.
    client : distributed.Client, optional
        Where the fits run (default: the current client or the embedded
        cluster); all steps of all curves fan out together.

    Returns
    -------
    list of Curve
        One per (method, order), methods in the given order.
    """
    return _curves(
        "removal", values, data, model, fractions, orders, scoring, seed, client
    )


def addition_curves(
    values: Any,
    data: ExperimentData,
    model: Any,
    *,
    fractions: Sequence[float] = tuple(np.linspace(0.1, 1.0, 10)),
    orders: str | Sequence[str] = ("high", "low"),
    scoring: Any = None,
    seed: int = 0,
    client: Any = None,
) -> list[Curve]:
    """Train on the first fraction of the points in order of value; score on
    the held-out split. Parameters as in :func:`removal_curves`, with
    ``fractions`` in (0, 1] (default 10%, 20%, ..., 100%)."""
    return _curves(
        "addition", values, data, model, fractions, orders, scoring, seed, client
    )


def curves_frame(curves: Sequence[Curve]) -> pd.DataFrame:
    """The curves as one long table: method, kind, order, fraction, n_points, score."""
    rows = [
        {
            "method": c.method,
            "kind": c.kind,
            "order": c.order,
            "fraction": float(f),
            "n_points": int(k),
            "score": float(s),
        }
        for c in curves
        for f, k, s in zip(c.fractions, c.n_points, c.scores, strict=True)
    ]
    return pd.DataFrame(
        rows, columns=["method", "kind", "order", "fraction", "n_points", "score"]
    )


# -- models and methods by name -------------------------------------------------
def _logistic() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def _knn_classifier() -> Any:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))


def _tree_classifier() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=5)


def _ridge() -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge())


def _tree_regressor() -> Any:
    from sklearn.tree import DecisionTreeRegressor

    return DecisionTreeRegressor(max_depth=5)


#: model name -> {task: factory}
MODELS: dict[str, dict[str, Callable[[], Any]]] = {
    "logistic": {CLASSIFICATION: _logistic},
    "knn": {CLASSIFICATION: _knn_classifier},
    "tree": {CLASSIFICATION: _tree_classifier, "regression": _tree_regressor},
    "ridge": {"regression": _ridge},
}


def make_model(name: str, task: str) -> Any:
    """A fresh scikit-learn model called ``name`` (see :data:`MODELS`) for ``task``."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    if task not in MODELS[name]:
        fits = sorted(m for m, tasks in MODELS.items() if task in tasks)
        raise ValueError(f"model {name!r} does not do {task}; use one of {fits}")
    return MODELS[name][task]()


@dataclass(frozen=True)
class MethodSpec:
    """A valuation method the command line and :func:`compare_methods` know.

    Attributes
    ----------
    help : str
        One line: what it is and what ``budget`` means for it.
    build : callable
        ``build(data, model, budget, seed) -> Valuation``.
    classification_only : bool
        True when it values classifiers only.
    regression_only : bool
        True when it values regression targets only.
    """

    help: str
    build: Callable[[Dataset, Any, int, int], Valuation]
    classification_only: bool = False
    regression_only: bool = False


def _utility(data: Dataset, model: Any) -> ModelUtility:
    from sklearn.base import is_classifier

    scoring = "accuracy" if is_classifier(model) else "r2"
    return ModelUtility(model, data, scoring=scoring)


def _build_loo(data: Dataset, model: Any, budget: int, seed: int) -> Valuation:
    from daskval.methods.loo import LOOValuation

    return LOOValuation(_utility(data, model))


def _build_tmc(data: Dataset, model: Any, budget: int, seed: int) -> Valuation:
    from daskval.methods.shapley import ShapleyValuation
    from daskval.samplers import PermutationSampler, RelativeTruncation
    from daskval.stopping import MaxEvaluations

    return ShapleyValuation(
        _utility(data, model),
        sampler=PermutationSampler(truncation=RelativeTruncation(0.01)),
        stop=MaxEvaluations(budget),
        seed=seed,
    )


def _build_shapley(data: Dataset, model: Any, budget: int, seed: int) -> Valuation:
    from daskval.methods.shapley import ShapleyValuation
    from daskval.stopping import MaxEvaluations

    return ShapleyValuation(
        _utility(data, model), stop=MaxEvaluations(budget), seed=seed
    )


def _build_banzhaf(data: Dataset, model: Any, budget: int, seed: int) -> Valuation:
    from daskval.methods.semivalue import BanzhafValuation
    from daskval.stopping import MaxEvaluations

    return BanzhafValuation(
        _utility(data, model), stop=MaxEvaluations(budget), seed=seed
    )


def _build_beta(data: Dataset, model: Any, budget: int, seed: int) -> Valuation:
    from daskval.methods.semivalue import BetaShapleyValuation
    from daskval.stopping import MaxEvaluations

    return BetaShapleyValuation(
        _utility(data, model), 16, 1, stop=MaxEvaluations(budget), seed=seed
    )


def _build_oob(data: Dataset, model: Any, budget: int, seed: int) -> Valuation:
    from daskval.methods.oob import DataOOBValuation

    return DataOOBValuation(data, model, n_estimators=budget, seed=seed)


def _build_least_core(data: Dataset, model: Any, budget: int, seed: int) -> Valuation:
    from daskval.methods.core import LeastCoreValuation
    from daskval.samplers import UniformSampler

    return LeastCoreValuation(
        _utility(data, model), sampler=UniformSampler(), n_samples=budget, seed=seed
    )


def _build_group_testing(
    data: Dataset, model: Any, budget: int, seed: int
) -> Valuation:
    from daskval.methods.group_testing import GroupTestingShapleyValuation

    return GroupTestingShapleyValuation(
        _utility(data, model), n_samples=budget, seed=seed
    )


def _standardised(data: Dataset) -> Dataset:
    """The dataset with features standardised on the training split (KNN
    distances need comparable features)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(data.x_train)
    return Dataset(
        scaler.transform(data.x_train),
        data.y_train,
        scaler.transform(data.x_test),
        data.y_test,
    )


def _build_knn(data: Dataset, model: Any, budget: int, seed: int) -> Valuation:
    from daskval.methods.knn import KNNShapleyValuation

    return KNNShapleyValuation(_standardised(data), k=5)


def _build_soft_knn(data: Dataset, model: Any, budget: int, seed: int) -> Valuation:
    from daskval.methods.knn import SoftLabelKNNShapleyValuation

    return SoftLabelKNNShapleyValuation(_standardised(data), k=5)


def _build_knn_regression(
    data: Dataset, model: Any, budget: int, seed: int
) -> Valuation:
    from daskval.methods.knn import KNNRegressionShapleyValuation

    return KNNRegressionShapleyValuation(_standardised(data), k=5)


#: method name -> MethodSpec (``random`` is the baseline, no valuation run)
METHODS: dict[str, MethodSpec] = {
    "tmc-shapley": MethodSpec(
        "truncated Monte Carlo Shapley (permutations); budget: model fits",
        _build_tmc,
    ),
    "shapley": MethodSpec(
        "permutation Monte Carlo Shapley; budget: model fits", _build_shapley
    ),
    "banzhaf": MethodSpec(
        "Data Banzhaf by maximum sample reuse; budget: model fits", _build_banzhaf
    ),
    "beta-shapley": MethodSpec(
        "Beta(16, 1) Shapley (permutations); budget: model fits", _build_beta
    ),
    "data-oob": MethodSpec(
        "Data-OOB out-of-bag scores; budget: bootstraps (model fits)", _build_oob
    ),
    "loo": MethodSpec("leave-one-out; n + 1 fits, budget ignored", _build_loo),
    "least-core": MethodSpec(
        "Monte Carlo least core; budget: sampled coalitions (model fits)",
        _build_least_core,
    ),
    "group-testing": MethodSpec(
        "group-testing Shapley; budget: sampled coalitions (model fits)",
        _build_group_testing,
    ),
    "knn-shapley": MethodSpec(
        "exact KNN-Shapley (k=5, standardised features; the model is not used, "
        "budget ignored)",
        _build_knn,
        classification_only=True,
    ),
    "soft-knn-shapley": MethodSpec(
        "exact soft-label KNN-Shapley (k=5, standardised features; the model is "
        "not used, budget ignored)",
        _build_soft_knn,
        classification_only=True,
    ),
    "knn-regression-shapley": MethodSpec(
        "exact KNN-Shapley of the KNN regression game (k=5, standardised "
        "features; the model is not used, budget ignored)",
        _build_knn_regression,
        regression_only=True,
    ),
}

#: the name of the random valuation, the baseline row of every comparison
BASELINE = "random"


def check_method(name: str, task: str) -> str:
    """``name`` if it names a method (see :data:`METHODS`) that does ``task``."""
    known = [*METHODS, BASELINE]
    if name not in known:
        raise ValueError(f"method must be one of {known}, got {name!r}")
    if name in METHODS and METHODS[name].classification_only and task != CLASSIFICATION:
        raise ValueError(f"method {name!r} values classifiers only, not {task}")
    if name in METHODS and METHODS[name].regression_only and task == CLASSIFICATION:
        raise ValueError(f"method {name!r} values regression targets only, not {task}")
    return name


def make_valuation(
    method: str, data: Dataset, model: Any, *, budget: int, seed: int = 0
) -> Valuation:
    """The valuation called ``method`` (see :data:`METHODS`), not yet run.

    Parameters
    ----------
    method : str
        A key of :data:`METHODS`.
    data : Dataset
        Training rows and the utility's scoring split.
    model : scikit-learn estimator
        The model whose training data are valued.
    budget : int
        Model fits (utility evaluations, bootstraps or sampled coalitions;
        see each method's help).
    seed : int
        Root seed.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    budget = check_positive_int(budget, "budget")
    return METHODS[method].build(data, model, budget, seed)


def _judge(result: ValuationResult, corrupted: np.ndarray) -> dict[str, Any]:
    """Detection scores as a table row; NaN scores and a note when the method
    left points without a value (too small a budget)."""
    try:
        return {**detection_scores(result, corrupted).to_dict(), "note": ""}
    except ValueError as exc:
        nan = float("nan")
        return {
            "f1": nan,
            "precision": nan,
            "recall": nan,
            "auroc": nan,
            "n_flagged": 0,
            "n_corrupted": len(corrupted),
            "note": str(exc),
        }


# -- the noisy-label comparison -------------------------------------------------
@dataclass
class Comparison:
    """The outcome of :func:`compare_methods`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per method (``random`` included), best F1 first (then
        AUROC): f1, precision, recall, auroc, n_flagged, n_corrupted, note
        (why a method has NaN scores: some points got no value), and
        n_evaluations, seconds.
    results : dict of str to ValuationResult
        Each method's values.
    curves : list of Curve
        Removal curves, when asked for (of the methods with scores).
    """

    table: pd.DataFrame
    results: dict[str, ValuationResult]
    curves: list[Curve] = field(default_factory=list)


def compare_methods(
    data: ExperimentData,
    methods: Sequence[str],
    *,
    model: Any = None,
    budget: int = 2000,
    seed: int = 0,
    client: Any = None,
    curves: bool = False,
    curve_fractions: Sequence[float] = tuple(np.linspace(0.0, 0.5, 6)),
    on_method: Callable[[str, float], None] | None = None,
) -> Comparison:
    """Run the noisy-label experiment for several methods, with a random baseline.

    Each method values ``data``'s training points (scored on its valid split);
    its values are judged by :func:`detection_scores` against
    ``data.corrupted``. A random valuation is always added as the baseline row.

    Parameters
    ----------
    data : ExperimentData
        With corrupted labels (:func:`daskval.datasets.add_label_noise`).
    methods : sequence of str
        Keys of :data:`METHODS` (``"random"`` may be listed; it is added anyway).
    model : scikit-learn estimator, optional
        Default: the ``logistic`` model of :data:`MODELS` (classification) or
        ``ridge`` (regression).
    budget : int
        Each method's budget (see :data:`METHODS`).
    seed : int
        Root seed of every method and of the baseline.
    client : distributed.Client, optional
        Where to run (default: the current client or the embedded cluster).
    curves : bool
        Also compute removal curves (highest-valued first) on the test split.
    curve_fractions : sequence of float
        The removal curves' fractions.
    on_method : callable, optional
        Called as ``on_method(name, seconds)`` after each method (progress).

    Returns
    -------
    Comparison
    """
    if not isinstance(data, ExperimentData):
        raise TypeError(
            "data must be an ExperimentData (daskval.datasets), got "
            f"{type(data).__name__}"
        )
    if isinstance(methods, str) or not methods:
        raise ValueError(
            "methods must be a non-empty list of method names, e.g. ['loo', 'banzhaf']"
        )
    names = [check_method(m, data.task) for m in dict.fromkeys(methods)]
    budget = check_positive_int(budget, "budget")
    if len(data.corrupted) == 0:
        raise ValueError(
            "data has no corrupted points: add_label_noise(data, 0.2) first"
        )
    if model is None:
        model = make_model(
            "logistic" if data.task == CLASSIFICATION else "ridge", data.task
        )
    dataset = data.dataset()
    # build every valuation first: bad settings fail before any cluster work
    valuations = {
        m: make_valuation(m, dataset, model, budget=budget, seed=seed)
        for m in names
        if m != BASELINE
    }
    results: dict[str, ValuationResult] = {}
    rows = []
    for name in [*valuations, BASELINE]:
        began = time.monotonic()
        if name == BASELINE:
            result = random_values(data.n_train, seed)
        else:
            valuation = valuations[name].fit(client, progress=False, dashboard=False)
            assert valuation.result_ is not None
            result = valuation.result_
        seconds = time.monotonic() - began
        if on_method is not None:
            on_method(name, seconds)
        results[name] = result
        rows.append(
            {
                "method": name,
                **_judge(result, data.corrupted),
                "n_evaluations": result.n_evaluations,
                "seconds": seconds,
            }
        )
    table = (
        pd.DataFrame(rows)
        .sort_values(["f1", "auroc"], ascending=False, kind="stable")
        .set_index("method")
    )
    found = []
    judged = {k: r for k, r in results.items() if not table.loc[k, "note"]}
    if curves:
        found = removal_curves(
            judged,
            data,
            model,
            fractions=curve_fractions,
            orders="high",
            seed=seed,
            client=client,
        )
    return Comparison(table=table, results=results, curves=found)
