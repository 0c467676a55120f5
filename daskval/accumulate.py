"""Mergeable per-player statistics, and the partial state of a sample range.

Workers turn a range of samples into a :class:`Partial`: for every named
statistic, per-player counts, sums and sums of squared deviations
(:class:`Moments`). Partials of adjacent ranges merge associatively (Chan et
al.'s pairwise update), so they can be tree-summed in any grouping, and the
merged state is never larger than one partial.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from daskval.utility import EvalStats

__all__ = ["CoalitionSums", "Moments", "Partial", "Rows", "Statistic", "Sums"]


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


# rows expanded per matrix product: the float matrix (rows x n) stays below
# glibc's largest mmap threshold (32 MB) up to n = 125,000, so it is reused
# from the heap instead of being mapped and faulted in at every chunk
_EXPAND_ROWS = 32


@dataclass
class CoalitionSums:
    """Per-player sums over the samples' coalitions, kept as the coalitions
    themselves while that is the smaller form.

    Every sample is a coalition S with a row of weights for the players in S
    (``w_in``) and one for the players out of it (``w_out``). The dense
    statistic is ``in[i] = sum over samples with i in S of w_in`` and
    ``out[i] = sum over samples with i not in S of w_out`` (n x m each). A
    sample as a coalition costs n/8 bytes plus its two weight rows, the dense
    form 2 n m floats: at n = 100,000 one sample is 12.6 KB and the dense
    form 8 MB, so states of a few samples (the leaves, the units and groups
    of the reduction) travel as coalitions, and only the chain's prefix is
    dense. Pending samples are expanded into the dense sums once there are
    more than :attr:`max_pending`: when and how only depends on which
    samples are merged in which grouping, so a reduction of fixed shape
    gives the same bits whatever the completion order.

    Attributes
    ----------
    n : int
        Number of players.
    dense : Sums or None
        The expanded sums ``in`` and ``out`` (None: none expanded yet).
    bits : np.ndarray of uint8
        The pending samples' coalitions, packed (samples x ceil(n / 8)).
    w_in, w_out : np.ndarray of float64
        Their weight rows (samples x m).
    """

    n: int
    dense: Sums | None
    bits: np.ndarray
    w_in: np.ndarray
    w_out: np.ndarray

    @classmethod
    def empty(cls, n: int, width: int) -> CoalitionSums:
        """No samples, for ``n`` players and weight rows of ``width``."""
        return cls(
            n,
            None,
            np.zeros((0, (n + 7) // 8), dtype=np.uint8),
            np.zeros((0, width)),
            np.zeros((0, width)),
        )

    @classmethod
    def from_samples(
        cls, inside: np.ndarray, w_in: np.ndarray, w_out: np.ndarray
    ) -> CoalitionSums:
        """Samples given as a (samples x n) membership matrix and weight rows."""
        pending = cls(
            inside.shape[1],
            None,
            np.packbits(inside, axis=1),
            np.asarray(w_in, dtype=np.float64),
            np.asarray(w_out, dtype=np.float64),
        )
        return pending._settled()

    @classmethod
    def from_sums(cls, sums: Sums) -> CoalitionSums:
        """Expanded sums only (a state read back from a checkpoint)."""
        n, width = sums["in"].shape
        empty = cls.empty(n, width)
        return cls(n, sums, empty.bits, empty.w_in, empty.w_out)

    @property
    def width(self) -> int:
        return int(self.w_in.shape[1])

    @property
    def dense_nbytes(self) -> int:
        """The bytes of the expanded sums."""
        return 2 * 8 * self.n * self.width

    @property
    def max_pending(self) -> int:
        """Pending samples allowed: their bytes stay within a quarter of the
        dense form's, which also bounds the expansion a reader pays."""
        row = self.bits.shape[1] + 2 * 8 * self.width
        return max(1, self.dense_nbytes // (4 * row))

    def sums(self) -> Sums:
        """The dense sums of every sample (expands the pending ones)."""
        return self.expanded().dense  # type: ignore[return-value]

    def merge(self, other: CoalitionSums) -> CoalitionSums:
        """The sums of both (a new object): this state's samples, then
        ``other``'s."""
        dense = _add_sums(self.dense, other.dense)
        merged = CoalitionSums(
            self.n,
            dense,
            np.concatenate([self.bits, other.bits]),
            np.concatenate([self.w_in, other.w_in]),
            np.concatenate([self.w_out, other.w_out]),
        )
        return merged._settled()

    def _settled(self) -> CoalitionSums:
        return self.expanded() if len(self.bits) > self.max_pending else self

    def expanded(self) -> CoalitionSums:
        """The same sums with no sample pending (what a reader is sent)."""
        width = self.width
        if self.dense is not None and not len(self.bits):
            return self
        # one product per chunk: [in | out] = z^T [w_in | -w_out] + [0 | sum w_out]
        # (half the memory traffic of expanding z and 1 - z separately)
        weights = np.hstack([self.w_in, -self.w_out])
        both = np.zeros((self.n, 2 * width))
        for first in range(0, len(self.bits), _EXPAND_ROWS):
            rows = slice(first, first + _EXPAND_ROWS)
            z = np.unpackbits(self.bits[rows], axis=1, count=self.n).astype(float)
            both += z.T @ weights[rows]
        both[:, width:] += self.w_out.sum(axis=0)
        expanded = Sums({"in": both[:, :width].copy(), "out": both[:, width:].copy()})
        dense = _add_sums(self.dense, expanded)
        empty = CoalitionSums.empty(self.n, width)
        return CoalitionSums(self.n, dense, empty.bits, empty.w_in, empty.w_out)

    @property
    def nbytes(self) -> int:
        dense = 0 if self.dense is None else self.dense.nbytes
        return int(dense + self.bits.nbytes + self.w_in.nbytes + self.w_out.nbytes)


def _add_sums(first: Sums | None, second: Sums | None) -> Sums | None:
    if first is None:
        return second
    return first if second is None else first.merge(second)


# what a Plan accumulates per name: every kind merges associatively
Statistic = Moments | Sums | Rows | CoalitionSums


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

    def expanded(self) -> Partial:
        """The same state with every statistic in the form a reader uses
        (samples kept as coalitions are added into their sums)."""
        moments: dict[str, Statistic] = {
            k: m.expanded() if isinstance(m, CoalitionSums) else m
            for k, m in self.moments.items()
        }
        return replace(self, moments=moments)

    @property
    def nbytes(self) -> int:
        extra = 0 if self.sample_evaluations is None else self.sample_evaluations.nbytes
        return sum(m.nbytes for m in self.moments.values()) + extra
