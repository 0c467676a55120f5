"""Bad inputs fail fast, with a message that names the argument and the fix.

Every case runs with cluster creation and client lookup patched to raise a
sentinel error: a case passes only if the validation error comes first, so
nothing ever reached (or started) a cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import distributed
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, make_scorer
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

import daskval as dv
import daskval.engine.cluster


class ClusterTouched(Exception):
    """Raised by the patched cluster entry points."""


def constant(players: np.ndarray) -> float:
    return float(len(players))


def _forbid(*args: Any, **kwargs: Any) -> Any:
    raise ClusterTouched("a cluster or client was requested")


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of reaching a cluster raise :class:`ClusterTouched`."""
    monkeypatch.setattr(daskval.engine.cluster, "LocalCluster", _forbid)
    monkeypatch.setattr(distributed.LocalCluster, "__init__", _forbid)
    monkeypatch.setattr(distributed.Client, "__init__", _forbid)
    monkeypatch.setattr(distributed.Client, "current", _forbid)


def _xy(n: int = 20, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    return x, (x[:, 0] > 0).astype(int)


def _data(**kwargs: Any) -> dv.Dataset:
    x, y = _xy()
    return dv.Dataset(x, y, x, y, **kwargs)


def _with(name: str, value: Any) -> Callable[[], Any]:
    """A Dataset whose argument ``name`` is replaced by ``value``."""

    def build() -> dv.Dataset:
        x, y = _xy()
        args = {"x_train": x, "y_train": y, "x_test": x, "y_test": y}
        args[name] = value
        return dv.Dataset(**args)

    return build


def _with_frame(name: str, value: Any) -> Callable[[], Any]:
    """A Dataset of X_DF features whose argument ``name`` is ``value``."""

    def build() -> dv.Dataset:
        args = {"x_train": X_DF, "y_train": Y, "x_test": X_DF, "y_test": Y}
        args[name] = value
        return dv.Dataset(**args)

    return build


def _nan_at(array: np.ndarray, value: float) -> np.ndarray:
    out = array.astype(float)
    out[3, ...] = value
    return out


def _valid_valuation() -> dv.ShapleyValuation:
    return dv.ShapleyValuation(
        dv.FunctionUtility(constant, 4), stop=dv.MaxSamples(2), seed=0
    )


def _unpicklable_fn() -> Callable[..., Any]:
    lock = threading.Lock()
    return lambda *args: float(lock.locked())


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    x, _ = _xy()
    train = pd.DataFrame(x, columns=["a", "b", "c"])
    return train, train.rename(columns={"c": "z"})


X, Y = _xy()
X_DF, X_DF_RENAMED = _frames()


def _shuffled_target() -> pd.Series:
    """Y as a Series whose index is a shuffled copy of X_DF's."""
    order = np.random.default_rng(1).permutation(len(Y))
    return pd.Series(Y[order], index=X_DF.index[order])


def _three_classes() -> dv.Dataset:
    labels = np.digitize(X[:, 0], [-0.5, 0.5])
    return dv.Dataset(X, labels, X, labels)


def _text_frame() -> pd.DataFrame:
    return pd.DataFrame(X.astype(str), columns=["a", "b", "c"])


def _knn(x: Any) -> Callable[[], Any]:
    return lambda: dv.KNNShapleyValuation(dv.Dataset(x, Y, x, Y), k=3)


X_DUPLICATE_COLUMNS = pd.DataFrame(X, columns=["a", "b", "a"])


def _game(n: int = 4) -> dv.FunctionUtility:
    return dv.FunctionUtility(constant, n)


def _mc(valuation: type[dv.Valuation], **kwargs: Any) -> Callable[[], Any]:
    """Build and fit a Monte Carlo ``valuation`` of a 4-player game."""

    def build() -> Any:
        kwargs.setdefault("stop", dv.MaxSamples(3))
        return valuation(_game(), seed=0, **kwargs).fit()

    return build


class SmallWorkersClient(distributed.Client):
    """A client of a cluster whose workers have a memory limit of a few kB.

    It never connects: the scheduler's answer is made up, and submitting a
    task raises :class:`ClusterTouched`, so a check that needs the cluster's
    facts must ask for them and refuse before any task is submitted.
    """

    status = "running"
    LIMITS = (4096, 1024)

    def __init__(self) -> None:  # no connection (the real one is forbidden)
        self.registered: list[str] = []

    def scheduler_info(self, n_workers: int = -1, **kwargs: Any) -> Any:
        addresses = [f"tcp://127.0.0.1:{4000 + i}" for i in range(len(self.LIMITS))]
        return {
            "workers": {
                a: {"memory_limit": limit, "nthreads": 1}
                for a, limit in zip(addresses, self.LIMITS, strict=True)
            }
        }

    def register_plugin(self, plugin: Any, name: str | None = None, **kw: Any) -> Any:
        self.registered.append(str(name))

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise ClusterTouched("a task was submitted")

    def nthreads(self, *args: Any, **kwargs: Any) -> Any:
        raise ClusterTouched("the workers were asked for their threads")

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __del__(self) -> None:
        pass


def _too_large_for_the_workers() -> Any:
    """A 20 x 3 dataset (1280 bytes) on workers of at most 4 kB, the smallest
    1 kB: refused, naming both sizes, before the utility is registered."""
    client = SmallWorkersClient()
    utility = dv.ModelUtility(LogisticRegression(), _data())
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(2), seed=0)
    try:
        valuation.fit(client=client)
    finally:
        assert not any(n.startswith("daskval-utility") for n in client.registered)


# (id, what to call, expected exception, substrings the message must contain)
CASES: list[tuple[str, Callable[[], Any], type[Exception], tuple[str, ...]]] = [
    ("y_train length", _with("y_train", Y[:-1]), ValueError, ("y_train", "19")),
    ("y_test length", _with("y_test", Y[:5]), ValueError, ("y_test", "x_test")),
    ("NaN in x_train", _with("x_train", _nan_at(X, np.nan)), ValueError,
     ("x_train", "NaN")),
    ("inf in x_test", _with("x_test", _nan_at(X, np.inf)), ValueError,
     ("x_test", "infinite")),
    ("NaN in y_train", _with("y_train", _nan_at(Y, np.nan)), ValueError,
     ("y_train", "NaN")),
    ("empty training set", _with("x_train", X[:0]), ValueError,
     ("x_train", "empty")),
    ("feature count", _with("x_test", X[:, :2]), ValueError,
     ("x_test has 2 features", "x_train has 3")),
    ("text features", _with("x_train", X.astype(str)), TypeError,
     ("x_train", "numbers")),
    ("1-D features", _with("x_train", X[:, 0]), ValueError,
     ("x_train", "(n_samples, n_features)")),
    ("DataFrame columns differ",
     lambda: dv.Dataset(X_DF, Y, X_DF_RENAMED, Y), ValueError,
     ("x_test", "columns of x_train")),
    ("DataFrame vs array", lambda: dv.Dataset(X_DF, Y, X, Y), TypeError,
     ("x_test", "DataFrame")),
    ("groups wrong length", lambda: _data(groups=np.arange(5)), ValueError,
     ("groups", "one label per training row")),
    ("groups with NaN",
     lambda: _data(groups=np.where(np.arange(20) == 3, np.nan, 1.0)), ValueError,
     ("groups", "NaN")),
    ("groups with None",
     lambda: _data(groups=np.array(["a"] * 19 + [None], dtype=object)),
     ValueError, ("groups", "missing")),
    ("names wrong length", lambda: _data(names=["a", "b"]), ValueError,
     ("names", "one name per player")),
    ("names duplicated", lambda: _data(names=["p"] * 20), ValueError,
     ("names", "unique")),
    ("names as one string", lambda: _data(names="a" * 20), TypeError,
     ("names", "string")),
    ("unknown scorer",
     lambda: dv.ModelUtility(LogisticRegression(), _data(), scoring="acuracy"),
     ValueError, ("scoring='acuracy'", "get_scorer_names")),
    ("scorer of a wrong type",
     lambda: dv.ModelUtility(LogisticRegression(), _data(), scoring=3), TypeError,
     ("scoring", "callable")),
    ("non-estimator model", lambda: dv.ModelUtility(object(), _data()), TypeError,
     ("model", "estimator")),
    ("model class, not instance",
     lambda: dv.ModelUtility(LogisticRegression, _data()), TypeError,
     ("model", "LogisticRegression()")),
    ("scorer needs predict_proba",
     lambda: dv.ModelUtility(SVC(), _data(), scoring="neg_log_loss"), ValueError,
     ("scoring='neg_log_loss'", "predict_proba", "probability=True")),
    ("classifier on continuous targets",
     lambda: dv.ModelUtility(LogisticRegression(), dv.Dataset(X, X[:, 0], X, Y)),
     ValueError, ("y_train", "continuous", "classifier")),
    ("accuracy for a regressor",
     lambda: dv.ModelUtility(LinearRegression(), _data(), scoring="accuracy"),
     ValueError, ("scoring='accuracy'", "regressor")),
    ("data not a Dataset", lambda: dv.ModelUtility(LogisticRegression(), (X, Y)),
     TypeError, ("data", "Dataset")),
    ("NaN default",
     lambda: dv.ModelUtility(LogisticRegression(), _data(), default=np.nan),
     ValueError, ("default", "finite")),
    ("utility seed",
     lambda: dv.ModelUtility(LogisticRegression(), _data(), seed=0.5), TypeError,
     ("seed", "integer")),
    ("unpicklable fn", lambda: dv.FunctionUtility(_unpicklable_fn(), 3), TypeError,
     ("fn", "picklable")),
    ("unpicklable model step",
     lambda: dv.ModelUtility(
         make_pipeline(FunctionTransformer(_unpicklable_fn()), LogisticRegression()),
         _data(),
     ), TypeError, ("model", "picklable")),
    ("unpicklable scorer",
     lambda: dv.ModelUtility(LogisticRegression(), _data(), scoring=_unpicklable_fn()),
     TypeError, ("scoring", "picklable")),
    ("fn not callable", lambda: dv.FunctionUtility(42, 3), TypeError,  # type: ignore[arg-type]
     ("fn", "callable")),
    ("zero players", lambda: dv.FunctionUtility(constant, 0), ValueError,
     ("n", ">= 1")),
    ("MaxSamples(-1)", lambda: dv.MaxSamples(-1), ValueError, ("k", ">= 1")),
    ("MaxSamples(2.5)", lambda: dv.MaxSamples(2.5), ValueError,
     ("k", "whole number")),
    ("MaxEvaluations(0)", lambda: dv.MaxEvaluations(0), ValueError, ("n", ">= 1")),
    ("MaxTime(-1)", lambda: dv.MaxTime(-1), ValueError, ("seconds", "> 0")),
    ("MaxTime(nan)", lambda: dv.MaxTime(float("nan")), ValueError,
     ("seconds", "finite")),
    ("MaxStderr(0)", lambda: dv.MaxStderr(0), ValueError, ("threshold", "> 0")),
    ("RankStable threshold", lambda: dv.RankStable(threshold=2), ValueError,
     ("threshold", "[0, 1]")),
    ("criterion | int", lambda: dv.MaxSamples(3) | 5, TypeError,
     ("cannot combine", "int")),
    ("truncation rtol", lambda: dv.RelativeTruncation(rtol=1.5), ValueError,
     ("rtol", "[0, 1)")),
    ("exact sampler on 26 players",
     lambda: dv.ShapleyValuation(
         dv.FunctionUtility(constant, 26), sampler=dv.ExactSampler()
     ), ValueError, ("ExactSampler", "n=26", "25")),
    ("permutations of one player",
     lambda: dv.ShapleyValuation(
         dv.FunctionUtility(constant, 1), stop=dv.MaxEvaluations(10)
     ), ValueError, ("PermutationSampler", "n=1", "ExactSampler()")),
    ("stop missing for Monte Carlo",
     lambda: dv.ShapleyValuation(dv.FunctionUtility(constant, 4)), ValueError,
     ("stop is required", "MaxSamples")),
    ("stop of a wrong type",
     lambda: dv.ShapleyValuation(dv.FunctionUtility(constant, 4), stop=100),  # type: ignore[arg-type]
     TypeError, ("stop", "stopping criterion")),
    ("sampler of a wrong type",
     lambda: dv.ShapleyValuation(
         dv.FunctionUtility(constant, 4), sampler="exact", stop=dv.MaxSamples(3)  # type: ignore[arg-type]
     ), TypeError, ("sampler", "PermutationSampler")),
    ("negative seed",
     lambda: dv.ShapleyValuation(
         dv.FunctionUtility(constant, 4), stop=dv.MaxSamples(3), seed=-1
     ), ValueError, ("seed", "non-negative")),
    ("seed as text",
     lambda: dv.ShapleyValuation(
         dv.FunctionUtility(constant, 4), stop=dv.MaxSamples(3), seed="0"  # type: ignore[arg-type]
     ), TypeError, ("seed", "integer")),
    ("non-Utility to a valuation",
     lambda: dv.ShapleyValuation(constant, stop=dv.MaxSamples(3)),  # type: ignore[arg-type]
     TypeError, ("utility", "Utility")),
    ("non-Utility to LOO", lambda: dv.LOOValuation(LogisticRegression()),  # type: ignore[arg-type]
     TypeError, ("utility", "Utility")),
    ("samples_per_task=0", lambda: _valid_valuation().fit(samples_per_task=0),
     ValueError, ("samples_per_task", ">= 1")),
    ("samples_per_task as text",
     lambda: _valid_valuation().submit(samples_per_task="8"), TypeError,
     ("samples_per_task", "integer")),
    ("client of a wrong type",
     lambda: _valid_valuation().fit(client="tcp://127.0.0.1:8786"), TypeError,
     ("client", "distributed.Client")),
    # -- Banzhaf, weighted Banzhaf, Beta Shapley, several semivalues
    ("Banzhaf sampler as text", _mc(dv.BanzhafValuation, sampler="msr"), TypeError,
     ("sampler", "MSRSampler", "str")),
    ("Banzhaf without stop",
     lambda: dv.BanzhafValuation(_game()).fit(), ValueError,
     ("stop is required", "MaxSamples")),
    ("exact Banzhaf on 30 players",
     lambda: dv.BanzhafValuation(_game(30), sampler=dv.ExactSampler()).fit(),
     ValueError, ("ExactSampler", "n=30", "25")),
    ("weighted Banzhaf w=0", _mc(dv.WeightedBanzhafValuation, w=0), ValueError,
     ("w must lie strictly between 0 and 1", "0")),
    ("weighted Banzhaf w=nan", _mc(dv.WeightedBanzhafValuation, w=float("nan")),
     ValueError, ("w must lie", "nan")),
    ("WeightedBanzhaf(1)", lambda: dv.WeightedBanzhaf(1.0), ValueError,
     ("w must lie strictly between 0 and 1", "1.0")),
    ("Beta Shapley alpha=0", _mc(dv.BetaShapleyValuation, alpha=0, beta=1),
     ValueError, ("alpha", "> 0")),
    ("Beta Shapley beta=-1", _mc(dv.BetaShapleyValuation, alpha=16, beta=-1),
     ValueError, ("beta", "> 0", "-1")),
    ("Beta Shapley alpha as text", _mc(dv.BetaShapleyValuation, alpha="16", beta=1),
     TypeError, ("alpha", "number", "str")),
    ("no semivalues", _mc(dv.SemivalueValuation, semivalues=[]), ValueError,
     ("semivalues", "empty")),
    ("semivalue by name", _mc(dv.SemivalueValuation, semivalues=["shapley"]),
     TypeError, ("semivalues", "Shapley()", "str")),
    ("semivalues repeated",
     _mc(dv.SemivalueValuation, semivalues=[dv.Shapley(), dv.Shapley()]),
     ValueError, ("semivalues must differ", "shapley")),
    ("one semivalue, not a list", _mc(dv.SemivalueValuation, semivalues=dv.Shapley()),
     TypeError, ("semivalues", "sequence")),
    ("exact semivalues on 26 players",
     lambda: dv.SemivalueValuation(
         _game(26), [dv.Shapley(), dv.Banzhaf()], sampler=dv.ExactSampler()
     ).fit(), ValueError, ("ExactSampler", "n=26", "25")),
    # -- samplers
    ("UniformSampler antithetic as text", lambda: dv.UniformSampler(antithetic="yes"),
     TypeError, ("antithetic", "bool")),
    ("PermutationSampler truncation as a number",
     lambda: dv.PermutationSampler(truncation=0.1),  # type: ignore[arg-type]
     TypeError, ("truncation", "RelativeTruncation", "float")),
    ("AntitheticSampler on one player",
     lambda: dv.BanzhafValuation(
         _game(1), sampler=dv.AntitheticSampler(), stop=dv.MaxSamples(4)
     ).fit(), ValueError, ("n=1",)),
    ("MSRSampler inclusion=0", lambda: dv.MSRSampler(inclusion=0), ValueError,
     ("inclusion", "strictly between 0 and 1")),
    ("MSRSampler inclusion=2", lambda: dv.MSRSampler(inclusion=2), ValueError,
     ("inclusion", "[0, 1)", "2")),
    ("StratifiedSampler allocation name",
     lambda: dv.StratifiedSampler("equal"), ValueError,
     ("allocation", "'uniform'", "'equal'")),
    ("StratifiedSampler strata=0", lambda: dv.StratifiedSampler(strata=0),
     ValueError, ("strata", ">= 1")),
    ("StratifiedSampler negative weight",
     lambda: dv.StratifiedSampler([1, -1, 1, 1, 1]), ValueError,
     ("allocation", ">= 0")),
    ("StratifiedSampler weights for another n",
     _mc(dv.ShapleyValuation, sampler=dv.StratifiedSampler([1, 1, 1])), ValueError,
     ("allocation has 3 weights", "n+1 = 5")),
    ("StratifiedSampler more strata than sizes",
     _mc(dv.BanzhafValuation, sampler=dv.StratifiedSampler(strata=10)), ValueError,
     ("strata=10", "n+1 = 5")),
    ("OwenSampler n_q=1", lambda: dv.OwenSampler(1), ValueError, ("n_q", ">= 2")),
    ("OwenSampler antithetic=1", lambda: dv.OwenSampler(4, antithetic=1),  # type: ignore[arg-type]
     TypeError, ("antithetic", "bool", "int")),
    ("RegressionSampler groups=1", lambda: dv.RegressionSampler(groups=1),
     ValueError, ("groups", "2 ..", "got 1")),
    ("RegressionSampler order=3", lambda: dv.RegressionSampler(order=3), ValueError,
     ("order", "1 or 2", "3")),
    ("RegressionSampler on 400 players",
     lambda: dv.ShapleyValuation(
         _game(400), sampler=dv.RegressionSampler(), stop=dv.MaxSamples(30)
     ).fit(), ValueError, ("RegressionSampler", "n=400", "349")),
    ("RegressionSampler for Beta Shapley",
     _mc(dv.BetaShapleyValuation, alpha=4, beta=1, sampler=dv.RegressionSampler()),
     ValueError, ("RegressionSampler", "beta(4,1)")),
    # -- sampler and stop combinations, budgets
    ("exact sampler with MaxStderr",
     lambda: dv.ShapleyValuation(
         _game(), sampler=dv.ExactSampler(), stop=dv.MaxStderr(0.1)
     ).fit(), ValueError, ("stop must be None", "ExactSampler")),
    ("exact Banzhaf with MaxSamples",
     lambda: dv.BanzhafValuation(
         _game(), sampler=dv.ExactSampler(), stop=dv.MaxSamples(3)
     ).fit(), ValueError, ("stop must be None", "ExactSampler")),
    ("MaxSamples(0)", lambda: dv.MaxSamples(0), ValueError, ("k", ">= 1", "0")),
    ("MaxEvaluations(-5)", lambda: dv.MaxEvaluations(-5), ValueError,
     ("n", ">= 1", "-5")),
    ("MaxEvaluations(inf)", lambda: dv.MaxEvaluations(float("inf")), ValueError,
     ("n", "whole number", "inf")),
    ("MaxSamples(True)", lambda: dv.MaxSamples(True), TypeError, ("k", "bool")),
    ("budget the anchors use up",
     lambda: dv.ShapleyValuation(_game(), stop=dv.MaxEvaluations(2), seed=0).fit(),
     ValueError, ("stop=", "cannot pay for a single sample", "raise the budget")),
    # -- warm starts, the memo
    ("warm_start as text",
     lambda: dv.ModelUtility(LogisticRegression(), _data(), warm_start="yes"),
     TypeError, ("warm_start", "True or False", "str")),
    ("warm_start without a warm_start parameter",
     lambda: dv.ModelUtility(KNeighborsClassifier(), _data(), warm_start=True),
     TypeError, ("warm_start=True", "KNeighborsClassifier", "warm_start=False")),
    ("memo as text", lambda: _valid_valuation().fit(memo="on"),  # type: ignore[arg-type]
     TypeError, ("memo", "MemoConfig", "str")),
    ("MemoConfig memory_fraction=0.9", lambda: dv.MemoConfig(memory_fraction=0.9),
     ValueError, ("memory_fraction", "(0, 0.5]", "0.9")),
    ("MemoConfig memory_fraction as text",
     lambda: dv.MemoConfig(memory_fraction="10%"), TypeError,
     ("memory_fraction", "number", "str")),
    ("MemoConfig max_bytes=1.5e6", lambda: dv.MemoConfig(max_bytes=1.5e6),
     ValueError, ("max_bytes", "integer", "1500000.0")),
    # -- the cluster's facts
    ("dataset too large for the workers' memory", _too_large_for_the_workers,
     ValueError, ("too large", "memory limit", "1280 bytes", "1024 bytes")),
    # -- issue 19: inputs that used to get through
    ("y_train with a shuffled index", _with_frame("y_train", _shuffled_target()),
     ValueError, ("y_train", "index", "x_train", "reset_index")),
    ("metric, not a scorer",
     lambda: dv.ModelUtility(LogisticRegression(), _data(), scoring=accuracy_score),
     TypeError, ("scoring=accuracy_score", "metric", "make_scorer(accuracy_score)")),
    ("binary scorer on 3 classes",
     lambda: dv.ModelUtility(LogisticRegression(), _three_classes(), "roc_auc"),
     ValueError, ("scoring='roc_auc'", "3 classes", "roc_auc_ovr")),
    ("stop ~MaxSamples(5)", _mc(dv.ShapleyValuation, stop=~dv.MaxSamples(5)),
     ValueError, ("stop=~MaxSamples(5)", "can never end the run")),
    ("stop MaxSamples(10) & ~MaxSamples(20)",
     _mc(dv.ShapleyValuation, stop=dv.MaxSamples(10) & ~dv.MaxSamples(20)),
     ValueError, ("stop=(MaxSamples(10) & ~MaxSamples(20))", "can never end")),
    ("stop MaxStderr alone", _mc(dv.BanzhafValuation, stop=dv.MaxStderr(0.01)),
     ValueError, ("stop=MaxStderr(0.01", "may never end the run", "| MaxTime(")),
    ("complex features for a model",
     lambda: dv.ModelUtility(LogisticRegression(), dv.Dataset(X + 1j, Y, X, Y)),
     TypeError, ("x_train", "complex", "real")),
    ("KNN-Shapley on text columns", _knn(_text_frame()), TypeError,
     ("x_train", "KNN-Shapley", "numeric", "'a'")),
    ("KNN-Shapley on complex features", _knn(X + 1j), TypeError,
     ("x_train", "KNN-Shapley", "complex")),
    ("pipeline step is a class",
     lambda: dv.ModelUtility(make_pipeline(StandardScaler, LogisticRegression()),
                             _data()),
     TypeError, ("model", "step 'type'", "class StandardScaler", "StandardScaler()")),
    ("duplicate column names",
     lambda: dv.Dataset(X_DUPLICATE_COLUMNS, Y, X_DUPLICATE_COLUMNS, Y), ValueError,
     ("x_train", "duplicate column names", "'a'")),
]  # fmt: skip


def test_there_are_at_least_twenty_five_cases() -> None:
    assert len(CASES) >= 25
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.usefixtures("no_cluster")
@pytest.mark.parametrize(
    ("call", "error", "fragments"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_raises_a_clear_error_before_any_cluster(
    call: Callable[[], Any], error: type[Exception], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.usefixtures("no_cluster")
def test_the_patches_do_stop_a_valid_run() -> None:
    """The control: a valid run gets as far as the cluster and hits the sentinel."""
    with pytest.raises(ClusterTouched):
        _valid_valuation().fit()
    with pytest.raises(ClusterTouched):
        daskval.engine.cluster.embedded_client()


def test_a_valid_setup_passes_every_check() -> None:
    """The good versions of the bad inputs above are all accepted."""
    data = dv.Dataset(X_DF, Y, X_DF, Y, names=[f"p{i}" for i in range(20)])
    dv.ModelUtility(LogisticRegression(), data, scoring="neg_log_loss")
    dv.ModelUtility(SVC(probability=True), data, scoring="roc_auc")
    dv.ModelUtility(LinearRegression(), dv.Dataset(X, X[:, 0], X, X[:, 0]), "r2")
    grouped = _data(groups=np.repeat(["a", "b", "c", "d"], 5))
    assert grouped.n == 4
    assert dv.MaxSamples(1e3).k == 1000
    assert dv.MaxEvaluations(np.int64(7)).n == 7
    # the good versions of issue 19's cases
    dv.Dataset(X_DF, pd.Series(Y, index=X_DF.index), X_DF, Y)
    dv.Dataset(X_DF, _shuffled_target().loc[X_DF.index], X_DF, Y)
    dv.ModelUtility(LogisticRegression(), data, scoring=make_scorer(accuracy_score))
    dv.ModelUtility(LogisticRegression(), data, scoring=lambda est, x, y: 1.0)
    dv.ModelUtility(LogisticRegression(), _three_classes(), scoring="roc_auc_ovr")
    dv.ModelUtility(make_pipeline(StandardScaler(), LogisticRegression()), data)
    for stop in (
        dv.MaxStderr(0.01) | dv.MaxTime(60),
        dv.MaxSamples(10) & ~dv.MaxTime(60) | dv.MaxSamples(20),
        ~~dv.MaxSamples(5),
    ):
        dv.ShapleyValuation(_game(), stop=stop)
    dv.KNNShapleyValuation(dv.Dataset(X_DF, Y, X_DF, Y), k=3)


def test_result_before_fit_raises_not_fitted_error() -> None:
    """``v.result_`` before fit() is scikit-learn's NotFittedError (also an
    AttributeError, so hasattr(v, "result_") is False), not a silent None."""
    from sklearn.exceptions import NotFittedError

    game = dv.FunctionUtility(_sum_of_players, n=4)
    for valuation in (
        dv.ShapleyValuation(game, stop=dv.MaxSamples(2)),
        dv.BanzhafValuation(game, stop=dv.MaxSamples(2)),
    ):
        with pytest.raises(NotFittedError, match="call fit"):
            _ = valuation.result_
        assert not hasattr(valuation, "result_")


def _sum_of_players(indices: Any) -> float:
    return float(np.sum(indices))
