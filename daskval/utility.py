"""Utilities: the cooperative game u(S) that a valuation estimates values of.

A utility maps a coalition of players (an array of player indices) to a float.
:class:`ModelUtility` trains a fresh clone of a scikit-learn model on the
coalition's training rows and scores it on the dataset's scoring split;
:class:`FunctionUtility` wraps any picklable function.

Utilities never raise on a failing evaluation: the failure is counted in an
:class:`EvalStats`, the first traceback kept, and the documented default
returned, so a model that breaks on a few subsets cannot crash a long run.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import numbers
import threading
import traceback
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import pandas as pd

from daskval._validation import check_positive_int
from daskval.data import Dataset

__all__ = [
    "EvalStats",
    "FunctionUtility",
    "ModelUtility",
    "ShardCore",
    "ShardableUtility",
    "Sharding",
    "Utility",
    "UtilityChain",
    "WrappedUtility",
    "subset_seed",
]

_MAX_TRACEBACK = 4000
_MAX_WARNING_KINDS = 50


@dataclass
class EvalStats:
    """Counters of one stretch of utility evaluations; merge with ``+=``.

    Attributes
    ----------
    n_evaluations : int
        Utility calls made.
    n_failed : int
        Calls whose fit or score raised, or returned NaN (scored the default).
    first_failure : str or None
        The traceback of the first failure, for the error report.
    warnings : dict
        ``"Category: message"`` -> number of times a fit or score warned.
    failures : dict
        ``"ErrorType: message"`` -> number of failures of that kind (e.g. a
        classifier refusing a coalition with a single class).
    memo_hits : int
        Calls answered by the workers' memo (counted in ``n_evaluations`` too,
        with the failures and warnings of the call that filled the entry).
    memo_misses : int
        Calls the memo passed on to the utility; zero with the memo off.
    """

    n_evaluations: int = 0
    n_failed: int = 0
    first_failure: str | None = None
    warnings: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    memo_hits: int = 0
    memo_misses: int = 0

    def __iadd__(self, other: EvalStats) -> EvalStats:
        self.n_evaluations += other.n_evaluations
        self.n_failed += other.n_failed
        self.memo_hits += other.memo_hits
        self.memo_misses += other.memo_misses
        if self.first_failure is None:
            self.first_failure = other.first_failure
        for key, count in other.warnings.items():
            _count_kind(self.warnings, key, count)
        for key, count in other.failures.items():
            _count_kind(self.failures, key, count)
        return self

    def record_failure(self, message: str) -> None:
        """Count a failure; ``message`` is a traceback or a one-line reason."""
        self.n_failed += 1
        if self.first_failure is None:
            self.first_failure = message[-_MAX_TRACEBACK:]
        lines = [line for line in message.strip().splitlines() if line.strip()]
        _count_kind(self.failures, lines[-1][:200] if lines else "unknown", 1)

    def record_warnings(self, caught: list[Any]) -> None:
        for w in caught:
            text = str(w.message).strip().splitlines()
            key = f"{w.category.__name__}: {text[0][:200] if text else ''}"
            _count_kind(self.warnings, key, 1)


def _count_kind(counts: dict[str, int], key: str, n: int) -> None:
    """Add ``n`` to ``counts[key]``, keeping at most a bounded number of kinds."""
    if key in counts or len(counts) < _MAX_WARNING_KINDS:
        counts[key] = counts.get(key, 0) + n


class _WarningCollector:
    """Collect the warnings each thread raises, with threads evaluating at once.

    ``warnings.catch_warnings`` swaps process-wide state, so overlapping uses
    in threads (a worker with several threads) lose or leak warnings and can
    leave the filters changed for good. Here the first collecting thread
    installs one routing ``showwarning`` and an "always" filter, the last one
    removes them, and each warning goes to the list of the thread raising it
    (other threads' warnings go to the previous ``showwarning``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._active = 0
        self._previous: Callable[..., Any] = warnings.showwarning
        self._filter: Any = None

    @contextlib.contextmanager
    def collect(self) -> Iterator[list[warnings.WarningMessage]]:
        """Warnings raised in this thread inside the block land in the list."""
        outer = getattr(self._local, "sink", None)
        sink: list[warnings.WarningMessage] = []
        self._local.sink = sink
        self._enter()
        try:
            yield sink
        finally:
            self._exit()
            self._local.sink = outer

    def _enter(self) -> None:
        with self._lock:
            if self._active == 0:
                self._previous = warnings.showwarning
                warnings.showwarning = self._show
                # count repeats too; module=".*" makes the filter our own, so
                # an identical user filter is neither moved nor removed
                warnings.filterwarnings("always", module=".*")
                self._filter = warnings.filters[0]
            self._active += 1

    def _exit(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                warnings.showwarning = self._previous
                with contextlib.suppress(ValueError):
                    cast("list[Any]", warnings.filters).remove(self._filter)

    def _show(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        sink = getattr(self._local, "sink", None)
        if sink is None:
            self._previous(message, category, filename, lineno, file, line)
        else:
            sink.append(
                warnings.WarningMessage(message, category, filename, lineno, file, line)
            )


_WARNINGS = _WarningCollector()


def subset_seed(seed: int, players: np.ndarray) -> int:
    """A 31-bit seed that is a function of ``seed`` and the set ``players`` only."""
    canonical = np.sort(np.asarray(players, dtype=np.int64))
    digest = hashlib.blake2b(
        canonical.tobytes(),
        digest_size=8,
        key=int(seed).to_bytes(8, "little", signed=True),
    )
    return int.from_bytes(digest.digest(), "little") & 0x7FFFFFFF


class Utility(ABC):
    """A cooperative game over players ``0 .. n-1``.

    Subclasses implement :meth:`evaluate` and :meth:`fingerprint`. The engine
    calls :meth:`evaluate` inside :meth:`context` for a whole batch.
    """

    n: int
    default: float

    @abstractmethod
    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        """u(players), counting the call (and any failure) in ``stats``."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A hash that is stable across processes and runs and identifies u."""

    def identity(self) -> str:
        """A hash that identifies this object's behaviour, not only u.

        The :meth:`fingerprint` identifies the cold values u(S) (what a memo
        may key on); settings that leave those unchanged but change what the
        object computes elsewhere (warm starts in :meth:`chain`) are left out
        of it and added here. Two utilities may share one copy on the
        workers only when their identities are equal.
        """
        return self.fingerprint()

    def describe(self) -> dict[str, Any]:
        """A small JSON-able description for result metadata."""
        return {"class": type(self).__name__, "n": self.n}

    def context(self) -> contextlib.AbstractContextManager[Any]:
        """A context to hold while evaluating a batch (settings for the hot loop)."""
        return contextlib.nullcontext()

    def __call__(self, players: Any) -> float:
        """u(players) for interactive use; the players are player indices."""
        stats = EvalStats()
        with self.context():
            return self.evaluate(np.asarray(players, dtype=np.intp), stats)

    def chain(self) -> UtilityChain:
        """An evaluator for the successive coalitions of one path.

        A plan that walks growing coalitions (the prefixes of a permutation)
        makes one chain per path and evaluates every coalition of the path
        through it, in order, inside :meth:`context`. A utility may then reuse
        work from one coalition to the next (:class:`ModelUtility` with
        ``warm_start=True``); by default every coalition is a plain
        :meth:`evaluate`.

        Returns
        -------
        UtilityChain
            A fresh chain; it is not thread-safe and belongs to one task.
        """
        return UtilityChain(self)


class WrappedUtility(Utility):
    """A utility seen through a wrapper that changes only how it evaluates.

    Everything else is the wrapped utility's own: its fingerprint, identity,
    context, description and any further attribute. Subclasses override
    :meth:`evaluate` (and :meth:`chain` for path-dependent chains).

    Parameters
    ----------
    utility : Utility
        The utility wrapped.
    """

    def __init__(self, utility: Utility) -> None:
        self.utility = utility
        self.n = utility.n
        self.default = utility.default

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        return self.utility.evaluate(players, stats)

    def fingerprint(self) -> str:
        return self.utility.fingerprint()

    def identity(self) -> str:
        return self.utility.identity()

    def describe(self) -> dict[str, Any]:
        return self.utility.describe()

    def context(self) -> contextlib.AbstractContextManager[Any]:
        return self.utility.context()

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes the wrapper lacks (e.g. a ModelUtility's
        # model or data); "utility" itself is excluded to survive copies
        if name == "utility":
            raise AttributeError(name)
        return getattr(self.utility, name)


@runtime_checkable
class ShardCore(Protocol):
    """The part of a sharded utility that every worker holds (see
    :class:`ShardableUtility`): a :class:`Utility` that computes a shard's
    part of a range of samples and joins the parts of every shard.
    """

    def shard_part(self, shard: Any, start: int, stop: int) -> Any:
        """The part of samples ``start .. stop-1`` that ``shard`` holds the
        rows for (runs on a worker that holds the shard: small result)."""
        ...

    def with_parts(self, start: int, stop: int, parts: Sequence[Any]) -> Utility:
        """A utility that computes samples ``start .. stop-1`` as the whole
        utility would, from ``parts`` (one per shard, in shard order): what
        the plan's ``run`` is given for that range."""
        ...


@dataclass(frozen=True)
class Sharding:
    """A utility split for a sharded run.

    Attributes
    ----------
    core : Utility
        What every worker holds (broadcast like any utility); it also
        implements :class:`ShardCore`.
    shards : list
        Consecutive rows, picklable, each held by one worker.
    rows_per_shard : int
        Rows per shard (the last one may hold fewer).
    max_samples_per_task : int or None
        At most this many samples per task: the parts of a task's range
        are joined in one worker's memory (None: no limit).
    """

    core: Utility
    shards: list[Any]
    rows_per_shard: int
    max_samples_per_task: int | None = None


@runtime_checkable
class ShardableUtility(Protocol):
    """A utility whose rows can be split over the workers instead of
    broadcast to each of them (a sharded run of the engine).

    The engine shards a run when the utility would take too much of a
    worker's memory to broadcast, or when :attr:`rows_per_shard_hint` asks
    for it. It then broadcasts :attr:`Sharding.core`, puts each shard on
    one worker, and computes a task over samples ``[start, stop)`` as one
    small task per shard (:meth:`ShardCore.shard_part`, next to its shard)
    and one that joins their parts (:meth:`ShardCore.with_parts`) and runs
    the plan on the result. The values must be those of the whole utility
    up to the grouping of sums.

    A sharded utility serves plans without anchor coalitions and with a
    fixed cost per sample (the core alone evaluates nothing).
    """

    #: rows per shard asked for by the caller (None: the engine decides)
    rows_per_shard_hint: int | None

    def shard_row_count(self) -> int:
        """How many rows the shards are cut from."""
        ...

    def shard_nbytes(self) -> int:
        """Bytes of the rows that sharding spreads (what a broadcast would
        put on every worker)."""
        ...

    def split(self, rows_per_shard: int) -> Sharding:
        """The core and shards of ``rows_per_shard`` consecutive rows each."""
        ...


class UtilityChain:
    """Evaluates the coalitions of one path, each a superset of the one before.

    This base class is cold: each coalition is ``utility.evaluate``, so its
    values are the path-independent u(S). Subclasses may carry state from one
    coalition to the next; their values then depend on the path and must not
    be cached under the utility's fingerprint.

    Parameters
    ----------
    utility : Utility
        The game the chain evaluates.
    """

    def __init__(self, utility: Utility) -> None:
        self.utility = utility

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        """u(players) after the previous coalitions of this path, counted in
        ``stats`` exactly as :meth:`Utility.evaluate` counts."""
        return self.utility.evaluate(players, stats)


# --------------------------------------------------------------------------
# Fingerprints


def model_name(model: Any) -> str:
    """A short name of an estimator for titles: its class, and for a Pipeline
    (or anything with ``steps``) the classes of its steps,
    ``"Pipeline(StandardScaler, LogisticRegression)"``."""
    steps = getattr(model, "steps", None)
    name = type(model).__name__
    if not isinstance(steps, list):
        return name
    inner = ", ".join(
        model_name(step[1]) if isinstance(step, tuple) and len(step) == 2 else "?"
        for step in steps
    )
    return f"{name}({inner})"


def _token(value: Any, depth: int = 0) -> str:
    """A deterministic text for a parameter value (estimators recursively)."""
    if depth > 20:
        return "..."
    if hasattr(value, "get_params") and hasattr(value, "fit"):
        params = value.get_params(deep=False)
        inner = ",".join(f"{k}={_token(params[k], depth + 1)}" for k in sorted(params))
        return f"{type(value).__module__}.{type(value).__qualname__}({inner})"
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return f"ndarray:object{value.shape}:{_token(value.tolist(), depth + 1)}"
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes())
        return f"ndarray:{value.dtype.str}{value.shape}:{digest.hexdigest()}"
    if isinstance(value, (pd.DataFrame, pd.Series)):
        hashed = pd.util.hash_pandas_object(value, index=True).to_numpy()
        digest = hashlib.sha256(hashed.tobytes())
        return f"{type(value).__name__}:{value.shape}:{digest.hexdigest()}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_token(v, depth + 1) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(
                f"{k!r}:{_token(value[k], depth + 1)}" for k in sorted(value, key=repr)
            )
            + "}"
        )
    if callable(value):
        return _callable_token(value)
    return repr(value)


def _callable_token(value: Any) -> str:
    """A function's name plus a digest of how cloudpickle ships it.

    Importable functions and classes travel by reference, so their digest is
    their name; lambdas and local functions travel by value (code, defaults,
    closure), so two lambdas in one module get different tokens.
    """
    import cloudpickle

    module = getattr(value, "__module__", "")
    name = f"{module}.{getattr(value, '__qualname__', None) or repr(value)}"
    try:
        payload = cloudpickle.dumps(value)
    except Exception:  # unpicklable: the engine will say so; identity is the name
        return name
    return f"{name}:{hashlib.sha256(payload).hexdigest()[:24]}"


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


# --------------------------------------------------------------------------
# Model utilities

_FAST_SCORERS = {"accuracy"}


def _resolve_scoring(scoring: Any) -> Any:
    """A scikit-learn scorer for a name or a callable ``(estimator, X, y)``."""
    from sklearn.metrics import get_scorer, get_scorer_names

    if isinstance(scoring, str):
        if scoring not in get_scorer_names():
            raise ValueError(
                f"scoring={scoring!r} is not a scikit-learn scorer name; see "
                "sklearn.metrics.get_scorer_names() or pass a callable "
                "scorer(estimator, X, y) -> float"
            )
        return get_scorer(scoring)
    if callable(scoring):
        _check_scorer_signature(scoring)
        return scoring
    raise TypeError(
        f"scoring must be a scorer name or a callable, got {type(scoring).__name__}"
    )


# first parameters of scikit-learn's metrics: what marks a metric(y_true, y_pred)
_METRIC_FIRST_PARAMETERS = {"y_true", "y", "labels_true", "y_pred", "y_score"}


def _check_scorer_signature(scoring: Callable[..., Any]) -> None:
    """Refuse a callable that cannot be a ``scorer(estimator, X, y)``.

    A metric such as ``accuracy_score(y_true, y_pred)`` would otherwise fail
    on every evaluation (counted, scored the default): a run of defaults.
    """
    import inspect

    try:
        signature = inspect.signature(scoring)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to inspect
    name = getattr(scoring, "__name__", type(scoring).__name__)
    parameters = list(signature.parameters.values())
    first = parameters[0].name if parameters else ""
    try:
        signature.bind(None, None, None)
    except TypeError:
        bindable = False
    else:
        bindable = True
    if first in _METRIC_FIRST_PARAMETERS or not bindable:
        kind = "a metric" if first in _METRIC_FIRST_PARAMETERS else "a callable"
        raise TypeError(
            f"scoring={name} is {kind} with signature {name}{signature}, not a "
            f"scorer(estimator, X, y); wrap a metric with "
            f"sklearn.metrics.make_scorer({name}), or pass a scorer name"
        )


def _check_model(model: Any) -> None:
    """Raise naming ``model`` unless it is a clonable estimator instance."""
    from sklearn.base import clone

    if isinstance(model, type):
        raise TypeError(
            f"model must be an estimator instance, got the class {model.__name__};"
            f" did you mean {model.__name__}()?"
        )
    _check_no_class_steps(model, "model")
    if not (hasattr(model, "fit") and hasattr(model, "get_params")):
        raise TypeError(
            "model must be a scikit-learn estimator with fit() and get_params(),"
            f" got {type(model).__name__}"
        )
    try:
        clone(model)
    except Exception as exc:
        raise TypeError(f"model cannot be cloned by scikit-learn: {exc}") from exc


def _check_no_class_steps(model: Any, where: str) -> None:
    """Refuse a Pipeline, FeatureUnion or ColumnTransformer holding a class.

    ``make_pipeline(StandardScaler, ...)`` is accepted by scikit-learn and
    fails later inside ``get_params`` with "missing 'self'", naming no step.
    """
    for attribute in ("steps", "transformer_list", "transformers"):
        steps = getattr(model, attribute, None)
        if not isinstance(steps, list) or isinstance(model, type):
            continue
        for step in steps:
            if not isinstance(step, tuple) or len(step) < 2:
                continue
            name, estimator = step[0], step[1]
            if isinstance(estimator, type):
                raise TypeError(
                    f"{where}: step {name!r} of the {type(model).__name__} is the "
                    f"class {estimator.__name__}, not an instance; did you mean "
                    f"{estimator.__name__}()?"
                )
            _check_no_class_steps(estimator, f"{where}: step {name!r}")


def _check_picklable(value: Any, name: str) -> None:
    """Raise naming ``name`` if cloudpickle cannot ship ``value`` to the workers."""
    import cloudpickle

    try:
        cloudpickle.dumps(value)
    except Exception as exc:
        raise TypeError(
            f"{name} must be picklable to reach the workers: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _check_default(default: Any) -> float:
    """``default`` as a float, or raise naming it."""
    if (
        isinstance(default, bool)
        or not isinstance(default, numbers.Real)
        or not math.isfinite(float(default))
    ):
        raise ValueError(f"default must be a finite number, got {default!r}")
    return float(default)


def _check_utility_seed(seed: Any) -> int:
    """``seed`` as an int that :func:`subset_seed` accepts, or raise naming it."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    value = int(seed)
    if not 0 <= value < 2**63:
        raise ValueError(f"seed must lie in [0, 2**63), got {value}")
    return value


def _check_model_fits_task(
    model: Any, data: Dataset, scoring: Any, scorer: Any
) -> None:
    """Refuse combinations that would fail (or mislead) on every evaluation."""
    from sklearn.base import is_classifier, is_regressor
    from sklearn.utils.multiclass import type_of_target

    name = type(model).__name__
    if is_classifier(model) and type_of_target(data.y_train) == "continuous":
        raise ValueError(
            f"y_train holds continuous values but model {name} is a classifier; "
            "use a regressor (and a regression scorer such as scoring='r2')"
        )
    if not isinstance(scoring, str):
        return
    methods = getattr(scorer, "_response_method", None)
    methods = (methods,) if isinstance(methods, str) else tuple(methods or ())
    needs_classes = {"predict_proba", "decision_function"} & set(methods)
    if is_regressor(model) and (scoring in _FAST_SCORERS or needs_classes):
        raise ValueError(
            f"scoring={scoring!r} is a classification metric but model {name} is "
            "a regressor; use e.g. scoring='r2' or 'neg_mean_squared_error'"
        )
    _check_scorer_fits_classes(scoring, data)
    if methods and not any(hasattr(model, m) for m in methods):
        hint = "; for SVC, pass probability=True" if "predict_proba" in methods else ""
        raise ValueError(
            f"scoring={scoring!r} needs model.{' or '.join(methods)}(), which "
            f"{name} does not provide{hint}"
        )


# scorer names whose metric defaults to average="binary" (or a positive class)
_BINARY_SCORERS = {
    "roc_auc": "roc_auc_ovr",
    "f1": "f1_macro",
    "precision": "precision_macro",
    "recall": "recall_macro",
    "jaccard": "jaccard_macro",
}


def _check_scorer_fits_classes(scoring: str, data: Dataset) -> None:
    """Refuse a binary-only scorer on targets with more than two classes
    (each evaluation would fail, and be scored the default)."""
    if scoring not in _BINARY_SCORERS:
        return
    from sklearn.utils.multiclass import type_of_target

    y = np.concatenate([np.asarray(data.y_train), np.asarray(data.y_test)])
    if type_of_target(y) != "multiclass":
        return
    n_classes = len(np.unique(y))
    raise ValueError(
        f"scoring={scoring!r} scores binary targets only, but y_train and y_test "
        f"hold {n_classes} classes; use a multiclass scorer such as "
        f"scoring={_BINARY_SCORERS[scoring]!r}"
    )


def _check_real_features(data: Dataset) -> None:
    """Refuse complex features: scikit-learn models need real numbers."""
    for name in ("x_train", "x_test"):
        value = getattr(data, name)
        dtypes = value.dtypes if isinstance(value, pd.DataFrame) else [value.dtype]
        if any(np.dtype(d).kind == "c" for d in dtypes if isinstance(d, np.dtype)):
            raise TypeError(
                f"data.{name} holds complex numbers; models need real features "
                "(split them into real and imaginary parts, or take magnitudes)"
            )


def _warm_start_param(model: Any) -> str:
    """The ``set_params`` name of the ``warm_start`` a warm chain turns on.

    The model's own ``warm_start``, or that of the final step of a Pipeline
    (its other steps are refitted cold on each coalition, which is cheap next
    to the final estimator). Raise naming the model when there is none, or
    when ``warm_start`` means something else than starting the optimizer from
    the previous solution.
    """
    from sklearn.pipeline import Pipeline

    final, prefix = model, ""
    if isinstance(model, Pipeline):
        step, final = model.steps[-1]
        prefix = f"{step}__"
    final_name = type(final).__name__
    where = "" if final is model else " (the final step of the Pipeline)"
    if not hasattr(final, "get_params") or "warm_start" not in final.get_params(
        deep=False
    ):
        raise TypeError(
            f"warm_start=True needs a model with a warm_start parameter, but "
            f"{final_name}{where} has none; use e.g. LogisticRegression, "
            "SGDClassifier or MLPClassifier, or warm_start=False"
        )
    if type(final).__module__.startswith("sklearn.ensemble"):
        # RandomForest, GradientBoosting, Bagging, HistGradientBoosting: their
        # warm_start keeps the members fitted so far and only adds new ones
        # (none when their number is unchanged), so every coalition after the
        # first would be scored with a model of an earlier coalition
        raise ValueError(
            f"warm_start=True is not supported for {final_name}{where}: its "
            "warm_start grows the ensemble fitted on earlier coalitions "
            "instead of refitting it on the new one; use warm_start=False"
        )
    return prefix + "warm_start"


class _FreshModels:
    """Unfitted copies of a model, equal to ``clone(model)`` with seeds set.

    ``clone`` followed by ``set_params`` introspects constructor signatures on
    every call (~75-175 us, a few percent of a small fit); a deep copy of an
    unfitted template is ~10x cheaper. Seeds are set on the copied owners of
    each ``random_state``, found through the deep copy's memo. Estimators whose
    copy does not equal their clone (an unconventional ``__init__``) keep the
    plain clone path.

    Each ``random_state`` gets its own ``np.random.RandomState`` seeded with
    the derived seed: an int would make every fit build a new one, which
    draws OS entropy first (~70 us, 3.5% of a small logistic regression);
    re-seeding one kept per thread and parameter costs ~2 us and leaves the
    same generator state.
    """

    def __init__(self, model: Any) -> None:
        from sklearn.base import clone

        self.model = model
        self.template = clone(model)
        self.seed_keys = _random_state_keys(model)
        self.seed_owners = self.owners(self.template)
        self.copyable = _token(copy.deepcopy(self.template)) == _token(clone(model))
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]  # generators are per thread, made where they are used
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _generators(self, seed: int) -> list[np.random.RandomState]:
        """This thread's generators, one per ``random_state``, all seeded."""
        generators = getattr(self._local, "generators", None)
        if generators is None:
            generators = [np.random.RandomState() for _ in self.seed_keys]
            self._local.generators = generators
        for generator in generators:
            generator.seed(seed)
        return generators

    def owners(self, model: Any) -> list[tuple[Any, str]]:
        """(object, attribute) holding each ``random_state`` of ``model``, a
        copy of the template, in the order of :attr:`seed_keys`."""
        params = model.get_params(deep=True) if self.seed_keys else {}
        return [
            (
                model if "__" not in key else params[key.rsplit("__", 1)[0]],
                key.rsplit("__", 1)[-1],
            )
            for key in self.seed_keys
        ]

    def reseed(self, owners: list[tuple[Any, str]], seed: int) -> None:
        """Give the ``random_state`` attributes at ``owners`` generators seeded
        with ``seed``, as :meth:`make` does for a fresh model."""
        if owners:
            for (owner, attribute), generator in zip(
                owners, self._generators(seed), strict=True
            ):
                setattr(owner, attribute, generator)

    def make(self, seed: int) -> Any:
        """A fresh unfitted model whose ``random_state`` parameters are
        generators seeded with ``seed`` (one per parameter)."""
        generators = self._generators(seed) if self.seed_keys else []
        if not self.copyable:
            from sklearn.base import clone

            fresh = clone(self.model)
            if self.seed_keys:
                fresh.set_params(**dict(zip(self.seed_keys, generators, strict=True)))
            return fresh
        memo: dict[int, Any] = {}
        fresh = copy.deepcopy(self.template, memo)
        for (owner, attribute), generator in zip(
            self.seed_owners, generators, strict=True
        ):
            setattr(memo[id(owner)], attribute, generator)
        return fresh


def _random_state_keys(model: Any) -> list[str]:
    """Parameter names (nested ones too) that seed the model's randomness."""
    params = model.get_params(deep=True)
    return sorted(
        k for k in params if k == "random_state" or k.endswith("__random_state")
    )


class _AlignedClassifier:
    """A fitted classifier seen through the full set of classes.

    A coalition may lack some classes; probability scorers then need columns
    for every class (zeros for the absent ones) to give the right score.
    """

    _estimator_type = "classifier"

    def __init__(self, fitted: Any, classes: np.ndarray) -> None:
        self._fitted = fitted
        self.classes_ = classes
        self._columns = np.searchsorted(classes, fitted.classes_)

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
        )

    def fit(self, *args: Any, **kwargs: Any) -> _AlignedClassifier:
        return self  # already fitted; present so sklearn recognises an estimator

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def predict(self, x: Any) -> np.ndarray:
        return self._fitted.predict(x)

    def predict_proba(self, x: Any) -> np.ndarray:
        partial = self._fitted.predict_proba(x)
        full = np.zeros((partial.shape[0], len(self.classes_)), dtype=partial.dtype)
        full[:, self._columns] = partial
        return full

    def predict_log_proba(self, x: Any) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(x))


# --------------------------------------------------------------------------
# Time limits: evaluations in a helper process that can be killed

# the kind a timed-out evaluation is counted under (the last line of its message)
TIMEOUT_KIND = "Timeout: the evaluation ran past the utility's timeout"


def _check_timeout(timeout: Any) -> float | None:
    """``timeout`` as positive finite seconds, or None; raise naming it."""
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, numbers.Real)
        or not math.isfinite(float(timeout))
        or timeout <= 0
    ):
        raise ValueError(
            f"timeout must be a positive number of seconds or None, got {timeout!r}"
        )
    return float(timeout)


def _send(stream: Any, payload: Any) -> None:
    import pickle

    import cloudpickle

    data = cloudpickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def _receive(stream: Any) -> Any:
    import pickle

    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the helper process closed its pipe")
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the helper process closed its pipe")
    return pickle.loads(data)


def _helper_main() -> None:
    """The loop of a helper process: read the utility, then coalitions, and
    answer each with its value and counters (until the pipe closes)."""
    import sys

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints of a model must not corrupt the pipe
    utility: Utility = _receive(stdin)
    _send(stdout, "ready")  # started: time limits count from here
    with utility.context():
        while True:
            try:
                players = _receive(stdin)
            except EOFError:
                return
            stats = EvalStats()
            value = utility.evaluate(players, stats)
            _send(stdout, (value, stats))


class _Helper:
    """One helper process evaluating a utility's coalitions."""

    def __init__(self, utility: Utility) -> None:
        import os
        import subprocess
        import sys

        # this process's import path, so that the helper unpickles what it can
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import daskval.utility as u; u._helper_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        _send(self.stdin, utility)
        _receive(self.stdout)  # its start (imports) counts toward no limit

    def evaluate(self, players: np.ndarray, seconds: float) -> tuple[float, EvalStats]:
        """The value and counters of ``players``; TimeoutError past ``seconds``
        (the process is then killed)."""
        import select

        _send(self.stdin, np.asarray(players))
        ready, _, _ = select.select([self.stdout], [], [], seconds)
        if not ready:
            self.kill()
            raise TimeoutError
        answer: tuple[float, EvalStats] = _receive(self.stdout)
        return answer

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.stdin.close()
        self.stdout.close()


class _TimedEvaluations:
    """A utility's evaluations under its time limit, one helper per thread.

    The first evaluation of a thread starts its helper (the process start
    counts toward no limit); an evaluation past the limit kills the helper
    and scores the default, counted under :data:`TIMEOUT_KIND`; a helper that
    dies (a segfaulting fit) is counted the same way as a failure of its own
    kind, and the next evaluation starts a new one.
    """

    def __init__(self, utility: ModelUtility) -> None:
        self.utility = utility
        self.timeout = cast(float, utility.timeout)
        self._local = threading.local()

    def _helper(self) -> _Helper:
        helper = getattr(self._local, "helper", None)
        if helper is None or helper.process.poll() is not None:
            helper = _Helper(self.utility.untimed())
            self._local.helper = helper
            _HELPERS.add(helper)
        return cast(_Helper, helper)

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        helper: _Helper | None = None
        try:
            helper = self._helper()
            value, counted = helper.evaluate(players, self.timeout)
        except TimeoutError:
            self._drop(cast(_Helper, helper))
            stats.n_evaluations += 1
            stats.record_failure(
                f"a coalition of {len(players)} players took more than "
                f"{self.timeout:g} s; its helper process was killed\n{TIMEOUT_KIND}"
            )
            return self.utility.default
        except (EOFError, OSError) as exc:
            code = None if helper is None else helper.process.poll()
            if helper is not None:
                self._drop(helper)
            stats.n_evaluations += 1
            stats.record_failure(
                f"the helper process evaluating a coalition of {len(players)} "
                f"players died (exit code {code}): {exc}\n"
                "HelperDied: the evaluation's helper process died"
            )
            return self.utility.default
        stats += counted
        return value

    def _drop(self, helper: _Helper) -> None:
        helper.kill()
        _HELPERS.discard(helper)
        self._local.helper = None


class _HelperSet:
    """Every live helper of this process, killed when it exits.

    Weak: a helper whose utility is gone (its broadcast released) is
    collected, which closes its pipe, and the helper process exits.
    """

    def __init__(self) -> None:
        import weakref

        self._lock = threading.Lock()
        self._helpers: weakref.WeakSet[_Helper] = weakref.WeakSet()
        import atexit

        atexit.register(self.kill_all)

    def add(self, helper: _Helper) -> None:
        with self._lock:
            self._helpers.add(helper)

    def discard(self, helper: _Helper) -> None:
        with self._lock:
            self._helpers.discard(helper)

    def kill_all(self) -> None:
        with self._lock:
            helpers = list(self._helpers)
            self._helpers.clear()
        for helper in helpers:
            with contextlib.suppress(Exception):
                helper.kill()


_HELPERS = _HelperSet()


class ModelUtility(Utility):
    """u(S): the score of a model trained on the training rows of S.

    Each evaluation clones ``model`` (a Pipeline is cloned and fitted whole),
    fits it on the coalition's training rows, and scores it on the dataset's
    scoring split (``x_test, y_test``).

    Parameters
    ----------
    model : scikit-learn estimator
        Any estimator with ``fit``; it is cloned, never modified.
    data : Dataset
        Training rows (the players) and the scoring split.
    scoring : str or callable
        A scikit-learn scorer name (``"accuracy"``, ``"r2"``, ``"roc_auc"``,
        ``"neg_log_loss"``, ...) or a callable ``scorer(estimator, X, y)``.
    default : float
        The score of the empty coalition and of any fit or score that raises
        or returns NaN. Failures are counted, never fatal.
    seed : int
        When the model (or a step of it) has a ``random_state`` parameter, it
        is set for every fit to ``np.random.RandomState(s)`` with ``s =
        subset_seed(seed, S)`` (its own generator per parameter), so u(S) is
        a function of S. A model with hidden randomness is the user's
        responsibility.
    warm_start : bool
        Opt in to warm starts along a path (see Notes): :meth:`chain` then
        fits each coalition of a permutation starting from the model fitted
        on the previous prefix. The model, or the final step of a Pipeline,
        needs a ``warm_start`` parameter (LogisticRegression, SGDClassifier,
        MLPClassifier, ...); scikit-learn ensembles, whose ``warm_start``
        grows the ensemble instead, are refused.
    timeout : float or None
        Seconds one evaluation (fit and score) may take; None (the default)
        sets no limit. With a limit, each worker thread evaluates in a
        helper Python process of its own (started on first use, holding a
        copy of the utility), so that an evaluation past the limit can be
        stopped for real: the process is killed (reclaiming its CPU and
        memory), the evaluation is counted as a failure of kind ``Timeout``
        and scores ``default``, and the next evaluation starts a new
        process. The cost: the utility's memory once more per worker
        thread, a process start (about a second, mostly imports) per thread
        and per timeout, and a round trip of the coalition's indices per
        evaluation (tens of microseconds). Not with ``warm_start=True``.

    Notes
    -----
    The evaluation path skips scikit-learn's repeated input and parameter
    validation (the data were validated once, up front) and computes accuracy
    directly; the value is bit-identical to ``get_scorer(scoring)(
    clone(model).fit(X[S], y[S]), x_test, y_test)``. Probability scorers see
    probability columns for every class of ``y_train``, also when S lacks one.

    Warm starts. :meth:`evaluate` is always a cold fit of a fresh copy, the
    same u(S) with or without ``warm_start`` (so :meth:`fingerprint` does not
    depend on it). Only a :meth:`chain` warm-starts: it keeps the model it
    fitted last and refits that model, with ``warm_start`` set on this copy,
    on the next coalition of the path. A warm u(S) thus depends on the path
    to S. For a convex objective solved deterministically (LogisticRegression
    with lbfgs, newton-cg or sag; Lasso, ElasticNet) the solver stops near
    the same optimum from either start, so warm and cold values differ only
    within the optimizer's tolerance ``tol`` (the gap shrinks with ``tol``).
    A stochastic solver (SGDClassifier) stops at a noisy iterate: warm and
    cold values then differ by about as much as cold values under two seeds.
    A non-convex model (MLPClassifier) may end in another local optimum, and
    its warm values are then a different game, not an approximation. Solvers
    that ignore ``warm_start`` (LogisticRegression's liblinear) fit cold in a
    chain too. Of a Pipeline, only the final step warm-starts; the steps
    before it are refitted on each coalition as in a cold fit. A chain
    fits cold instead when a coalition leaves the path (it does not contain
    the previous one), when its classes differ from those of the previous
    fit (scikit-learn cannot continue across a changed set of classes), and
    when a warm fit raises; a cold fit that fails is counted and scored the
    default exactly as in :meth:`evaluate`. Each fit still seeds
    ``random_state`` with ``subset_seed(seed, S)``. A chain lives within one
    task (a permutation is evaluated within one task), never travels between
    processes, and never calls :meth:`evaluate`, so a cache of cold values
    keyed by the fingerprint can never see, or serve, a warm value.
    """

    def __init__(
        self,
        model: Any,
        data: Dataset,
        scoring: Any = "accuracy",
        default: float = 0.0,
        *,
        seed: int = 0,
        warm_start: bool = False,
        timeout: float | None = None,
    ) -> None:
        from sklearn.base import clone, is_classifier

        if not isinstance(data, Dataset):
            raise TypeError(
                f"data must be a daskval.Dataset, got {type(data).__name__}"
            )
        _check_model(model)
        _check_real_features(data)
        # our own unfitted copy: a later set_params on the caller's model must
        # change neither the values nor the fingerprint of this utility
        self.model = clone(model)
        self.data = data
        self.scoring = scoring
        self.default = _check_default(default)
        self.seed = _check_utility_seed(seed)
        self.n = data.n
        self._scorer = _resolve_scoring(scoring)
        _check_picklable(model, "model")
        _check_picklable(scoring, "scoring")
        _check_model_fits_task(model, data, scoring, self._scorer)
        if not isinstance(warm_start, bool):
            raise TypeError(
                f"warm_start must be True or False, got {type(warm_start).__name__}"
            )
        self.warm_start = warm_start
        self.timeout = _check_timeout(timeout)
        if warm_start and self.timeout is not None:
            raise ValueError(
                "timeout cannot be combined with warm_start=True: a warm chain "
                "keeps its model in the worker thread, a timed evaluation runs "
                "in a separate process"
            )
        self._warm_param = _warm_start_param(model) if warm_start else None
        self._fast_accuracy = scoring in _FAST_SCORERS
        self._models = _FreshModels(self.model)
        self._classes = np.unique(data.y_train) if is_classifier(model) else None
        self._fingerprint: str | None = None
        self._timed = _TimedEvaluations(self) if self.timeout is not None else None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            scoring = (
                self.scoring if isinstance(self.scoring, str) else _token(self.scoring)
            )
            self._fingerprint = _sha(
                "daskval.ModelUtility/1",
                self.data.fingerprint(),
                _token(self.model),
                scoring,
                repr(self.default),
                repr(self.seed),
                # a limit turns slow fits into defaults: another game
                *([] if self.timeout is None else [f"timeout={self.timeout!r}"]),
            )
        return self._fingerprint

    def identity(self) -> str:
        if not self.warm_start:
            return self.fingerprint()
        return _sha("daskval.ModelUtility.warm_start/1", self.fingerprint())

    def describe(self) -> dict[str, Any]:
        return {
            "class": "ModelUtility",
            "n": self.n,
            "model": _token(self.model)[:500],
            "model_name": model_name(self.model),
            "scoring": self.scoring
            if isinstance(self.scoring, str)
            else _token(self.scoring),
            "default": self.default,
            "warm_start": self.warm_start,
        }

    def context(self) -> contextlib.AbstractContextManager[Any]:
        # The data were validated when the Dataset was built; scikit-learn's
        # configuration is thread-local, so this holds only for the task's thread.
        import sklearn

        return sklearn.config_context(
            assume_finite=not self.data.allow_nan, skip_parameter_validation=True
        )

    def chain(self) -> UtilityChain:
        """A warm chain when ``warm_start=True`` (see Notes), else a cold one."""
        if self._warm_param is None:
            return UtilityChain(self)
        return _WarmModelChain(self, self._warm_param)

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        if self._timed is not None and len(players):
            return self._timed.evaluate(players, stats)
        return self._guarded(players, stats, self._fit_and_score)

    def untimed(self) -> ModelUtility:
        """A copy of this utility without its time limit (what a helper
        process evaluates)."""
        plain = copy.copy(self)
        plain.timeout, plain._timed = None, None
        return plain

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_timed"] = None  # helper processes belong to the process using them
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.__dict__.get("timeout") is not None:
            self._timed = _TimedEvaluations(self)

    def _guarded(
        self,
        players: np.ndarray,
        stats: EvalStats,
        fit_and_score: Callable[[np.ndarray], float],
    ) -> float:
        """``fit_and_score(players)``, counted; failures and NaN score the default.

        Cold evaluations and warm chains share it, so both count alike.
        """
        stats.n_evaluations += 1
        if len(players) == 0:
            return self.default
        with _WARNINGS.collect() as caught:
            try:
                score = fit_and_score(players)
            except BaseException:  # SystemExit too: a counted failure, not a stall
                stats.record_failure(traceback.format_exc())
                score = self.default
        if caught:
            stats.record_warnings(caught)
        if not np.isfinite(score):
            stats.record_failure(
                f"the score of a coalition of {len(players)} players was {score!r}"
            )
            return self.default
        return score

    def _fit_and_score(self, players: np.ndarray) -> float:
        x, y = self.data.train_subset(self.data.rows(players))
        model = self._models.make(self._subset_seed(players))
        model.fit(x, y)
        return self._score(model)

    def _subset_seed(self, players: np.ndarray) -> int:
        return subset_seed(self.seed, players) if self._models.seed_keys else 0

    def _score(self, model: Any) -> float:
        """The score of a fitted model on the scoring split."""
        if self._fast_accuracy:
            predicted = model.predict(self.data.x_test)
            if np.shape(predicted) == np.shape(self.data.y_test):
                return float(np.mean(predicted == self.data.y_test))
        scored = model
        if (
            self._classes is not None
            and hasattr(model, "classes_")
            and len(model.classes_) != len(self._classes)
        ):
            scored = _AlignedClassifier(model, self._classes)
        return float(self._scorer(scored, self.data.x_test, self.data.y_test))


class _WarmModelChain(UtilityChain):
    """A :class:`ModelUtility` chain that refits the previous coalition's model.

    Attributes
    ----------
    n_warm, n_cold : int
        Fits started from the previous model, and from a fresh copy.
    n_fallbacks : int
        Warm fits that raised and were redone cold.
    """

    def __init__(self, utility: ModelUtility, warm_param: str) -> None:
        super().__init__(utility)
        self._model_utility = utility
        self._warm_param = warm_param
        self._model: Any = None  # the last fitted model, None: start cold
        self._owners: list[tuple[Any, str]] = []  # its random_state holders
        self._previous = np.empty(0, dtype=np.intp)
        self.n_warm = self.n_cold = self.n_fallbacks = 0

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        if not self._on_path(players):
            self._model = None  # a new path starts cold
        return self._model_utility._guarded(players, stats, self._fit_and_score)

    def _on_path(self, players: np.ndarray) -> bool:
        """Whether ``players`` contains the previous coalition; remembers it."""
        members = np.zeros(self._model_utility.n, dtype=bool)
        members[players] = True
        contained = bool(members[self._previous].all())
        self._previous = np.array(players, dtype=np.intp)
        return contained

    def _fit_and_score(self, players: np.ndarray) -> float:
        utility = self._model_utility
        x, y = utility.data.train_subset(utility.data.rows(players))
        return utility._score(self._fit(x, y, utility._subset_seed(players)))

    def _fit(self, x: Any, y: Any, seed: int) -> Any:
        previous, self._model = self._model, None  # a raising fit leaves none
        if previous is not None and self._same_classes(previous, y):
            try:
                self._model_utility._models.reseed(self._owners, seed)
                previous.fit(x, y)
            except Exception:
                # e.g. a solver that cannot restart from this solution: the
                # cold fit below decides the value (and any failure)
                self.n_fallbacks += 1
            else:
                self.n_warm += 1
                self._model = previous
                return previous
        models = self._model_utility._models
        model = models.make(seed)
        model.set_params(**{self._warm_param: True})
        owners = models.owners(model)
        model.fit(x, y)  # warm_start on an unfitted model is a cold fit
        self.n_cold += 1
        self._model, self._owners = model, owners
        return model

    def _same_classes(self, model: Any, y: Any) -> bool:
        """Whether ``model`` was fitted on the classes of ``y`` (regressors: yes).

        scikit-learn raises on some changes of the classes (a new count) and
        silently continues from misaligned coefficients on others.
        """
        if self._model_utility._classes is None:
            return True
        classes = getattr(model, "classes_", None)
        return classes is None or np.array_equal(classes, np.unique(y))


# --------------------------------------------------------------------------
# Function utilities


class FunctionUtility(Utility):
    """u(S) = fn(S) for a picklable function of an integer index array.

    Parameters
    ----------
    fn : callable
        ``fn(players: np.ndarray[int]) -> float`` over players ``0 .. n-1``;
        it must be picklable (by cloudpickle) to reach the workers.
    n : int
        The number of players.
    default : float
        Returned (and counted as a failure) when ``fn`` raises or returns NaN.
    """

    def __init__(
        self, fn: Callable[[np.ndarray], float], n: int, *, default: float = 0.0
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        self.n = check_positive_int(n, "n")
        self.default = _check_default(default)
        self.fn = fn
        self._pickled_fn = self._pickle(fn)
        self._fingerprint: str | None = None

    @staticmethod
    def _pickle(fn: Callable[..., Any]) -> bytes:
        import cloudpickle

        try:
            return cloudpickle.dumps(fn)
        except Exception as exc:
            raise TypeError(
                "fn must be picklable to reach the workers: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = _sha(
                "daskval.FunctionUtility/1",
                str(self.n),
                repr(self.default),
                hashlib.sha256(self._pickled_fn).hexdigest(),
            )
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return {"class": "FunctionUtility", "n": self.n, "fn": str(name)}

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        stats.n_evaluations += 1
        try:
            score = float(self.fn(players))
        except BaseException:  # SystemExit too: a counted failure, not a stall
            stats.record_failure(traceback.format_exc())
            return self.default
        if not np.isfinite(score):
            stats.record_failure(f"fn returned {score!r} for {len(players)} players")
            return self.default
        return score

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("fn")  # travels as cloudpickle bytes, so closures and lambdas work
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import cloudpickle

        self.__dict__.update(state)
        self.fn = cloudpickle.loads(self._pickled_fn)
