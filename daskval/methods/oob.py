"""Data-OOB (Kwon & Zou, 2023): how well a bootstrap ensemble predicts each
training point from the models that did not see it.

Bootstrap ``b`` draws ``m`` training points with replacement (``w_bi`` is how
often point ``i`` was drawn) and fits a fresh clone of the model on them. The
value of point ``i`` is its mean out-of-bag score::

    psi_i = sum_b 1(w_bi = 0) T(y_i, f_b(x_i)) / sum_b 1(w_bi = 0)

with ``T`` a per-point score (accuracy for classifiers, negative squared error
for regressors, or any per-sample function). Mislabelled or atypical points
are predicted badly by the models that never saw them, and get low values.

As a :class:`~daskval.plan.Plan`, sample ``j`` is bootstrap ``j``: its draws
and its model's ``random_state`` come from ``(seed, j)`` alone, a task is a
range of bootstraps, and per-point statistics are tree-summed in bootstrap
order, so the values for a fixed seed do not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import numbers
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from daskval._validation import check_positive_int
from daskval.accumulate import Moments, Statistic
from daskval.data import Dataset
from daskval.methods.base import Valuation
from daskval.plan import Estimate, Plan
from daskval.samplers import sample_rng
from daskval.stopping import StoppingCriterion
from daskval.utility import (
    _WARNINGS,
    EvalStats,
    Utility,
    _check_model,
    _check_picklable,
    _FreshModels,
    _sha,
    _token,
)

__all__ = [
    "DataOOBValuation",
    "OOBUtility",
    "accuracy_per_point",
    "neg_squared_error_per_point",
]

WEIGHTINGS = ("auto", "repeat", "sample_weight")
_T = TypeVar("_T")
# model seeds drawn per bootstrap lie in [0, 2**31), as RandomState accepts
_SEED_BOUND = 2**31


def accuracy_per_point(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """1.0 where the prediction equals the label, else 0.0 (the default
    score of classifiers)."""
    return (np.asarray(y_pred) == np.asarray(y_true)).astype(np.float64)


def neg_squared_error_per_point(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``-(y_true - y_pred) ** 2`` (the default score of regressors)."""
    residual = np.asarray(y_true, dtype=np.float64) - np.asarray(
        y_pred, dtype=np.float64
    )
    return -(residual**2)


# --------------------------------------------------------------------------
# The worker-side part: data, model and score, broadcast once per worker


class OOBUtility(Utility):
    """The model, data and per-point score of a Data-OOB run.

    The engine broadcasts it to the workers like any utility; the plan calls
    :meth:`oob_scores` once per bootstrap. As a game, ``u(S)`` is the mean
    per-point score, on the scoring split, of the model fitted on the rows of
    ``S`` (Data-OOB itself never calls it).

    Parameters
    ----------
    model : scikit-learn estimator
        Cloned for every bootstrap, never modified.
    data : Dataset
        The training rows (or groups) are the players.
    score : callable
        ``score(y_true, y_pred) -> array`` of one float per sample.
    weighting : {"repeat", "sample_weight"}
        How a bootstrap is fitted (resolved from ``"auto"`` by
        :class:`DataOOBValuation`).
    default : float
        The score of the empty coalition and of failed fits in :meth:`evaluate`.
    """

    def __init__(
        self,
        model: Any,
        data: Dataset,
        score: Callable[[np.ndarray, np.ndarray], np.ndarray],
        weighting: str,
        default: float = 0.0,
    ) -> None:
        self.model = model
        self.data = data
        self.score = score
        self.weighting = weighting
        self.default = default
        self.n = data.n
        self._models = _FreshModels(model)
        self._unit_of_row = _unit_of_row(data)
        self._group_sizes = (
            None
            if self._unit_of_row is None
            else np.bincount(self._unit_of_row, minlength=data.n).astype(np.float64)
        )
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = _sha(
                "daskval.OOBUtility/1",
                self.data.fingerprint(),
                _token(self.model),
                _token(self.score),
                self.weighting,
                repr(self.default),
            )
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {
            "class": "OOBUtility",
            "n": self.n,
            "model": _token(self.model)[:500],
            "score": getattr(self.score, "__qualname__", type(self.score).__name__),
            "weighting": self.weighting,
        }

    def context(self) -> contextlib.AbstractContextManager[Any]:
        # the data were validated when the Dataset was built; scikit-learn's
        # configuration is thread-local, so this holds for the task's thread
        import sklearn

        return sklearn.config_context(
            assume_finite=not self.data.allow_nan, skip_parameter_validation=True
        )

    # -- one bootstrap ----------------------------------------------------------
    def oob_scores(
        self, counts: np.ndarray, model_seed: int, stats: EvalStats
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fit one bootstrap and score the players it left out.

        Parameters
        ----------
        counts : np.ndarray of int
            How many times each player was drawn (length ``n``).
        model_seed : int
            The seed of the model's ``random_state`` parameters, if any.
        stats : EvalStats
            Counts the fit as one evaluation, and its failure or warnings.

        Returns
        -------
        players, scores : np.ndarray
            The out-of-bag players and their scores; both empty when the fit
            failed (counted in ``stats``) or when every player was drawn.
        """
        stats.n_evaluations += 1
        row_counts = counts if self._unit_of_row is None else counts[self._unit_of_row]
        out_rows = np.flatnonzero(row_counts == 0)
        if len(out_rows) == 0:
            return _NOTHING
        scores = _guarded(
            lambda: self._fit_and_score(row_counts, out_rows, model_seed), stats
        )
        if scores is None:
            return _NOTHING
        if not np.isfinite(scores).all():
            stats.record_failure(
                f"the score function gave {int((~np.isfinite(scores)).sum())} "
                "non-finite per-point scores"
            )
            return _NOTHING
        return self._per_player(out_rows, scores)

    def _fit_and_score(
        self, row_counts: np.ndarray, out_rows: np.ndarray, model_seed: int
    ) -> np.ndarray:
        model = self._models.make(model_seed)
        in_rows = np.flatnonzero(row_counts)
        if self.weighting == "sample_weight":
            x, y = self.data.train_subset(in_rows)
            weights = row_counts[in_rows].astype(np.float64)
            model.fit(x, y, sample_weight=weights)
        else:
            # the bootstrap itself: each drawn row as often as it was drawn,
            # rows in increasing order
            x, y = self.data.train_subset(np.repeat(in_rows, row_counts[in_rows]))
            model.fit(x, y)
        x_out, y_out = self.data.train_subset(out_rows)
        predicted = model.predict(x_out)
        scores = np.asarray(self.score(y_out, predicted), dtype=np.float64)
        if scores.shape != (len(out_rows),):
            raise ValueError(
                f"score must return one value per sample, shape ({len(out_rows)},);"
                f" got shape {scores.shape}"
            )
        return scores

    def _per_player(
        self, out_rows: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-point scores, or a group's mean over its (all out-of-bag) rows."""
        if self._unit_of_row is None:
            return out_rows, scores
        assert self._group_sizes is not None
        units = self._unit_of_row[out_rows]
        sums = np.bincount(units, weights=scores, minlength=self.n)
        players = np.unique(units)
        return players, sums[players] / self._group_sizes[players]

    # -- the game interface -------------------------------------------------------
    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        stats.n_evaluations += 1
        if len(players) == 0:
            return self.default
        value = _guarded(lambda: self._mean_test_score(players), stats)
        if value is None:
            return self.default
        if not np.isfinite(value):
            stats.record_failure(f"the mean score was {value!r}")
            return self.default
        return value

    def _mean_test_score(self, players: np.ndarray) -> float:
        x, y = self.data.train_subset(self.data.rows(players))
        model = self._models.make(0)
        model.fit(x, y)
        predicted = model.predict(self.data.x_test)
        return float(np.mean(self.score(self.data.y_test, predicted)))


def _guarded(call: Callable[[], _T], stats: EvalStats) -> _T | None:
    """``call()``, or None when it raises (counted in ``stats``); the warnings
    it raises are counted too, never shown."""
    result = None
    with _WARNINGS.collect() as caught:
        try:
            result = call()
        except Exception:
            stats.record_failure(traceback.format_exc())
    if caught:
        stats.record_warnings(caught)
    return result


_NOTHING = (np.empty(0, dtype=np.intp), np.empty(0))


def _unit_of_row(data: Dataset) -> np.ndarray | None:
    """The player (group) of each training row; None when rows are players."""
    if data.groups is None:
        return None
    units = np.empty(data.n_train, dtype=np.intp)
    for group in range(data.n):
        units[data.rows(np.array([group]))] = group
    return units


# --------------------------------------------------------------------------
# The plan: sample j is bootstrap j


def draw_bootstrap(seed: int, index: int, n: int, size: int) -> tuple[np.ndarray, int]:
    """Bootstrap ``index`` of a run seeded with ``seed``.

    ``size`` players are drawn uniformly with replacement from the generator
    :func:`~daskval.samplers.sample_rng` ``(seed, index)``; its next draw, an
    integer in ``[0, 2**31)``, seeds the model's ``random_state``.

    Returns
    -------
    counts : np.ndarray of int64
        How many times each of the ``n`` players was drawn.
    model_seed : int
        The seed of the model fitted on this bootstrap.
    """
    rng = sample_rng(seed, index)
    draws = rng.integers(0, n, size=size)
    model_seed = int(rng.integers(_SEED_BOUND))
    return np.bincount(draws, minlength=n), model_seed


class _RunningMoments:
    """Per-player count, sum and M2 of scores added one bootstrap at a time.

    Welford's update on the out-of-bag players only: O(out-of-bag) work per
    bootstrap, never a (bootstraps x players) matrix.
    """

    def __init__(self, n: int) -> None:
        self.count = np.zeros(n, dtype=np.int64)
        self.total = np.zeros(n)
        self.m2 = np.zeros(n)

    def add(self, players: np.ndarray, scores: np.ndarray) -> None:
        if len(players) == 0:
            return
        count = self.count[players]
        old_mean = self.total[players] / np.maximum(count, 1)
        total = self.total[players] + scores
        new_mean = total / (count + 1)
        self.count[players] = count + 1
        self.total[players] = total
        self.m2[players] += (scores - old_mean) * (scores - new_mean)

    def moments(self) -> Moments:
        return Moments(self.count, self.total, self.m2)


def _bootstrap_scorer(
    utility: Utility,
) -> Callable[[np.ndarray, int, EvalStats], tuple[np.ndarray, np.ndarray]]:
    """The utility's ``oob_scores`` (through the workers' memo wrapper too)."""
    scorer = getattr(utility, "oob_scores", None)
    if scorer is None:
        raise TypeError(f"Data-OOB needs an OOBUtility, got {type(utility).__name__}")
    return scorer


class OOBPlan(Plan):
    """Sample ``j`` is bootstrap ``j``; the statistic is each player's
    out-of-bag scores (count, sum, M2).

    Parameters
    ----------
    n : int
        Number of players.
    seed : int
        Root seed of the bootstraps.
    n_estimators : int
        Number of bootstraps (the sample limit).
    bootstrap_size : int
        Players drawn per bootstrap.
    """

    statistics = ("oob",)

    def __init__(self, n: int, seed: int, n_estimators: int, bootstrap_size: int):
        self.n, self.seed = n, seed
        self.n_estimators = n_estimators
        self.bootstrap_size = bootstrap_size

    def sample_limit(self) -> int | None:
        return self.n_estimators

    def max_evaluations_per_sample(self) -> int:
        return 1

    def fixed_evaluations_per_sample(self) -> int | None:
        return 1

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        oob_scores = _bootstrap_scorer(utility)
        running = _RunningMoments(self.n)
        for index in range(start, stop):
            counts, model_seed = draw_bootstrap(
                self.seed, index, self.n, self.bootstrap_size
            )
            running.add(*oob_scores(counts, model_seed, stats))
        return {"oob": running.moments()}, np.ones(stop - start, dtype=np.int32)

    def estimate(self, moments: dict[str, Statistic]) -> Estimate:
        m = moments["oob"]
        assert isinstance(m, Moments)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(m.count > 0, m.total / np.maximum(m.count, 1), np.nan)
        return values, m.stderr, m.count.copy()

    def describe(self) -> dict[str, Any]:
        return {
            "plan": "data_oob",
            "n": self.n,
            "n_estimators": self.n_estimators,
            "bootstrap_size": self.bootstrap_size,
        }


# --------------------------------------------------------------------------
# The valuation


class DataOOBValuation(Valuation):
    """Data-OOB (Kwon & Zou, 2023): each point's mean out-of-bag score.

    ``n_estimators`` bootstraps of ``max_samples`` points each are drawn;
    a fresh clone of ``model`` is fitted on each, and predicts only the
    points that bootstrap left out. The value of point ``i`` is the mean of
    ``score(y_i, f_b(x_i))`` over the bootstraps ``b`` that left it out;
    low values flag points the other points do not support (such as wrong
    labels). Bootstraps run as tasks on the cluster, in ranges, and their
    per-point statistics are summed in bootstrap order: the values are the
    same (to 1e-12) for a fixed seed on any number of workers.

    Parameters
    ----------
    data : Dataset
        The training rows (or groups) to value. The scoring split is not
        used by Data-OOB.
    model : scikit-learn estimator
        Any estimator with ``fit`` and ``predict`` (a Pipeline too); it is
        cloned for every bootstrap. When it (or a step of it) has a
        ``random_state``, bootstrap ``j`` sets it from ``(seed, j)``.
    n_estimators : int
        The number of bootstraps (default 200; the authors' reference
        notebook uses 800 trees).
    max_samples : int or float, optional
        Points drawn per bootstrap: an int in ``[1, n]``, or a fraction in
        ``(0, 1]`` of the ``n`` players (rounded, at least 1). Default: ``n``.
    seed : int, optional
        Root seed: bootstrap ``j`` depends on ``(seed, j)`` only (see
        :func:`draw_bootstrap`). None draws one (kept in the metadata).
    score : callable, optional
        ``score(y_true, y_pred) -> array`` with one float per sample (higher
        is better). Default: :func:`accuracy_per_point` for classifiers,
        :func:`neg_squared_error_per_point` for regressors; required for
        other estimators.
    weighting : {"auto", "repeat", "sample_weight"}
        How a bootstrap is fitted. ``"repeat"`` is the definition: the drawn
        rows, each as often as drawn (in row order). ``"sample_weight"``
        fits each drawn row once with its count as ``sample_weight``, as
        scikit-learn's ``BaggingClassifier`` does (it keeps the out-of-bag
        rows at weight zero; here they are left out), which fits fewer rows.
        ``"auto"`` (default) uses ``sample_weight`` when ``model.fit``
        accepts it, else repeats rows. See Notes for when both agree.
    stop : StoppingCriterion, optional
        End earlier (e.g. ``MaxTime``); the run never exceeds
        ``n_estimators`` bootstraps.

    Notes
    -----
    Result. ``values`` are the mean out-of-bag scores, ``counts`` the number
    of bootstraps that left each point out and fitted, and ``stderr`` the
    standard error of each mean (the sample standard deviation of the point's
    out-of-bag scores over ``sqrt(count)``; the bootstraps are independent
    given the data). A point no bootstrap left out (rare unless
    ``n_estimators`` is small: each bootstrap leaves a point out with
    probability about ``exp(-max_samples / n)``) gets value NaN, stderr inf
    and count 0; a point left out once has stderr inf.

    Failures. A bootstrap whose fit, prediction or score raises, returns a
    score of the wrong shape, or gives a non-finite score counts as a failed
    evaluation (``result.n_failed``, ``metadata["failures"]``) and adds
    nothing to any point; the run goes on (it stops with an error, naming
    the failure, only when every fit fails). Classifiers fitted on a
    bootstrap that lacks a class predict the classes they saw.

    Weighting. Counts as ``sample_weight`` give the same model as repeated
    rows for estimators that honour scikit-learn's frequency semantics of
    ``sample_weight``. Checked in the tests: ``DecisionTreeClassifier``
    gives identical trees (with the default ``min_samples_split`` and
    ``min_samples_leaf``; larger ones count rows, not weight, and may then
    differ), ``LinearRegression`` the same fit to rounding. Convex models
    fitted iteratively (LogisticRegression) reach the same optimum up to
    the solver's tolerance. Regression trees accumulate
    weighted sums in another order, which can flip near-tied splits deep in
    a tree: their values are of the same estimator but not bit-equal. Use
    ``"repeat"`` for the definition whatever the model.

    A bootstrap that leaves no point out (possible for tiny ``n`` only) is
    counted as an evaluation but not fitted, and adds nothing.

    Groups. With ``Dataset(groups=...)`` the players are the groups: a
    bootstrap draws ``max_samples`` groups with replacement and fits on
    their rows, each as often as its group was drawn; a group is
    out-of-bag when it was not drawn, and its score in that bootstrap is the
    mean of its rows' per-point scores.
    """

    method_name = "data_oob"

    def __init__(
        self,
        data: Dataset,
        model: Any,
        *,
        n_estimators: int = 200,
        max_samples: int | float | None = None,
        seed: int | None = None,
        score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        weighting: str = "auto",
        stop: StoppingCriterion | None = None,
    ) -> None:
        if not isinstance(data, Dataset):
            raise TypeError(
                f"data must be a daskval.Dataset, got {type(data).__name__}"
            )
        if data.n < 2:
            raise ValueError(
                f"data must have at least 2 players for out-of-bag scores, got {data.n}"
            )
        _check_model(model)
        if not hasattr(model, "predict"):
            raise TypeError(
                f"model must have predict(), which {type(model).__name__} lacks"
            )
        _check_picklable(model, "model")
        self.n_estimators = check_positive_int(n_estimators, "n_estimators")
        self.bootstrap_size = _check_max_samples(max_samples, data.n)
        self.max_samples = max_samples
        score_fn = _resolve_score(score, model, data)
        self.weighting = _resolve_weighting(weighting, model)
        self.data = data
        self.model = model
        utility = OOBUtility(model, data, score_fn, self.weighting)
        super().__init__(utility, stop=stop, seed=seed)

    def make_plan(self) -> Plan:
        return OOBPlan(self.data.n, self.seed, self.n_estimators, self.bootstrap_size)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "n_estimators": self.n_estimators,
            "max_samples": self.max_samples,
            "bootstrap_size": self.bootstrap_size,
            "weighting": self.weighting,
        }


def _check_max_samples(max_samples: Any, n: int) -> int:
    """The bootstrap size for ``max_samples``, or raise naming it."""
    if max_samples is None:
        return n
    expected = f"an int in [1, {n}], a fraction in (0, 1], or None"
    if isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Real):
        raise TypeError(
            f"max_samples must be {expected}, got {type(max_samples).__name__}"
        )
    if isinstance(max_samples, numbers.Integral):
        size = int(max_samples)
        if not 1 <= size <= n:
            raise ValueError(f"max_samples must be {expected}, got {size}")
        return size
    fraction = float(max_samples)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"max_samples must be {expected}, got {max_samples}")
    return max(1, round(fraction * n))


def _resolve_score(
    score: Any, model: Any, data: Dataset
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The per-point score: the given one (checked on a few labels) or the
    model kind's default."""
    from sklearn.base import is_classifier, is_regressor
    from sklearn.utils.multiclass import type_of_target

    name = type(model).__name__
    if is_classifier(model) and type_of_target(data.y_train) == "continuous":
        raise ValueError(
            f"y_train holds continuous values but model {name} is a classifier; "
            "use a regressor"
        )
    if score is None:
        if is_classifier(model):
            return accuracy_per_point
        if is_regressor(model):
            return neg_squared_error_per_point
        raise ValueError(
            f"model {name} is neither a classifier nor a regressor; pass "
            "score=f(y_true, y_pred) -> array of per-sample scores"
        )
    if not callable(score):
        raise TypeError(
            "score must be a callable score(y_true, y_pred) -> array of "
            f"per-sample scores, got {type(score).__name__}"
        )
    _check_picklable(score, "score")
    _try_score(score, np.asarray(data.y_train[:3]))
    return score


def _try_score(score: Callable[..., Any], labels: np.ndarray) -> None:
    """Call ``score`` on a few labels (as if predicted perfectly) and raise
    naming it unless it gives one finite float per sample."""
    try:
        out = np.asarray(score(labels, labels.copy()), dtype=np.float64)
    except Exception as exc:
        raise ValueError(
            "score(y_true, y_pred) raised on the first training labels: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if out.shape != labels.shape:
        raise ValueError(
            "score(y_true, y_pred) must return one value per sample: for "
            f"{len(labels)} samples it returned shape {out.shape}"
        )
    if not np.isfinite(out).all():
        raise ValueError(
            "score(y_true, y_pred) returned non-finite values for perfect "
            f"predictions: {out.tolist()}"
        )


def _resolve_weighting(weighting: Any, model: Any) -> str:
    """``"repeat"`` or ``"sample_weight"`` for ``weighting``, or raise naming it."""
    from sklearn.utils.validation import has_fit_parameter

    if not isinstance(weighting, str) or weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    accepts = has_fit_parameter(model, "sample_weight")
    if weighting == "sample_weight" and not accepts:
        raise ValueError(
            f"weighting='sample_weight' needs model.fit(..., sample_weight=...), "
            f"which {type(model).__name__} does not accept; use 'repeat'"
        )
    if weighting == "auto":
        return "sample_weight" if accepts else "repeat"
    return weighting
