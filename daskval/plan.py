"""The contract between a valuation method and the engine.

A method describes *what* to compute as a :class:`Plan`: a small picklable
object that turns a range of global sample indices into per-player
statistics, and the merged statistics into values. The engine (the only
place that knows about Dask) decides *where and when* ranges run. A new
estimator is a new Plan; it needs no Dask code.
"""

from __future__ import annotations

import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from daskval.accumulate import Moments, Partial, Statistic
from daskval.stopping import StoppingCriterion
from daskval.utility import EvalStats, Utility

__all__ = [
    "EnumerationPlan",
    "Estimate",
    "Plan",
    "RunSpec",
    "derived",
    "evaluate_anchors",
    "evaluate_range",
    "initial_partial",
]


# values, standard errors, counts
Estimate = tuple[np.ndarray, np.ndarray, np.ndarray]

T = TypeVar("T")

# derived tables per process, by (plan token, attribute): a worker computes a
# run's tables once, not once per task
_DERIVED: OrderedDict[tuple[str, str], Any] = OrderedDict()
_DERIVED_ENTRIES = 32
_derived_lock = threading.Lock()


class derived(Generic[T]):  # lower case: used like functools.cached_property
    """A plan attribute computed from the plan's parameters where it is first
    used, and never pickled.

    Plans travel inside every task, so their size is paid per task: the
    per-size weight tables of a semivalue are O(n) floats (1.6 MB for MSR at
    n = 100,000, which made every leaf ship 1.6 MB to the scheduler and a
    worker). A derived table is dropped from the pickle and rebuilt on the
    worker, once per process and run: it is cached under the plan's token
    (drawn when the plan is first pickled), which every copy of the plan
    shares. The function must depend only on parameters fixed at
    construction.
    """

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, plan: Any, owner: type | None = None) -> T:
        if plan is None:
            return self  # type: ignore[return-value]
        token = plan.__dict__.get("_token")
        key = (token, self.name)
        with _derived_lock:
            if token is not None and key in _DERIVED:
                _DERIVED.move_to_end(key)
                value: T = _DERIVED[key]
                plan.__dict__[self.name] = value
                return value
        value = self.func(plan)
        # instance attributes win over this (non-data) descriptor from now on
        plan.__dict__[self.name] = value
        if token is not None:
            with _derived_lock:
                _DERIVED[key] = value
                while len(_DERIVED) > _DERIVED_ENTRIES:
                    _DERIVED.popitem(last=False)
        return value


class Plan(ABC):
    """What one valuation run computes.

    Attributes
    ----------
    n : int
        Number of players.
    seed : int
        Root seed: sample ``j`` depends on ``(seed, j)`` only.
    statistics : tuple of str
        Names of the per-player :class:`Moments` a range produces (plans
        with other accumulators override :meth:`empty_statistics`).
    """

    n: int
    seed: int
    statistics: tuple[str, ...] = ("marginals",)

    def __getstate__(self) -> dict[str, Any]:
        # derived tables are rebuilt where they are used (see ``derived``)
        self.__dict__.setdefault("_token", uuid.uuid4().hex)
        names = {
            name
            for klass in type(self).__mro__
            for name, value in vars(klass).items()
            if isinstance(value, derived)
        }
        return {k: v for k, v in self.__dict__.items() if k not in names}

    def empty_statistics(self) -> dict[str, Statistic]:
        """The statistics of zero samples; every range's statistics merge into it."""
        return {name: Moments.zeros(self.n) for name in self.statistics}

    def anchors(self) -> list[np.ndarray]:
        """Coalitions evaluated once, before any sample (e.g. u(empty), u(N))."""
        return []

    def bind_anchors(self, values: list[float]) -> None:
        """Receive the utilities of :meth:`anchors`, in the same order."""

    @abstractmethod
    def sample_limit(self) -> int | None:
        """How many samples exist (None: endless)."""

    @abstractmethod
    def max_evaluations_per_sample(self) -> int:
        """An upper bound on the utility calls of one sample."""

    def fixed_evaluations_per_sample(self) -> int | None:
        """The utility calls of every sample when constant, else None."""
        return None

    def samples_per_task(self, n_threads: int) -> int | None:
        """A fixed task size for a cluster of ``n_threads`` worker threads,
        for plans whose tasks cost something timing cannot see (e.g. a large
        statistic per task); None: sized from the measured evaluation time."""
        return None

    @abstractmethod
    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        """Samples ``start .. stop-1``: statistics and utility calls per sample."""

    @abstractmethod
    def estimate(self, moments: dict[str, Statistic]) -> Estimate:
        """Values, standard errors and counts from merged statistics.

        For a plan with several outputs this is the primary one, which the
        stopping criterion watches.
        """

    def estimates(self, moments: dict[str, Statistic]) -> dict[str, Estimate] | None:
        """Every output by name, primary first, for plans that estimate several
        things from the same samples (several semivalues); None for one output."""
        return None

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able description (result metadata, checkpoint identity)."""


class EnumerationPlan(Plan):
    """A plan whose samples are enumerated once each, at one evaluation apiece.

    Its values are the sums of the contributions (exact methods: exact Shapley
    over all subsets, leave-one-out), with a zero standard error.
    """

    def max_evaluations_per_sample(self) -> int:
        return 1

    def fixed_evaluations_per_sample(self) -> int | None:
        return 1

    def estimate(self, moments: dict[str, Statistic]) -> Estimate:
        m = moments["marginals"]
        assert isinstance(m, Moments)
        return m.total.copy(), np.zeros(self.n), m.count


@dataclass(frozen=True)
class RunSpec:
    """One run, as the engine receives it: what to compute, never how.

    A method builds it (``Valuation.run_spec()``) after checking its own
    arguments; the engine reads nothing else of the method.

    Attributes
    ----------
    plan : Plan
        This run's plan (a fresh object per run: the engine binds the
        anchors' utilities to it).
    utility : Utility
        The game, broadcast to the workers.
    stop : StoppingCriterion or None
        When to stop (None: when the plan's samples run out).
    method_name : str
        The method's name: the result's output name, the default
        checkpoint's file name.
    seed : int
        The root seed (also in :attr:`description`).
    description : dict
        A JSON-able description of the method (result metadata and the
        checkpoint's identity).
    default_memo : bool
        Whether the workers' memo is used when the caller says nothing.
    """

    plan: Plan
    utility: Utility
    stop: StoppingCriterion | None
    method_name: str
    seed: int
    description: dict[str, Any] = field(default_factory=dict)
    default_memo: bool = True

    def describe(self) -> dict[str, Any]:
        """The method's description (a copy)."""
        return dict(self.description)

    @property
    def names(self) -> list[str]:
        """The players' names: the dataset's, or their indices."""
        names = getattr(getattr(self.utility, "data", None), "names", None)
        if names is None or len(names) != self.utility.n:
            return [str(i) for i in range(self.utility.n)]
        return [str(name) for name in names]


def initial_partial(plan: Plan, anchor_stats: EvalStats | None = None) -> Partial:
    """The empty state before sample 0, carrying the anchors' evaluation counts."""
    stats = EvalStats()
    if anchor_stats is not None:
        stats += anchor_stats
    return Partial(0, 0, plan.empty_statistics(), stats)


def evaluate_anchors(
    plan: Plan, utility: Utility
) -> tuple[list[float], EvalStats, float]:
    """u of each anchor coalition, the counters, the slowest call's seconds."""
    stats = EvalStats()
    values, slowest = [], 0.0
    with utility.context():
        for coalition in plan.anchors():
            begin = time.perf_counter()
            values.append(utility.evaluate(coalition, stats))
            slowest = max(slowest, time.perf_counter() - begin)
    return values, stats, slowest


def evaluate_range(plan: Plan, utility: Utility, start: int, stop: int) -> Partial:
    """Run samples ``start .. stop-1`` here and now (on a worker, or in tests)."""
    stats = EvalStats()
    begin = time.perf_counter()
    with utility.context():
        moments, per_sample = plan.run(utility, start, stop, stats)
    return Partial(
        start,
        stop,
        moments,
        stats,
        np.asarray(per_sample, dtype=np.int32),
        time.perf_counter() - begin,
    )
