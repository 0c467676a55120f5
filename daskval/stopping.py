"""Stopping criteria, combinable with ``|`` (either), ``&`` (both) and ``~`` (not).

A criterion looks at a :class:`Snapshot` of the merged state, which the client
fetches every second or two, and says whether to stop and how complete the run
is (for progress bars). Count budgets (:class:`MaxSamples`,
:class:`MaxEvaluations`) are also handed to the engine, which then holds
exactly the first samples that fit them, whatever finished first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from daskval._validation import (
    check_fraction,
    check_positive_int,
    check_positive_number,
)

__all__ = [
    "MaxEvaluations",
    "MaxSamples",
    "MaxStderr",
    "MaxTime",
    "RankStable",
    "Snapshot",
    "StoppingCriterion",
    "check_ends",
    "planned_samples",
]

#: whether a criterion ends every run: "surely" (it becomes true and stays
#: true), "never" (it becomes false and stays false), "maybe" (it depends on
#: the values, which need not settle)
Ending = Literal["surely", "maybe", "never"]

# sample counts up to which a count budget's end is worked out up front
_PLANNING_HORIZON = 2**20


@dataclass
class Snapshot:
    """What a stopping criterion sees of a running valuation."""

    values: np.ndarray
    stderr: np.ndarray
    counts: np.ndarray
    n_samples: int
    n_evaluations: int
    elapsed: float


class StoppingCriterion(ABC):
    """Base class of stopping criteria."""

    @abstractmethod
    def check(self, snap: Snapshot) -> bool:
        """True when the run should stop."""

    @abstractmethod
    def completion(self, snap: Snapshot) -> float:
        """How far the run is towards stopping, in [0, 1]."""

    def reset(self) -> None:
        """Forget the state of an earlier run (called when a run starts)."""

    def seconds_left(self, elapsed: float) -> float | None:
        """Seconds from ``elapsed`` by which a time budget surely ends the run
        (None: no time budget bounds it). The engine sizes tasks to finish
        by then: samples that end after it are dropped."""
        return None

    def count_stop(self, evaluations: np.ndarray, offset: int) -> int | None:
        """The sample count at which sample and evaluation counts alone end a run.

        Parameters
        ----------
        evaluations : np.ndarray of int
            ``evaluations[i]``: utility calls spent by the first ``offset + i``
            samples, anchors included, for every sample known so far.
        offset : int
            The number of samples before ``evaluations[0]``.

        Returns
        -------
        int or None
            The number of samples K the run must hold, when counts decide it
            and the known samples suffice to tell (the engine then cuts the
            run at exactly K, whatever finished first); None when the
            criterion depends on values or time, or may be met later.
        """
        return None

    def ending(self) -> Ending:
        """Whether the criterion ends every run (see :data:`Ending`).

        Budgets (samples, evaluations, time) surely do; criteria on the
        values may not; a criterion of your own is "maybe" unless it says
        otherwise.
        """
        return "maybe"

    @abstractmethod
    def describe(self) -> str:
        """A readable description, also stored in result metadata."""

    def __or__(self, other: StoppingCriterion) -> StoppingCriterion:
        return _Or(self, _as_criterion(other, "|"))

    def __and__(self, other: StoppingCriterion) -> StoppingCriterion:
        return _And(self, _as_criterion(other, "&"))

    def __invert__(self) -> StoppingCriterion:
        return _Not(self)

    def __repr__(self) -> str:
        return self.describe()


def planned_samples(
    stop: StoppingCriterion | None,
    anchor_evaluations: int,
    evaluations_per_sample: int | None,
    limit: int | None = None,
) -> int | None:
    """How many samples a run will hold when counts alone decide it.

    Parameters
    ----------
    stop : StoppingCriterion or None
        The run's criterion (None: the sampler's ``limit`` ends it).
    anchor_evaluations : int
        Utility calls spent before the first sample (u(empty), u(N), ...).
    evaluations_per_sample : int or None
        The calls of every sample when constant; None when they vary (then
        only sample counts are planned, evaluation budgets are cut exactly
        as the run goes).
    limit : int, optional
        The number of distinct samples there are (exact enumeration).

    Returns
    -------
    int or None
        An upper bound on the samples of the run, exact for constant costs;
        None when values or time decide.
    """
    if stop is None:
        return limit
    horizon = _PLANNING_HORIZON if limit is None else min(limit, _PLANNING_HORIZON)
    per_sample = evaluations_per_sample or 0
    spent = anchor_evaluations + per_sample * np.arange(horizon + 1, dtype=np.int64)
    planned = stop.count_stop(spent, 0)
    if limit is None:
        return planned
    return limit if planned is None else min(limit, planned)


def check_ends(stop: StoppingCriterion, name: str = "stop") -> None:
    """Refuse a criterion that may not end a run of unbounded sampling.

    Raises
    ------
    ValueError
        Naming ``name`` when ``stop`` can never end the run (``~MaxSamples(5)``
        is false from the 5th sample on) or may not (``MaxStderr`` alone: a
        standard error need not fall below the threshold), with the fix.
    """
    ending = stop.ending()
    if ending == "surely":
        return
    text = stop.describe()
    if ending == "never":
        raise ValueError(
            f"{name}={text} can never end the run: a negated budget (~) is false "
            "for good once the budget is reached, so sampling would go on "
            f"forever; use a budget such as {name}=MaxSamples(1000)"
        )
    raise ValueError(
        f"{name}={text} may never end the run: criteria on the values "
        "(MaxStderr, RankStable) need not be met; add a budget, e.g. "
        f"{name}={text} | MaxTime(3600) or | MaxSamples(10000)"
    )


def _as_criterion(value: Any, op: str) -> StoppingCriterion:
    if not isinstance(value, StoppingCriterion):
        raise TypeError(
            f"cannot combine a stopping criterion with {type(value).__name__}"
            f" using {op}"
        )
    return value


def _min_stop(a: int | None, b: int | None) -> int | None:
    # an undecided side ends at or after every known sample, so the decided
    # side is the earlier one
    if a is None:
        return b
    return a if b is None else min(a, b)


def _max_stop(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


class _Or(StoppingCriterion):
    def __init__(self, a: StoppingCriterion, b: StoppingCriterion) -> None:
        self.a, self.b = a, b

    def check(self, snap: Snapshot) -> bool:
        # evaluate both: stateful criteria must see every snapshot
        first, second = self.a.check(snap), self.b.check(snap)
        return first or second

    def completion(self, snap: Snapshot) -> float:
        return max(self.a.completion(snap), self.b.completion(snap))

    def reset(self) -> None:
        self.a.reset()
        self.b.reset()

    def count_stop(self, evaluations: np.ndarray, offset: int) -> int | None:
        return _min_stop(
            self.a.count_stop(evaluations, offset),
            self.b.count_stop(evaluations, offset),
        )

    def seconds_left(self, elapsed: float) -> float | None:
        left = [
            s
            for s in (self.a.seconds_left(elapsed), self.b.seconds_left(elapsed))
            if s is not None
        ]
        return min(left) if left else None

    def ending(self) -> Ending:
        endings = {self.a.ending(), self.b.ending()}
        if "surely" in endings:
            return "surely"
        return "never" if endings == {"never"} else "maybe"

    def describe(self) -> str:
        return f"({self.a.describe()} | {self.b.describe()})"


class _And(_Or):
    def check(self, snap: Snapshot) -> bool:
        first, second = self.a.check(snap), self.b.check(snap)
        return first and second

    def completion(self, snap: Snapshot) -> float:
        return min(self.a.completion(snap), self.b.completion(snap))

    def count_stop(self, evaluations: np.ndarray, offset: int) -> int | None:
        return _max_stop(
            self.a.count_stop(evaluations, offset),
            self.b.count_stop(evaluations, offset),
        )

    def seconds_left(self, elapsed: float) -> float | None:
        # both must hold: only two time budgets bound the end
        a, b = self.a.seconds_left(elapsed), self.b.seconds_left(elapsed)
        return None if a is None or b is None else max(a, b)

    def ending(self) -> Ending:
        endings = {self.a.ending(), self.b.ending()}
        if "never" in endings:
            return "never"
        return "surely" if endings == {"surely"} else "maybe"

    def describe(self) -> str:
        return f"({self.a.describe()} & {self.b.describe()})"


class _Not(StoppingCriterion):
    def __init__(self, inner: StoppingCriterion) -> None:
        self.inner = inner

    def check(self, snap: Snapshot) -> bool:
        return not self.inner.check(snap)

    def completion(self, snap: Snapshot) -> float:
        return 1.0 - self.inner.completion(snap)

    def reset(self) -> None:
        self.inner.reset()

    def __invert__(self) -> StoppingCriterion:
        return self.inner  # ~~c is c, budgets included

    def ending(self) -> Ending:
        # not-a-budget is false for good once the budget is reached
        flipped: dict[Ending, Ending] = {"surely": "never", "never": "surely"}
        return flipped.get(self.inner.ending(), "maybe")

    def describe(self) -> str:
        return f"~{self.inner.describe()}"


class MaxSamples(StoppingCriterion):
    """Stop after exactly the first ``k`` samples (a permutation is one sample).

    Parameters
    ----------
    k : int
        The number of samples, >= 1.
    """

    def __init__(self, k: int) -> None:
        self.k = check_positive_int(k, "k")

    def check(self, snap: Snapshot) -> bool:
        return snap.n_samples >= self.k

    def completion(self, snap: Snapshot) -> float:
        return min(1.0, snap.n_samples / self.k)

    def count_stop(self, evaluations: np.ndarray, offset: int) -> int | None:
        return self.k if offset + len(evaluations) - 1 >= self.k else None

    def ending(self) -> Ending:
        return "surely"

    def describe(self) -> str:
        return f"MaxSamples({self.k})"


class MaxEvaluations(StoppingCriterion):
    """Stop after the longest prefix of samples that costs at most ``n`` utility calls.

    Parameters
    ----------
    n : int
        The budget of utility evaluations, >= 1. It includes the run's
        one-off evaluations (u(empty) and u(N) for permutation sampling).
    """

    def __init__(self, n: int) -> None:
        self.n = check_positive_int(n, "n")

    def check(self, snap: Snapshot) -> bool:
        return snap.n_evaluations >= self.n

    def completion(self, snap: Snapshot) -> float:
        return min(1.0, snap.n_evaluations / self.n)

    def count_stop(self, evaluations: np.ndarray, offset: int) -> int | None:
        over = np.flatnonzero(evaluations > self.n)
        if len(over) == 0:
            return None  # every known sample fits: a later one may too
        # the one-off anchor evaluations are spent whatever the budget
        return max(0, offset + int(over[0]) - 1)

    def ending(self) -> Ending:
        return "surely"

    def describe(self) -> str:
        return f"MaxEvaluations({self.n})"


class MaxTime(StoppingCriterion):
    """Stop once ``seconds`` have passed since the run started.

    The result then holds the samples merged by that time; it is not
    reproducible from the seed alone.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = check_positive_number(seconds, "seconds")

    def check(self, snap: Snapshot) -> bool:
        return snap.elapsed >= self.seconds

    def completion(self, snap: Snapshot) -> float:
        return min(1.0, snap.elapsed / self.seconds)

    def seconds_left(self, elapsed: float) -> float | None:
        return max(0.0, self.seconds - elapsed)

    def ending(self) -> Ending:
        return "surely"

    def describe(self) -> str:
        return f"MaxTime({self.seconds:g})"


class MaxStderr(StoppingCriterion):
    """Stop when every player's standard error is at most ``threshold``.

    Parameters
    ----------
    threshold : float
        The largest acceptable standard error, > 0.
    burn_in : int
        Contributions every player needs before its stderr is trusted.
    """

    def __init__(self, threshold: float, burn_in: int = 10) -> None:
        self.threshold = check_positive_number(threshold, "threshold")
        self.burn_in = check_positive_int(burn_in, "burn_in")

    def _met(self, snap: Snapshot) -> np.ndarray:
        return (snap.counts >= self.burn_in) & (snap.stderr <= self.threshold)

    def check(self, snap: Snapshot) -> bool:
        return bool(self._met(snap).all())

    def completion(self, snap: Snapshot) -> float:
        return float(self._met(snap).mean()) if len(snap.counts) else 1.0

    def describe(self) -> str:
        return f"MaxStderr({self.threshold:g}, burn_in={self.burn_in})"


def _ranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values)


class RankStable(StoppingCriterion):
    """Stop when the ranking of the players stops changing.

    The Spearman correlation between the values at successive checks (taken
    every ``min_samples`` new samples at least) must reach ``threshold`` for
    ``patience`` checks in a row.

    Parameters
    ----------
    threshold : float
        Spearman correlation to reach, in [0, 1].
    patience : int
        Consecutive checks that must reach it.
    min_samples : int
        New samples between two compared snapshots.
    """

    def __init__(
        self, threshold: float = 0.999, patience: int = 3, min_samples: int = 10
    ) -> None:
        self.threshold = check_fraction(threshold, "threshold", inclusive_high=True)
        self.patience = check_positive_int(patience, "patience")
        self.min_samples = check_positive_int(min_samples, "min_samples")
        self.reset()

    def reset(self) -> None:
        self._last_ranks: np.ndarray | None = None
        self._last_samples = 0
        self._streak = 0

    def check(self, snap: Snapshot) -> bool:
        if (
            self._last_ranks is not None
            and snap.n_samples - self._last_samples < self.min_samples
        ):
            return self._streak >= self.patience
        ranks = _ranks(snap.values)
        if self._last_ranks is not None:
            if np.ptp(ranks) == 0 or np.ptp(self._last_ranks) == 0:
                corr = 1.0 if np.array_equal(ranks, self._last_ranks) else 0.0
            else:
                corr = float(np.corrcoef(ranks, self._last_ranks)[0, 1])
            self._streak = self._streak + 1 if corr >= self.threshold else 0
        self._last_ranks, self._last_samples = ranks, snap.n_samples
        return self._streak >= self.patience

    def completion(self, snap: Snapshot) -> float:
        return min(1.0, self._streak / self.patience)

    def describe(self) -> str:
        return (
            f"RankStable({self.threshold:g}, patience={self.patience}, "
            f"min_samples={self.min_samples})"
        )
