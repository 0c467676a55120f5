"""Mergeable per-player statistics, and the partial state of a sample range.

Workers turn a range of samples into a :class:`Partial`: for every named
statistic, per-player counts, sums and sums of squared deviations
(:class:`Moments`). Partials of adjacent ranges merge associatively (Chan et
al.'s pairwise update), so they can be tree-summed in any grouping, and the
merged state is never larger than one partial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daskval.utility import EvalStats

__all__ = ["Moments", "Partial", "Rows", "Statistic", "Sums"]


@dataclass
class Moments:
    """Per-player count, sum and sum of squared deviations from the mean.

    Attributes
    ----------
    count : np.ndarray of int64
        How many contributions each player received.
    total : np.ndarray of float64
        Their sum.
    m2 : np.ndarray of float64
        Their sum of squared deviations from the player's mean.
    """

    count: np.ndarray
    total: np.ndarray
    m2: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> Moments:
        return cls(np.zeros(n, np.int64), np.zeros(n), np.zeros(n))

    @classmethod
    def from_samples(
        cls, values: np.ndarray, mask: np.ndarray | None = None
    ) -> Moments:
        """Moments of a (samples, players) matrix; ``mask`` marks present entries."""
        if mask is None:
            count = np.full(values.shape[1], values.shape[0], dtype=np.int64)
            total = values.sum(axis=0)
            mean = total / np.maximum(count, 1)
            m2 = ((values - mean) ** 2).sum(axis=0)
        else:
            count = mask.sum(axis=0).astype(np.int64)
            masked = np.where(mask, values, 0.0)
            total = masked.sum(axis=0)
            mean = total / np.maximum(count, 1)
            m2 = np.where(mask, (values - mean) ** 2, 0.0).sum(axis=0)
        return cls(count, total, m2)

    @property
    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.total / np.maximum(self.count, 1), 0.0)

    @property
    def variance(self) -> np.ndarray:
        """The sample variance (ddof=1) of each player's contributions; inf below 2."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.count > 1, self.m2 / np.maximum(self.count - 1, 1), np.inf
            )

    @property
    def stderr(self) -> np.ndarray:
        """The standard error of each player's mean; inf below two contributions."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.count > 1,
                np.sqrt(self.variance / np.maximum(self.count, 1)),
                np.inf,
            )

    def merge(self, other: Moments) -> Moments:
        """The moments of both sets of contributions together (a new object)."""
        count = self.count + other.count
        total = self.total + other.total
        safe = np.maximum(count, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = other.total / np.maximum(other.count, 1) - self.total / np.maximum(
                self.count, 1
            )
        cross = delta**2 * (self.count * other.count) / safe
        m2 = (
            self.m2
            + other.m2
            + np.where((self.count > 0) & (other.count > 0), cross, 0.0)
        )
        return Moments(count, total, m2)

    @property
    def nbytes(self) -> int:
        return int(self.count.nbytes + self.total.nbytes + self.m2.nbytes)


@dataclass
class Sums:
    """Named arrays that merge by addition (sufficient statistics such as
    weighted sums, or the z z^T and z u sums of a regression estimator).

    Attributes
    ----------
    arrays : dict of str to np.ndarray
        Any shapes; two Sums merge when they have the same names and shapes.
    """

    arrays: dict[str, np.ndarray]

    @classmethod
    def zeros(cls, shapes: dict[str, tuple[int, ...]]) -> Sums:
        return cls({name: np.zeros(shape) for name, shape in shapes.items()})

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def merge(self, other: Sums) -> Sums:
        """The sums of both (a new object)."""
        return Sums({k: a + other.arrays[k] for k, a in self.arrays.items()})

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))


@dataclass
class Rows:
    """Named arrays whose rows are concatenated in sample order: the samples
    themselves, for estimators that need every one (the constraints of a
    least-core linear program).

    Partials only ever merge with the adjacent next range (see
    :meth:`Partial.merge`), so concatenation keeps the rows of the first K
    samples in sample order, whatever the merge grouping.

    Attributes
    ----------
    arrays : dict of str to np.ndarray
        Arrays with the same number of rows (first axis); two Rows merge when
        they have the same names, trailing shapes and dtypes.
    """

    arrays: dict[str, np.ndarray]

    @classmethod
    def empty(cls, layout: dict[str, tuple[tuple[int, ...], np.dtype[Any]]]) -> Rows:
        """Zero rows of each name's (trailing shape, dtype)."""
        return cls(
            {
                name: np.empty((0, *shape), dtype=dtype)
                for name, (shape, dtype) in layout.items()
            }
        )

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def merge(self, other: Rows) -> Rows:
        """These rows followed by ``other``'s (a new object)."""
        return Rows(
            {k: np.concatenate([a, other.arrays[k]]) for k, a in self.arrays.items()}
        )

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))


# what a Plan accumulates per name: every kind merges associatively
Statistic = Moments | Sums | Rows


@dataclass
class Partial:
    """The merged state of the samples ``start .. stop-1`` of one run.

    Attributes
    ----------
    start, stop : int
        The contiguous range of global sample indices covered.
    moments : dict of str to Moments, Sums or Rows
        The method's named statistics.
    eval_stats : EvalStats
        Utility calls, failures and warnings of those samples.
    sample_evaluations : np.ndarray or None
        Utility calls per sample, kept by unmerged leaves only (to cut an
        evaluation budget at an exact sample).
    compute_seconds : float
        Worker time spent evaluating these samples.
    exhausted : bool
        True when an evaluation budget cut this state short: no sample may
        be added after it.
    """

    start: int
    stop: int
    moments: dict[str, Statistic]
    eval_stats: EvalStats = field(default_factory=EvalStats)
    sample_evaluations: np.ndarray | None = None
    compute_seconds: float = 0.0
    exhausted: bool = False

    @property
    def n_samples(self) -> int:
        return self.stop - self.start

    @property
    def n_evaluations(self) -> int:
        return self.eval_stats.n_evaluations

    def merge(self, other: Partial) -> Partial:
        """This range followed by the adjacent range ``other``."""
        if other.start != self.stop:
            raise ValueError(
                f"cannot merge samples [{self.start}, {self.stop}) with "
                f"[{other.start}, {other.stop}): they are not adjacent"
            )
        if self.exhausted:
            raise ValueError("cannot add samples past an exhausted evaluation budget")
        stats = EvalStats()
        stats += self.eval_stats
        stats += other.eval_stats
        moments: dict[str, Statistic] = {
            k: m.merge(other.moments[k])  # type: ignore[arg-type]
            for k, m in self.moments.items()
        }
        return Partial(
            self.start,
            other.stop,
            moments,
            stats,
            None,
            self.compute_seconds + other.compute_seconds,
            other.exhausted,
        )

    @property
    def nbytes(self) -> int:
        extra = 0 if self.sample_evaluations is None else self.sample_evaluations.nbytes
        return sum(m.nbytes for m in self.moments.values()) + extra
