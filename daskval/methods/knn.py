"""Exact KNN-Shapley (Jia et al., 2019b, "Efficient task-specific data
valuation for nearest neighbor algorithms"), for classification.

The game, for one test point ``t`` and a coalition ``S`` of training points
ordered by their distance to ``t`` (``alpha_1(S)`` nearest), is

    U_t(S) = (1/K) sum_{k <= min(K, |S|)} 1[y_{alpha_k(S)} = y_t],  U_t({}) = 0,

and the utility is the mean of ``U_t`` over the test points. Its Shapley
values have a closed form: with all N training points sorted by distance to
``t`` (``alpha_1`` nearest ... ``alpha_N`` farthest) and ``m_i =
1[y_{alpha_i} = y_t]``,

    s_{alpha_N} = m_N / K * min(K, N) / N,
    s_{alpha_i} = s_{alpha_{i+1}} + (m_i - m_{i+1}) / K * min(K, i) / i,

(the paper's base case ``m_N / N`` assumes N >= K; with fewer points than K
the farthest point is always among the K nearest, hence ``min(K, N)``),

and the value of a training point is the mean of its ``s`` over the test
points. This costs one sort of N distances per test point.

How it runs: the "samples" of the plan are the test points. A task takes a
range of test points and, in sub-blocks sized so that the (block x N)
temporaries stay under a memory budget (and in cache), computes the
distances, sorts every row, gathers the label matches, takes the reverse
cumulative sum of the recursion's increments and scatters the values back,
each step one numpy operation over the sub-block (no per-test-point Python
loop). Its statistic is the per-player :class:`~daskval.accumulate.Moments`
over test points, which the engine tree-sums in test-point order; the values
are their means, and the standard errors are those of a mean over test
points (the spread of the per-test-point values, not a Monte Carlo error: the
values are exact for the given test set).

The data reach the workers once, through the engine's broadcast of a
:class:`KNNUtility`, whose :meth:`KNNUtility.evaluate` is the KNN utility of a
coalition: the brute-force oracle the tests enumerate. A training set too
large to broadcast (or ``train_chunk_size=``) is split by the engine instead
(:meth:`KNNUtility.split`, a :class:`~daskval.utility.ShardableUtility`): the
test points go to every worker, the training features in shards of rows,
and a task joins its test points' careful distances to every shard.

Order and ties. Points are ordered by (distance, training row index): of two
training points at the same distance from a test point, the one with the
smaller row index counts as nearer. The distance that decides is the
*careful* one, computed pair by pair in a fixed order of operations (feature
0 first; :func:`_distances`) from the features translated by a centre (the
training mean, rounded to a power-of-two grid so that features on such a grid,
integers for instance, translate exactly and keep their ties; no translation
for "cosine"). It does not depend on the block, chunk or coalition it is
computed in, and :meth:`KNNUtility.evaluate` (the oracle) sees exactly the
distances and ties that the valuation sees. The valuation sorts fast
approximations instead (a matrix product for the euclidean and cosine
metrics, with a proven error bound) packed with the row index into 64-bit
integer keys, and re-sorts by careful distance the few neighbours whose fast
distances are too close to be ordered safely (:func:`_order`): the order is
exactly that of the careful distances.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from daskval._validation import check_positive_int
from daskval.accumulate import Moments, Statistic
from daskval.data import Dataset
from daskval.methods.base import Valuation
from daskval.plan import EnumerationPlan, Estimate, Plan
from daskval.utility import EvalStats, Sharding, Utility, _sha

__all__ = [
    "KNNShapleyValuation",
    "KNNUtility",
    "KNNRegressionShapleyValuation",
    "SoftLabelKNNShapleyValuation",
    "ThresholdKNNShapleyValuation",
    "ThresholdKNNUtility",
]

METRICS = ("euclidean", "sqeuclidean", "manhattan", "cosine")
# bytes of (block x N) temporaries per element of a sub-block (distances, sort
# keys, matches, increments, values and the moments' temporaries)
_BYTES_PER_ELEMENT = 48
# elements of the (block x chunk) scratch array of the distance loop
_DISTANCE_SCRATCH = 1 << 15
_DEFAULT_MEMORY = 256 * 2**20
# at most this many (block x N) elements per sub-block, for cache locality
_CACHE_ELEMENTS = 1 << 19
# the unit roundoff of float64
_EPS = 2.0**-53


def _check_real_columns(value: Any, name: str) -> None:
    """Refuse text and complex features before float64 conversion, which
    would parse numbers written as text and drop imaginary parts silently."""
    from pandas.api.types import is_complex_dtype, is_numeric_dtype

    if isinstance(value, pd.DataFrame):
        dtypes = {f"column {c!r}": d for c, d in value.dtypes.items()}
    else:
        dtypes = {"its array": np.asarray(value).dtype}
    complex_parts = [k for k, d in dtypes.items() if is_complex_dtype(d)]
    if complex_parts:
        raise TypeError(
            f"KNN-Shapley needs real numeric features: {name} holds complex "
            f"numbers ({', '.join(complex_parts[:5])}); split them into real and "
            "imaginary parts"
        )
    other = [f"{k} ({d})" for k, d in dtypes.items() if not is_numeric_dtype(d)]
    if other:
        raise TypeError(
            f"KNN-Shapley needs numeric features: {name} has non-numeric "
            f"{', '.join(other[:5])}; encode text and categorical columns first"
        )


def _as_float_matrix(value: Any, name: str) -> np.ndarray:
    """Features as a C-contiguous float64 matrix, or raise naming them."""
    _check_real_columns(value, name)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"KNN-Shapley needs numeric features: {name} cannot be converted to "
            f"float64 ({exc}); encode categorical columns first"
        ) from exc
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} contains NaN or infinite values: KNN distances need finite "
            "features (impute them first)"
        )
    return np.ascontiguousarray(array)


def _check_labels(y_train: Any, y_test: Any) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the class labels of both splits (shared code book)."""
    from sklearn.utils.multiclass import type_of_target

    kind = type_of_target(np.asarray(y_train))
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            "KNN-Shapley values classifiers: y_train must hold class labels, "
            f"but scikit-learn sees a {kind!r} target; value a regression "
            "target with KNNRegressionShapleyValuation"
        )
    train, test = np.asarray(y_train), np.asarray(y_test)
    try:
        _, codes = np.unique(np.concatenate([train, test]), return_inverse=True)
    except TypeError as exc:
        raise TypeError(
            f"y_train and y_test labels must be mutually comparable: {exc}"
        ) from exc
    codes = codes.astype(np.int32)
    return codes[: len(train)], codes[len(train) :]


def _check_targets(y_train: Any, y_test: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both splits' regression targets as finite float64 vectors."""
    targets = []
    for name, value in (("y_train", y_train), ("y_test", y_test)):
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"KNN regression needs numeric targets: {name} cannot be "
                f"converted to float64 ({exc})"
            ) from exc
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinite targets")
        targets.append(np.ascontiguousarray(array))
    return targets[0], targets[1]


def _centre(x: np.ndarray) -> np.ndarray:
    """The mean of each feature, rounded to a multiple of the largest power of
    two not above the feature's spread: points on a coarser power-of-two grid
    (integers, ...) are then centred exactly, so their ties survive."""
    mean, spread = x.mean(axis=0), x.std(axis=0)
    grid = np.exp2(np.floor(np.log2(np.where(spread > 0, spread, 1.0))))
    centre = np.round(mean / grid) * grid
    # a constant feature: centred to exactly zero
    return np.where(spread > 0, centre, x[0])


def _distances(
    x: np.ndarray,
    train_t: np.ndarray,
    metric: str,
    train_norms: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Careful distances (rows: the test points ``x``, columns: the training
    points, given as the columns of ``train_t``).

    Every entry is computed from its two points alone, feature by feature in
    a fixed order, with elementwise operations only: it is bit-identical
    whatever the block, coalition or chunk it is computed in, and equal to
    :func:`_pair_distances` of the pair. These define the order of the
    training points (with the row index breaking ties). Euclidean distances
    are ranked by their square (the same order, without ties made by rounding
    a square root).
    """
    b, (d, m) = x.shape[0], train_t.shape
    dist = np.empty((b, m)) if out is None else out
    if b == 0 or m == 0:
        return dist
    chunk = max(256, _DISTANCE_SCRATCH // b)
    scratch = np.empty((b, min(chunk, m)))
    for s in range(0, m, chunk):
        e = min(m, s + chunk)
        acc, tmp = dist[:, s:e], scratch[:, : e - s]
        for f in range(d):
            _feature_term(train_t[f, s:e], x[:, f : f + 1], metric, tmp)
            if f == 0:
                acc[...] = tmp
            else:
                acc += tmp
    return _finish(dist, metric, train_norms, _norms(x.T)[:, None])


def _pair_distances(
    points: np.ndarray,
    columns: np.ndarray,
    metric: str,
    column_norms: np.ndarray | None,
) -> np.ndarray:
    """The careful distance of each pair (``points[i]``, ``columns[:, i]``),
    by exactly the operations of :func:`_distances`."""
    acc = np.empty(points.shape[0])
    tmp = np.empty_like(acc)
    for f in range(points.shape[1]):
        _feature_term(columns[f], points[:, f], metric, tmp)
        if f == 0:
            acc[...] = tmp
        else:
            acc += tmp
    return _finish(acc, metric, column_norms, _norms(points.T))


def _feature_term(column: Any, point: Any, metric: str, out: np.ndarray) -> None:
    """One feature's term of the distance, into ``out``."""
    if metric == "cosine":
        np.multiply(column, point, out=out)
        return
    np.subtract(column, point, out=out)
    if metric == "manhattan":
        np.abs(out, out=out)
    else:
        np.multiply(out, out, out=out)


def _finish(
    dist: np.ndarray, metric: str, train_norms: Any, point_norms: Any
) -> np.ndarray:
    if metric == "cosine":
        dist /= train_norms
        dist /= point_norms
        np.subtract(1.0, dist, out=dist)
    dist += 0.0  # -0.0 -> +0.0: equal distances tie whatever their sign
    return dist


def _norms(points_t: np.ndarray) -> np.ndarray:
    """Euclidean norms of the columns of ``points_t``, feature by feature."""
    total = points_t[0] * points_t[0]
    for f in range(1, points_t.shape[0]):
        total += points_t[f] * points_t[f]
    return np.sqrt(total)


def _order(
    fast: np.ndarray,
    tolerance: np.ndarray,
    index_bits: int,
    work: _Workspace,
    careful: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Column positions of every row in (careful distance, position) order.

    ``fast`` holds approximations (>= 0) of the careful distances, within
    ``tolerance[row] / 2`` of them (0 when they are the careful distances);
    ``careful(rows, positions)`` computes careful distances of pairs.

    A row is sorted as one array of 64-bit keys: the fast distance's bits in
    the high bits, the position in the low ``index_bits`` (sorting integers
    is several times faster than an argsort). Two neighbours in that order
    can be out of the exact order only when their fast distances differ by at
    most the tolerance plus what the key truncated; such neighbours are
    chained into runs, and each run is sorted again by (careful distance,
    position). Every other pair is separated by more than any error, so the
    result is exactly the lexicographic order of (careful distance, position).
    ``fast`` is overwritten; the result is a view of ``work.keys``.
    """
    rows, n = fast.shape
    keys, spare, links = work.keys[:rows], work.spare[:rows], work.links[:rows]
    shift = np.uint64(index_bits)
    np.right_shift(fast.view(np.uint64), shift, out=keys)
    keys <<= shift
    keys |= _positions(n)
    keys.sort(axis=1)
    low = np.uint64((1 << index_bits) - 1)
    # the sorted fast distances, truncated: within `slack` below the fast ones
    np.bitwise_and(keys, ~low, out=spare)
    truncated = spare.view(np.float64)
    gaps = np.subtract(truncated[:, 1:], truncated[:, :-1], out=fast[:, :-1])
    slack = np.multiply(
        truncated[:, :-1], 2.0 ** (index_bits - 51), out=work.extra[:rows, :-1]
    )
    gaps -= slack
    gaps -= tolerance[:, None]
    np.less_equal(gaps, 1e-300, out=links[:, :-1])
    keys &= low
    order = keys.view(np.int64)
    linked = links[:, :-1]
    if linked.any():
        _resolve_runs(order, linked, careful)
    return order


def _resolve_runs(
    order: np.ndarray,
    linked: np.ndarray,
    careful: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> None:
    """Sort, in place, each run of ``order`` chained by ``linked`` (entry j
    links positions j and j+1 of its row) by (careful distance, position)."""
    rows, n = order.shape
    in_run = np.zeros((rows, n), dtype=bool)
    in_run[:, :-1] |= linked
    in_run[:, 1:] |= linked
    r, j = np.nonzero(in_run)
    # a run starts where a member is not linked to the one before it
    starts = np.ones(len(r), dtype=bool)
    inner = j > 0
    starts[inner] = ~linked[r[inner], j[inner] - 1]
    run = np.cumsum(starts)
    positions = order[r, j]
    by = np.lexsort((positions, careful(r, positions), run))
    order[r, j] = positions[by]


class KNNUtility(Utility):
    """The KNN classification utility: u(S) = mean over test points of the
    fraction of the K nearest points of S that share the test point's label.

    Parameters
    ----------
    data : Dataset
        Numeric features; class labels. With ``groups`` the players are the
        groups and u(S) is the utility of the union of their rows.
    k : int
        K, the number of neighbours (>= 1; larger than the training set is
        allowed: every point of S then votes, still divided by K).
    metric : {"euclidean", "sqeuclidean", "manhattan", "cosine"}
        "euclidean" and "sqeuclidean" give the same order (ranked by the
        squared distance) and so the same values; "cosine" is
        ``1 - cos(angle)`` (points of zero norm are refused).
    memory_budget : int
        Bytes of (block x N) temporaries per task; test points are processed
        in sub-blocks under it (at least one test point at a time).
    rows_per_shard : int, optional
        Ask the engine to split the training rows into shards of this many
        rows, each held by one worker, instead of broadcasting them (see
        :meth:`split`; the engine shards on its own when the training set is
        too large to broadcast).

    Notes
    -----
    ``evaluate`` sorts the coalition's distances for every test point (a
    stable sort, so ties go to the smaller training row index, as in the
    valuation): it is the brute-force reference, not a fast path.
    """

    def __init__(
        self,
        data: Dataset,
        k: int,
        *,
        metric: str = "euclidean",
        memory_budget: int = _DEFAULT_MEMORY,
        rows_per_shard: int | None = None,
        soft: bool = False,
        regression: bool = False,
    ) -> None:
        if not isinstance(data, Dataset):
            raise TypeError(
                f"data must be a daskval.Dataset, got {type(data).__name__}"
            )
        self.k = check_positive_int(k, "k")
        if not isinstance(metric, str) or metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        self.soft, self.regression = bool(soft), bool(regression)
        if self.soft and self.regression:
            raise ValueError("soft labels are for classification, not regression")
        self.memory_budget = check_positive_int(memory_budget, "memory_budget")
        # a hint to the engine (ShardableUtility); the engine also shards on
        # its own when the training set is too large to broadcast
        self.rows_per_shard_hint = (
            None
            if rows_per_shard is None
            else check_positive_int(rows_per_shard, "train_chunk_size")
        )
        self.data = data
        self.n = data.n
        self.default = 0.0
        x_train = _as_float_matrix(data.x_train, "x_train")
        x_test = _as_float_matrix(data.x_test, "x_test")
        # distances are translation invariant: centred features make the
        # matrix-product expansion accurate (see _fast_distances); the centre
        # lies on a power-of-two grid so that centring points of such a grid
        # (integers, halves, ...) is exact and keeps their ties
        centre = np.zeros(x_train.shape[1]) if metric == "cosine" else _centre(x_train)
        # training points as columns: the distance loops read contiguous rows
        self.train_t = np.ascontiguousarray((x_train - centre).T)
        self.x_test = x_test - centre
        check = _check_targets if self.regression else _check_labels
        self.y_train, self.y_test = check(data.y_train, data.y_test)
        self.n_train, self.n_test = x_train.shape[0], self.x_test.shape[0]
        self.train_squares = np.einsum("ij,ij->j", self.train_t, self.train_t)
        self.max_train_square = float(self.train_squares.max())
        test_squares = np.einsum("ij,ij->i", self.x_test, self.x_test)
        if not (np.isfinite(self.max_train_square) and np.isfinite(test_squares).all()):
            raise ValueError(
                "features too large: their squares overflow float64; rescale them"
            )
        self.train_norms: np.ndarray | None = None
        if metric == "cosine":
            self.train_norms = _norms(self.train_t)
            if (
                not (self.train_norms > 0).all()
                or not (_norms(self.x_test.T) > 0).all()
            ):
                raise ValueError(
                    "metric='cosine' is undefined for points of zero norm; "
                    "remove them or use metric='euclidean'"
                )
        # the group of every training row (None: players are rows)
        self.row_players: np.ndarray | None = None
        if data.groups is not None:
            self.row_players = np.empty(self.n_train, dtype=np.int64)
            for player in range(data.n):
                self.row_players[data.rows(np.array([player]))] = player
        self._fingerprint: str | None = None

    # -- identity ---------------------------------------------------------------
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            data = self.data
            assert data is not None, "fingerprint() is computed on the client"
            # the soft game is another game; the hard one keeps its old hash
            parts = ["soft"] if self.soft else []
            parts += ["regression"] if self.regression else []
            self._fingerprint = _sha(
                "daskval.KNNUtility/1",
                data.fingerprint(),
                str(self.k),
                self.metric,
                *parts,
            )
        return self._fingerprint

    def identity(self) -> str:
        # the block size changes how sums are grouped (1e-16), not the game
        return _sha(self.fingerprint(), str(self.memory_budget))

    def describe(self) -> dict[str, Any]:
        return {
            "class": "KNNUtility",
            "n": self.n,
            "k": self.k,
            "metric": self.metric,
            "soft": self.soft,
            "regression": self.regression,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }

    def __getstate__(self) -> dict[str, Any]:
        # the workers need the arrays above, not the Dataset (half the bytes)
        self.fingerprint()
        state = self.__dict__.copy()
        state["data"] = None
        return state

    # -- the game -----------------------------------------------------------------
    def _block_size(self, columns: int) -> int:
        """Test points per sub-block: within the memory budget, and small
        enough for the block's rows to stay in cache (several times faster
        than larger blocks at N = 20 000)."""
        return _block_rows(self.memory_budget, columns)

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        """u(players): the KNN utility of the coalition, by sorting its
        distances to every test point (the brute-force reference)."""
        stats.n_evaluations += 1
        players = np.asarray(players, dtype=np.int64)
        if self.row_players is None:
            rows = np.unique(players)
        else:
            rows = np.flatnonzero(np.isin(self.row_players, players))
        if len(rows) == 0:
            # regression: the prediction of no neighbours is 0
            return -float(np.mean(self.y_test**2)) if self.regression else 0.0
        nearest = min(self.k, len(rows))
        columns = np.ascontiguousarray(self.train_t[:, rows])
        norms = None if self.train_norms is None else self.train_norms[rows]
        labels = self.y_train[rows]
        block = self._block_size(len(rows))
        hits, squares = 0, 0.0
        for t0 in range(0, self.n_test, block):
            t1 = min(self.n_test, t0 + block)
            dist = _distances(self.x_test[t0:t1], columns, self.metric, norms)
            ranked = np.argsort(dist, axis=1, kind="stable")[:, :nearest]
            if self.regression:
                errors = labels[ranked].sum(axis=1) / self.k - self.y_test[t0:t1]
                squares += float(np.sum(errors * errors))
            else:
                hits += int((labels[ranked] == self.y_test[t0:t1, None]).sum())
        if self.regression:
            return -squares / self.n_test
        # soft labels: the fraction of the min(K, |S|) neighbours, not of K
        return hits / ((nearest if self.soft else self.k) * self.n_test)

    # -- the closed form -------------------------------------------------------------
    def _fast_distances(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Distances of test points ``start .. stop-1`` to every training
        point into ``out`` (clipped at 0), within half the returned per-row
        tolerance of the careful ones: by matrix products of the centred
        features for the euclidean and cosine metrics, the careful distances
        themselves (tolerance 0) otherwise.

        Error bounds (u = 2**-53, d features, norms of the centred points):
        the expansion |x|^2 + |t|^2 - 2 x.t is within (3d + 6) u (|x|^2 +
        |t|^2) of the exact square, the careful sum within 2 (d + 2) u
        (|x|^2 + |t|^2); half the tolerance is 8 (d + 2) u (max |x|^2 +
        |t|^2), with margin (a cosine: 8 (d + 2) u).
        """
        x = self.x_test[start:stop]
        d = x.shape[1]
        if self.metric == "manhattan":
            _distances(x, self.train_t, self.metric, out=out)
            return np.zeros(x.shape[0])
        np.matmul(x, self.train_t, out=out)
        if self.metric == "cosine":
            assert self.train_norms is not None
            out /= self.train_norms
            out /= _norms(x.T)[:, None]
            np.subtract(1.0, out, out=out)
            bound = np.full(x.shape[0], 8.0 * (d + 2) * _EPS)
        else:
            test_squares = np.einsum("ij,ij->i", x, x)
            out *= -2.0
            out += self.train_squares
            out += test_squares[:, None]
            bound = 8.0 * (d + 2) * _EPS * (self.max_train_square + test_squares)
        np.maximum(out, 0.0, out=out)
        return 2.0 * bound

    def point_values(
        self, start: int, stop: int, work: _Workspace | None = None
    ) -> np.ndarray:
        """KNN-Shapley values of every player (columns) for the test points
        ``start .. stop-1`` (rows), in one block; :meth:`shapley_moments`
        bounds the memory. The result is a view into ``work`` when given."""
        n, rows = self.n_train, stop - start
        work = _Workspace(rows, n) if work is None else work
        x = self.x_test[start:stop]
        dist = work.dist[:rows]
        tolerance = self._fast_distances(start, stop, dist)

        def careful(r: np.ndarray, positions: np.ndarray) -> np.ndarray:
            columns = self.train_t[:, positions]
            norms = None if self.train_norms is None else self.train_norms[positions]
            return _pair_distances(x[r], columns, self.metric, norms)

        order = _order(dist, tolerance, max(1, (n - 1).bit_length()), work, careful)
        return _values(
            order,
            self.y_train,
            self.y_test[start:stop],
            self.k,
            self.row_players,
            self.n,
            work,
            self.soft,
            self.regression,
        )

    def shapley_moments(self, start: int, stop: int) -> Moments:
        """Per-player moments over test points ``start .. stop-1`` of their
        KNN-Shapley values, computed in sub-blocks within the memory budget."""
        block = min(stop - start, self._block_size(self.n_train))
        work = _Workspace.reused(block, self.n_train)
        sums = MomentSums(self.n)
        for t0 in range(start, stop, block):
            sums.add(self.point_values(t0, min(stop, t0 + block), work))
        return sums.moments()

    # -- sharding (daskval.utility.ShardableUtility) -----------------------------------
    def shard_row_count(self) -> int:
        return self.n_train

    def shard_nbytes(self) -> int:
        # what a worker would hold: the arrays the utility ships (centred
        # features, labels, squared norms)
        return sum(
            value.nbytes
            for value in self.__getstate__().values()
            if isinstance(value, np.ndarray)
        )

    def split(self, rows_per_shard: int) -> Sharding:
        """The test points, labels and settings as the core, the training
        features in shards of ``rows_per_shard`` consecutive rows.

        A task over test points ``[start, stop)`` computes their careful
        distances to each shard's rows next to the shard, and joins them in
        row order: every test point's order, ranks and values are those of
        the broadcast path (only the grouping of sums over test points may
        differ). Tasks take at most one sub-block of test points (the
        joined (points x N) distances stay within the memory budget).
        """
        rows = check_positive_int(rows_per_shard, "rows_per_shard")
        shards = [
            KNNShard(
                start,
                np.ascontiguousarray(self.train_t[:, start : start + rows]),
                None
                if self.train_norms is None
                else self.train_norms[start : start + rows].copy(),
            )
            for start in range(0, self.n_train, rows)
        ]
        return Sharding(
            self._shard_core(), shards, rows, self._block_size(self.n_train)
        )

    def _shard_core(self) -> KNNShardCore:
        """What every worker holds in a sharded run."""
        return KNNShardCore(self)


@dataclass
class KNNShard:
    """Consecutive training rows ``start ..`` as columns (features x rows),
    with their norms for the cosine metric."""

    start: int
    train_t: np.ndarray
    norms: np.ndarray | None


class KNNShardCore(Utility):
    """What every worker holds in a sharded run: the test points, the
    training labels and groups, K and the metric (no training features).

    It evaluates no coalition (the shards hold the features); it computes
    a shard's distances (:meth:`shard_part`) and the values from every
    shard's (:meth:`with_parts`).
    """

    def __init__(self, utility: KNNUtility) -> None:
        self.n, self.default = utility.n, utility.default
        self.k, self.metric, self.soft = utility.k, utility.metric, utility.soft
        self.regression = utility.regression
        self.memory_budget = utility.memory_budget
        self.n_train, self.n_test = utility.n_train, utility.n_test
        self.x_test, self.y_test = utility.x_test, utility.y_test
        self.y_train, self.row_players = utility.y_train, utility.row_players
        self._fingerprint = utility.fingerprint()
        self._identity = _sha(utility.identity(), "shard core")
        self._description = utility.describe()

    def fingerprint(self) -> str:
        return self._fingerprint

    def identity(self) -> str:
        return self._identity

    def describe(self) -> dict[str, Any]:
        return dict(self._description)

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        raise RuntimeError(
            "the core of a sharded KNN utility holds no training features: "
            "evaluate coalitions with the KNNUtility itself"
        )

    def shard_part(self, shard: KNNShard, start: int, stop: int) -> np.ndarray:
        """Careful distances of test points ``start .. stop-1`` to the
        shard's training points."""
        return _distances(
            self.x_test[start:stop], shard.train_t, self.metric, shard.norms
        )

    def with_parts(self, start: int, stop: int, parts: Sequence[Any]) -> Utility:
        return _JoinedShards(self, start, stop, parts)

    def block_values(
        self, distances: np.ndarray, start: int, stop: int, work: _Workspace
    ) -> np.ndarray:
        """Values (test points ``start .. stop-1`` x players) from their
        careful distances to every training point (kept unchanged)."""
        return _values_from_distances(
            distances,
            self.y_train,
            self.y_test[start:stop],
            self.k,
            self.row_players,
            self.n,
            work,
            self.soft,
            self.regression,
        )


class _JoinedShards(Utility):
    """The KNN utility of test points ``start .. stop-1`` from their
    careful distances to every shard (in row order)."""

    def __init__(
        self, core: KNNShardCore, start: int, stop: int, parts: Sequence[Any]
    ) -> None:
        self.n, self.default = core.n, core.default
        self.core, self.start, self.stop = core, start, stop
        self.parts = list(parts)

    def fingerprint(self) -> str:
        return self.core.fingerprint()

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        return self.core.evaluate(players, stats)

    def shapley_moments(self, start: int, stop: int) -> Moments:
        """Per-player moments over test points ``start .. stop-1`` (within
        the joined range), in sub-blocks of the core's block size."""
        if start < self.start or stop > self.stop:
            raise ValueError(
                f"test points [{start}, {stop}) outside the joined range "
                f"[{self.start}, {self.stop})"
            )
        core = self.core
        exact = np.concatenate(self.parts, axis=1)
        n = exact.shape[1]
        block = max(1, min(stop - start, _block_rows(core.memory_budget, n)))
        work = _Workspace.reused(block, n)
        sums = MomentSums(core.n)
        for t0 in range(start, stop, block):
            t1 = min(stop, t0 + block)
            rows = exact[t0 - self.start : t1 - self.start]
            sums.add(core.block_values(rows, t0, t1, work))
        return sums.moments()


def _values_from_distances(
    distances: np.ndarray,
    labels: np.ndarray,
    test_labels: np.ndarray,
    k: int,
    row_players: np.ndarray | None,
    n_players: int,
    work: _Workspace,
    soft: bool,
    regression: bool,
) -> np.ndarray:
    """Values (test points x players) from exact distances (>= 0, kept
    unchanged), ranked by (distance, row index)."""
    rows, n = distances.shape
    dist = work.dist[:rows]
    dist[...] = distances  # _order overwrites its input
    order = _order(
        dist,
        np.zeros(rows),  # the distances are exact
        max(1, (n - 1).bit_length()),
        work,
        functools.partial(_pick, distances),
    )
    return _values(
        order, labels, test_labels, k, row_players, n_players, work, soft, regression
    )


def _pick(distances: np.ndarray, r: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``distances[r, positions]``: careful distances already computed."""
    return distances[r, positions]


def _block_rows(memory_budget: int, columns: int) -> int:
    """Test points per sub-block of ``columns`` training points (see
    :meth:`KNNUtility._block_size`)."""
    rows = min(memory_budget // _BYTES_PER_ELEMENT, _CACHE_ELEMENTS)
    return max(1, rows // max(1, columns))


def _values(
    order: np.ndarray,
    labels: np.ndarray,
    test_labels: np.ndarray,
    k: int,
    row_players: np.ndarray | None,
    n_players: int,
    work: _Workspace,
    soft: bool = False,
    regression: bool = False,
) -> np.ndarray:
    """The recursion: values (test points x players) from each test point's
    training rows in rank order (``order``, nearest first).

    ``labels`` and ``test_labels`` are class codes, or regression targets
    with ``regression``. A view of ``work.dist`` without groups; with groups
    (``row_players``: the player of each row) a group's value is the sum of
    its members'.
    """
    rows = order.shape[0]
    dist, ranked = work.dist[:rows], work.spare[:rows].view(np.float64)
    if regression:
        _regression_increments(order, labels, test_labels, k, work)
    else:
        _classification_increments(order, labels, test_labels, k, soft, work)
    # s_i = sum_{j >= i} increment_j, still in rank order
    np.cumsum(dist[:, ::-1], axis=1, out=ranked[:, ::-1])
    if row_players is None:
        # back to training-row order (dist is free again): one flat scatter
        # (``order`` is used up)
        order += (np.arange(rows) * order.shape[1])[:, None]
        dist.ravel()[order.ravel()] = ranked.ravel()
        return dist
    # a group's value: the sum of its members' values
    slots = np.take(row_players, order)
    slots += n_players * np.arange(rows)[:, None]
    summed = np.bincount(
        slots.ravel(), weights=ranked.ravel(), minlength=rows * n_players
    )
    return summed.reshape(rows, n_players)


def _classification_increments(
    order: np.ndarray,
    labels: np.ndarray,
    test_labels: np.ndarray,
    k: int,
    soft: bool,
    work: _Workspace,
) -> None:
    """s_i - s_{i+1} (and s_N last) of the label-match games, in rank order,
    into ``work.dist``."""
    rows = order.shape[0]
    dist, ranked = work.dist[:rows], work.spare[:rows].view(np.float64)
    # m_i = 1[y_{alpha_i} = y_t], in rank order
    matches = np.equal(
        np.take(labels, order), test_labels[:, None], out=work.flags[:rows]
    )
    ranked[...] = matches
    # increments: (m_i - m_{i+1}) w_i, and m_N w_N last, with
    # w_i = min(K, i) / (K i) (soft labels: see _soft_weights)
    np.subtract(ranked[:, :-1], ranked[:, 1:], out=dist[:, :-1])
    dist[:, -1] = ranked[:, -1]
    dist *= _soft_weights(work.n, k) if soft else work.weights(k)
    if soft:
        dist[:, -1] = _soft_last(ranked, k)


def _regression_increments(
    order: np.ndarray,
    targets: np.ndarray,
    test_targets: np.ndarray,
    k: int,
    work: _Workspace,
) -> None:
    """s_i - s_{i+1} (and s_N last) of the KNN regression game, in rank
    order, into ``work.dist`` (see :class:`KNNRegressionShapleyValuation`
    for the formulas)."""
    rows, n = order.shape
    dist = work.dist[:rows]
    y = np.take(targets, order)  # y_{alpha_i}, rank order
    t = test_targets[:, None]
    h, alpha, beta = _regression_weights(n, k)
    last = y[:, -1] / k
    near = y[:, :-1].sum(axis=1)
    q = min(k, n)
    spread = q * (q - 1) / ((n - 1) * k) * near if n > 1 else 0.0
    dist[:, -1] = -last / n * (spread + q * (last - 2.0 * test_targets))
    if n == 1:
        return
    # E_i: alpha_i (y_1 + ... + y_{i-1}) + sum_{j >= i+2} beta_j y_j
    expected = np.zeros((rows, n - 1))
    prefix = np.cumsum(y[:, :-2], axis=1)
    expected[:, 1:] = alpha[1:-1] * prefix
    tail = np.cumsum((beta[2:] * y[:, 2:])[:, ::-1], axis=1)[:, ::-1]
    expected[:, :-1] += tail
    pair = y[:, :-1] + y[:, 1:]
    bracket = (2.0 * expected + pair * h[:-1]) / k - 2.0 * t * h[:-1]
    np.multiply(y[:, :-1] - y[:, 1:], bracket, out=dist[:, :-1])
    dist[:, :-1] *= -1.0 / k


@functools.lru_cache(maxsize=2)
def _regression_weights(n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ranks i = 1 .. n: h_i = min(K, i) / i, alpha_i = m (m - 1) /
    (2 i (i - 1)) with m = min(K, i) (0 at i = 1), beta_i = q (q + 1) /
    (2 (i - 1) (i - 2)) with q = min(K - 1, i - 2) (0 at i <= 2)."""
    ranks = np.arange(1, n + 1, dtype=np.float64)
    m = np.minimum(k, ranks)
    q = np.minimum(k - 1, ranks - 2)
    alpha = np.zeros(n)
    beta = np.zeros(n)
    alpha[1:] = m[1:] * (m[1:] - 1) / (2 * ranks[1:] * (ranks[1:] - 1))
    beta[2:] = q[2:] * (q[2:] + 1) / (2 * (ranks[2:] - 1) * (ranks[2:] - 2))
    tables = (m / ranks, alpha, beta)
    for table in tables:
        table.flags.writeable = False
    return tables


class MomentSums:
    """Per-player moments of values added block by block (test points x
    players), without (block x players) temporaries beyond one.

    The sums of the values are plain sums; the squared deviations come from
    sums of the values shifted by those of the first test point (a stable
    one-pass variance).
    """

    def __init__(self, n: int) -> None:
        self.count = 0
        self.total, self.shifted, self.squares = np.zeros(n), np.zeros(n), np.zeros(n)
        self.shift: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        """Add a block; ``values`` may be overwritten."""
        if self.shift is None:
            self.shift = values[0].copy()
        self.count += values.shape[0]
        self.total += values.sum(axis=0)
        values -= self.shift
        self.shifted += values.sum(axis=0)
        values *= values
        self.squares += values.sum(axis=0)

    def moments(self) -> Moments:
        count = max(self.count, 1)
        m2 = np.maximum(self.squares - self.shifted * self.shifted / count, 0.0)
        counts = np.full(len(self.total), self.count, dtype=np.int64)
        return Moments(counts, self.total, m2)


class _Workspace:
    """Buffers of one task's sub-blocks (rows x N), reused from block to block
    and, through :meth:`reused`, from task to task of a worker thread (fresh
    arrays of this size would be page-faulted in every time)."""

    _local = threading.local()

    @classmethod
    def reused(cls, rows: int, n: int) -> _Workspace:
        """This thread's workspace when it is large enough, else a new one
        (kept for the next task in its place)."""
        work: _Workspace | None = getattr(cls._local, "work", None)
        if work is None or work.n != n or work.dist.shape[0] < rows:
            work = cls._local.work = cls(rows, n)
        return work

    def __init__(self, rows: int, n: int) -> None:
        self.n = n
        self.dist = np.empty((rows, n))
        self.keys = np.empty((rows, n), dtype=np.uint64)
        self.spare = np.empty((rows, n), dtype=np.uint64)
        self.extra = np.empty((rows, n))
        self.flags = np.empty((rows, n), dtype=bool)
        self.links = np.empty((rows, n), dtype=bool)

    def weights(self, k: int) -> np.ndarray:
        """min(K, i) / (K i) for ranks i = 1 .. N."""
        return _rank_weights(self.n, k)


@functools.lru_cache(maxsize=2)
def _rank_weights(n: int, k: int) -> np.ndarray:
    """min(K, i) / (K i) for ranks i = 1 .. n (kept per worker process: a
    task's first test point would otherwise pay for it)."""
    ranks = np.arange(1, n + 1, dtype=np.float64)
    weights = np.minimum(k, ranks) / (k * ranks)
    weights.flags.writeable = False
    return weights


def _harmonic(n: int) -> float:
    """H_n = 1 + 1/2 + ... + 1/n (0 for n = 0)."""
    return float(np.sum(1.0 / np.arange(1, n + 1))) if n > 0 else 0.0


@functools.lru_cache(maxsize=2)
def _soft_weights(n: int, k: int) -> np.ndarray:
    """The soft-label recursion's w_i = min(K, i) / (K i) + c for ranks
    i < n, with c = (H_q - q / K) / (n - 1), q = min(K, n - 1): the pairs of
    coalitions of fewer than K points, where the vote is divided by
    |S| + 1 instead of K, add c to every rank. The last entry is unused."""
    weights = _rank_weights(n, k).copy()
    if n > 1:
        q = min(k, n - 1)
        weights[:-1] += (_harmonic(q) - q / k) / (n - 1)
    weights.flags.writeable = False
    return weights


def _soft_last(matches: np.ndarray, k: int) -> np.ndarray:
    """s_N of the soft-label game, for every row of ``matches`` (rank
    order): (m_N H_q - M / (N - 1) (H_q - 1)) / N with q = min(K, N) and M
    the matches of the N - 1 nearer points (s_N = m_N when N = 1)."""
    n = matches.shape[1]
    last = matches[:, -1]
    if n == 1:
        return last.copy()
    h = _harmonic(min(k, n))
    nearer = matches.sum(axis=1) - last
    return (last * h - nearer / (n - 1) * (h - 1.0)) / n


@functools.lru_cache(maxsize=2)
def _positions(n: int) -> np.ndarray:
    """0 .. n-1 as uint64, the low bits of the sort keys."""
    positions = np.arange(n, dtype=np.uint64)
    positions.flags.writeable = False
    return positions


class KNNShapleyPlan(EnumerationPlan):
    """Sample ``j`` is test point ``j``, enumerated once, at one "evaluation";
    the values are the means over test points (not sums), with their stderr."""

    statistics = ("values",)

    def __init__(self, n: int, n_test: int) -> None:
        self.n, self.seed, self.n_test = n, 0, n_test

    def sample_limit(self) -> int | None:
        return self.n_test

    def samples_per_task(self, n_threads: int) -> int | None:
        # a quarter of each thread's share: every task returns a statistic of
        # n players whatever its test points (24 MB and ~85 ms at n = 1M), so
        # tasks sized from the kernel's time alone (2-8 points) cost twice
        return -(-self.n_test // (4 * n_threads))

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        # utility: the broadcast KNNUtility, or the memo's wrapper, which
        # forwards shapley_moments to it
        moments: Moments = utility.shapley_moments(start, stop)  # type: ignore[attr-defined]
        stats.n_evaluations += stop - start
        return {"values": moments}, np.ones(stop - start, dtype=np.int32)

    def estimate(self, moments: dict[str, Statistic]) -> Estimate:
        m = moments["values"]
        assert isinstance(m, Moments)
        return m.mean, m.stderr, m.count.copy()

    def describe(self) -> dict[str, Any]:
        return {"plan": "knn_shapley", "n": self.n, "n_test": self.n_test}


class KNNShapleyValuation(Valuation):
    """Exact KNN-Shapley values of the training points (Jia et al., 2019b).

    The value of a training point is the mean over the test points of its
    Shapley value in the game ``U_t(S)``: the fraction of the K nearest points
    of ``S`` to test point ``t`` that carry ``t``'s label (see the module
    docstring for the recursion). The values are exact and sum to
    ``u(all points)`` (efficiency, with ``u(empty) = 0``).

    Parameters
    ----------
    data : Dataset
        Numeric features and class labels (regression targets are refused).
        With ``Dataset(groups=...)`` the value of a group is the **sum of its
        members' KNN-Shapley values** (recorded in the metadata as
        ``"group_values": "sum of member values"``), which is not the Shapley
        value of the game whose players are the groups.
    k : int
        The number of neighbours, K >= 1.
    metric : str
        ``"euclidean"`` (default; ranked by the squared distance, so
        ``"sqeuclidean"`` gives the same values), ``"sqeuclidean"``,
        ``"manhattan"`` or ``"cosine"``.
    memory_budget : int
        Bytes of temporaries per task (default 256 MiB): a task processes its
        test points in sub-blocks of about ``memory_budget / (48 N)`` points
        (fewer when N is large: sub-blocks also stay small for the cache).
    train_chunk_size : int, optional
        Ask the engine to split the training set into shards of this many
        rows, each held by one worker, instead of broadcasting it to every
        worker (a hint the engine reads from the utility, see
        :class:`daskval.utility.ShardableUtility`; same values to ~1e-16).
        The engine also shards on its own when the data would exceed the
        share of the smallest worker's memory limit that a broadcast may
        take. A sharded run is a run like any other: ``submit()`` handles,
        progress, the dashboard page, checkpoints and worker-loss recovery
        all work; ``result_.metadata["sharding"]`` says how it was split
        (None when broadcast).

    Notes
    -----
    Ties in distance go to the smaller training row index. The standard
    errors are those of a mean over test points (the spread of the points'
    per-test-point values divided by sqrt(n_test)): they say how much the
    values would move with another test set of the same size, not how far
    they are from the exact values for this one (they are exact). Each test
    point counts as one evaluation. Costs one sort of N distances per test
    point; the test points are spread over the cluster as tasks and their
    statistics tree-summed, and the data reach each worker once.

    Examples
    --------
    >>> v = KNNShapleyValuation(data, k=5).fit()  # doctest: +SKIP
    >>> v.result_.values  # doctest: +SKIP
    """

    method_name = "knn_shapley"
    default_memo = False  # the closed form evaluates no coalitions
    #: the game divides the votes by min(K, |S|) (soft labels), not by K
    soft_labels = False
    #: the game is KNN regression's negative squared error
    regression_targets = False

    def __init__(
        self,
        data: Dataset,
        k: int,
        *,
        metric: str = "euclidean",
        memory_budget: int = _DEFAULT_MEMORY,
        train_chunk_size: int | None = None,
    ) -> None:
        utility = KNNUtility(
            data,
            k,
            metric=metric,
            memory_budget=memory_budget,
            rows_per_shard=train_chunk_size,
            soft=self.soft_labels,
            regression=self.regression_targets,
        )
        super().__init__(utility, stop=None, seed=0)
        self.utility: KNNUtility = utility
        self.train_chunk_size = utility.rows_per_shard_hint

    def make_plan(self) -> Plan:
        return KNNShapleyPlan(self.utility.n, self.utility.n_test)

    def describe(self) -> dict[str, Any]:
        grouped = self.utility.row_players is not None
        return {
            **super().describe(),
            "k": self.utility.k,
            "metric": self.utility.metric,
            "tie_break": "training row index",
            "group_values": "sum of member values" if grouped else None,
        }


class SoftLabelKNNShapleyValuation(KNNShapleyValuation):
    """Exact soft-label KNN-Shapley values (the soft-label KNN game of Wang
    & Jia, "A note on efficient computation of KNN-Shapley").

    The game of test point ``t`` divides the label matches of the
    ``min(K, |S|)`` nearest points of ``S`` by ``min(K, |S|)`` (the soft-label
    classifier's probability of ``t``'s label), not by K; ``U_t({}) = 0``.
    With ranks and matches as in :class:`KNNShapleyValuation`, ``q =
    min(K, N - 1)``, ``H_j`` the harmonic numbers and ``M`` the matches of
    the ``N - 1`` nearest points,

        s_{alpha_N} = (m_N H_{min(K, N)} - M / (N - 1) (H_{min(K, N)} - 1)) / N,
        s_{alpha_i} = s_{alpha_{i+1}} + (m_i - m_{i+1}) (min(K, i) / (K i)
                      + (H_q - q / K) / (N - 1)).

    The extra constant comes from the coalitions of fewer than K points
    (their vote is divided by their size); the last point's value from its
    marginal over coalitions of fewer than K points, whose expected matches
    are ``|S| M / (N - 1)``. Same cost, parameters, sharding and tie rule as
    :class:`KNNShapleyValuation`; the values sum to ``u(all points)``.
    """

    method_name = "soft_label_knn_shapley"
    soft_labels = True

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "labels": "soft"}


class KNNRegressionShapleyValuation(KNNShapleyValuation):
    """Exact KNN-Shapley values for a regression target (the unweighted KNN
    regression game of Jia et al., 2019b).

    The game of test point ``t`` is the negative squared error of the mean
    target of the K nearest points of ``S`` (divided by K even when ``S``
    has fewer points):

        U_t(S) = -((1/K) sum_{k <= min(K, |S|)} y_{alpha_k(S)} - y_t)^2,

    so ``U_t({}) = -y_t^2`` and the values sum to ``u(all) - u({})``. With
    all N points ranked by distance to ``t``, ``h_i = min(K, i) / i``,
    ``alpha_i = m (m - 1) / (2 i (i - 1))`` (``m = min(K, i)``) and
    ``beta_j = q (q + 1) / (2 (j - 1) (j - 2))`` (``q = min(K - 1, j - 2)``),
    the recursion (derived from the pair difference ``U(S + i) - U(S + i+1)``
    over uniformly sized coalitions; ``alpha_i`` and ``beta_j`` are the
    weights with which a nearer point ``j < i``, or a farther one ``j > i +
    1``, is among the neighbours next to ``i``) is

        E_i = alpha_i sum_{j < i} y_j + sum_{j > i+1} beta_j y_j,
        s_{alpha_i} = s_{alpha_{i+1}} - (y_i - y_{i+1}) / K
                      ((2 E_i + (y_i + y_{i+1}) h_i) / K - 2 y_t h_i),
        s_{alpha_N} = -(y_N / (K N)) (q' (q' - 1) / ((N - 1) K) sum_{j < N} y_j
                      + q' (y_N / K - 2 y_t)),  q' = min(K, N),

    O(N) per test point after the sort (prefix and suffix sums). Same
    parameters, sharding and tie rule as :class:`KNNShapleyValuation`; the
    targets must be finite numbers.
    """

    method_name = "knn_regression_shapley"
    regression_targets = True

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "target": "regression"}


class ThresholdKNNUtility(KNNUtility):
    """The threshold-KNN classification game (Wang, Yang & Jia, "Threshold
    KNN-Shapley"): every point of ``S`` within distance ``threshold`` of test
    point ``t`` votes, and

        U_t(S) = (matches among them) / (their number),  or 1/C when none,

    with C the number of classes; u(S) is the mean over test points.

    Parameters
    ----------
    data : Dataset
        Numeric features; class labels.
    threshold : float
        The radius tau >= 0, in the metric's units (for "euclidean" the
        careful squared distance is compared with tau^2; "sqeuclidean"
        compares the squared distance with tau itself).
    metric, memory_budget, rows_per_shard
        As for :class:`KNNUtility`.
    n_classes : int, optional
        C (default: the number of distinct labels of both splits).
    """

    def __init__(
        self,
        data: Dataset,
        threshold: float,
        *,
        metric: str = "euclidean",
        memory_budget: int = _DEFAULT_MEMORY,
        rows_per_shard: int | None = None,
        n_classes: int | None = None,
    ) -> None:
        super().__init__(
            data,
            1,
            metric=metric,
            memory_budget=memory_budget,
            rows_per_shard=rows_per_shard,
        )
        tau = float(threshold)
        if not (np.isfinite(tau) and tau >= 0):
            raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
        self.threshold = tau
        # careful distances are squared for "euclidean"
        self.radius = tau * tau if metric == "euclidean" else tau
        present = int(max(self.y_train.max(), self.y_test.max())) + 1
        self.n_classes = (
            present if n_classes is None else check_positive_int(n_classes, "n_classes")
        )
        if self.n_classes < present:
            raise ValueError(
                f"n_classes={self.n_classes} but the labels hold {present} classes"
            )

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            data = self.data
            assert data is not None, "fingerprint() is computed on the client"
            self._fingerprint = _sha(
                "daskval.ThresholdKNNUtility/1",
                data.fingerprint(),
                repr(self.threshold),
                self.metric,
                str(self.n_classes),
            )
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        del described["k"], described["soft"], described["regression"]
        return {
            **described,
            "class": "ThresholdKNNUtility",
            "threshold": self.threshold,
            "n_classes": self.n_classes,
        }

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        """u(players), from the careful distances of the coalition's points
        (the brute-force reference)."""
        stats.n_evaluations += 1
        players = np.asarray(players, dtype=np.int64)
        if self.row_players is None:
            rows = np.unique(players)
        else:
            rows = np.flatnonzero(np.isin(self.row_players, players))
        if len(rows) == 0:
            return 1.0 / self.n_classes
        columns = np.ascontiguousarray(self.train_t[:, rows])
        norms = None if self.train_norms is None else self.train_norms[rows]
        dist = _distances(self.x_test, columns, self.metric, norms)
        inside = dist <= self.radius
        votes = inside.sum(axis=1)
        hits = (inside & (self.y_train[rows] == self.y_test[:, None])).sum(axis=1)
        scores = np.where(votes > 0, hits / np.maximum(votes, 1), 1.0 / self.n_classes)
        return float(scores.mean())

    def point_values(
        self, start: int, stop: int, work: _Workspace | None = None
    ) -> np.ndarray:
        """Threshold-KNN-Shapley values of every player (columns) for test
        points ``start .. stop-1`` (rows): who is within the radius is
        decided by the fast distances, and by the careful ones for the pairs
        whose fast distance is within its error of the radius."""
        rows = stop - start
        work = _Workspace(rows, self.n_train) if work is None else work
        dist = work.dist[:rows]
        tolerance = self._fast_distances(start, stop, dist)
        inside = dist <= self.radius
        unsure = np.abs(dist - self.radius) <= tolerance[:, None]
        if unsure.any():
            r, c = np.nonzero(unsure)
            norms = None if self.train_norms is None else self.train_norms[c]
            careful = _pair_distances(
                self.x_test[start:stop][r], self.train_t[:, c], self.metric, norms
            )
            inside[r, c] = careful <= self.radius
        return _threshold_values(
            inside,
            self.y_train,
            self.y_test[start:stop],
            self.n_classes,
            self.row_players,
            self.n,
        )

    def _shard_core(self) -> KNNShardCore:
        return ThresholdShardCore(self)


class ThresholdShardCore(KNNShardCore):
    """The core of a sharded :class:`ThresholdKNNUtility`."""

    def __init__(self, utility: ThresholdKNNUtility) -> None:
        super().__init__(utility)
        self.radius, self.n_classes = utility.radius, utility.n_classes

    def block_values(
        self, distances: np.ndarray, start: int, stop: int, work: _Workspace
    ) -> np.ndarray:
        return _threshold_values(
            distances <= self.radius,
            self.y_train,
            self.y_test[start:stop],
            self.n_classes,
            self.row_players,
            self.n,
        )


def _threshold_values(
    inside: np.ndarray,
    labels: np.ndarray,
    test_labels: np.ndarray,
    n_classes: int,
    row_players: np.ndarray | None,
    n_players: int,
) -> np.ndarray:
    """Values (test points x players) of the threshold game.

    Only the w points within the radius are not dummies, and among them the
    game is the mean of their matches m (1/C when empty); with M the matches
    of the other w - 1,

        phi_i = (m_i - 1/C + (m_i - M / (w - 1)) (H_w - 1)) / w

    (the marginal over a uniform coalition of s >= 1 others is m_i / (s + 1)
    minus their expected mean, M / (w - 1) / (s + 1)).
    """
    matches = inside & (labels[None, :] == test_labels[:, None])
    w = inside.sum(axis=1)
    total = matches.sum(axis=1)
    harmonic = _harmonics(inside.shape[1])[w]
    m = matches.astype(np.float64)
    others = (total[:, None] - m) / np.maximum(w - 1, 1)[:, None]
    values = m - 1.0 / n_classes + (m - others) * (harmonic - 1.0)[:, None]
    values /= np.maximum(w, 1)[:, None]
    values[~inside] = 0.0
    if row_players is None:
        return values
    slots = row_players[None, :] + n_players * np.arange(len(w))[:, None]
    summed = np.bincount(
        slots.ravel(), weights=values.ravel(), minlength=len(w) * n_players
    )
    return summed.reshape(len(w), n_players)


@functools.lru_cache(maxsize=2)
def _harmonics(n: int) -> np.ndarray:
    """H_0 .. H_n."""
    table = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])
    table.flags.writeable = False
    return table


class ThresholdKNNShapleyValuation(KNNShapleyValuation):
    """Exact threshold-KNN-Shapley values (Wang, Yang & Jia): the game of
    :class:`ThresholdKNNUtility`, every point within ``threshold`` of a test
    point voting. A point's value for a test point is zero outside the
    radius and has the closed form of :func:`_threshold_values` inside: no
    sort, O(N) per test point after the distances. The values sum to
    ``u(all) - 1/C``.

    Parameters
    ----------
    data : Dataset
        Numeric features and class labels.
    threshold : float
        The radius (see :class:`ThresholdKNNUtility`).
    metric, memory_budget, train_chunk_size
        As for :class:`KNNShapleyValuation`.
    n_classes : int, optional
        C, the score of a test point with no neighbour being 1/C.
    """

    method_name = "threshold_knn_shapley"

    def __init__(
        self,
        data: Dataset,
        threshold: float,
        *,
        metric: str = "euclidean",
        memory_budget: int = _DEFAULT_MEMORY,
        train_chunk_size: int | None = None,
        n_classes: int | None = None,
    ) -> None:
        utility = ThresholdKNNUtility(
            data,
            threshold,
            metric=metric,
            memory_budget=memory_budget,
            rows_per_shard=train_chunk_size,
            n_classes=n_classes,
        )
        Valuation.__init__(self, utility, stop=None, seed=0)
        self.utility: ThresholdKNNUtility = utility
        self.train_chunk_size = utility.rows_per_shard_hint

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        del described["k"]
        return {
            **described,
            "threshold": self.utility.threshold,
            "n_classes": self.utility.n_classes,
        }


class PrecomputedKNNUtility(Utility):
    """The KNN games (hard or soft labels, or regression) from a given
    distance matrix or neighbour graph instead of features.

    Parameters
    ----------
    distances : array or scipy sparse matrix, (n_test, n_train)
        Distances >= 0 of every test point to every training point. In a
        sparse matrix (e.g. ``kneighbors_graph(mode="distance")``) the
        entries not stored are farther than every stored one (they rank
        after them, by row index), as are infinite entries.
    y_train, y_test : array-like
        Class labels, or targets with ``regression``.
    k : int
        K >= 1.
    soft, regression : bool
        The soft-label or the regression game (see
        :class:`SoftLabelKNNShapleyValuation`,
        :class:`KNNRegressionShapleyValuation`).
    memory_budget : int
        As for :class:`KNNUtility`.
    """

    def __init__(
        self,
        distances: Any,
        y_train: Any,
        y_test: Any,
        k: int,
        *,
        soft: bool = False,
        regression: bool = False,
        memory_budget: int = _DEFAULT_MEMORY,
    ) -> None:
        self.k = check_positive_int(k, "k")
        self.memory_budget = check_positive_int(memory_budget, "memory_budget")
        if soft and regression:
            raise ValueError("soft labels are for classification, not regression")
        self.soft, self.regression = bool(soft), bool(regression)
        self.distances = _as_distance_matrix(distances)
        check = _check_targets if self.regression else _check_labels
        self.y_train, self.y_test = check(y_train, y_test)
        self.n_test, self.n_train = self.distances.shape
        if (len(self.y_train), len(self.y_test)) != (self.n_train, self.n_test):
            raise ValueError(
                f"distances are {self.distances.shape} (n_test, n_train) but "
                f"there are {len(self.y_test)} test and {len(self.y_train)} "
                "training targets"
            )
        self.n, self.default = self.n_train, 0.0
        self.row_players: np.ndarray | None = None
        self._fingerprint = _sha(
            "daskval.PrecomputedKNNUtility/1",
            hashlib.sha256(self.distances.tobytes()).hexdigest(),
            hashlib.sha256(self.y_train.tobytes()).hexdigest(),
            hashlib.sha256(self.y_test.tobytes()).hexdigest(),
            str(self.k),
            str(self.soft),
            str(self.regression),
        )

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {
            "class": "PrecomputedKNNUtility",
            "n": self.n,
            "k": self.k,
            "soft": self.soft,
            "regression": self.regression,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        """u(players), by sorting the coalition's columns (the reference)."""
        stats.n_evaluations += 1
        rows = np.unique(np.asarray(players, dtype=np.int64))
        if len(rows) == 0:
            return -float(np.mean(self.y_test**2)) if self.regression else 0.0
        nearest = min(self.k, len(rows))
        ranked = np.argsort(self.distances[:, rows], axis=1, kind="stable")
        votes = self.y_train[rows][ranked[:, :nearest]]
        if self.regression:
            errors = votes.sum(axis=1) / self.k - self.y_test
            return -float(np.mean(errors * errors))
        hits = int((votes == self.y_test[:, None]).sum())
        return hits / ((nearest if self.soft else self.k) * self.n_test)

    def shapley_moments(self, start: int, stop: int) -> Moments:
        """Per-player moments over test points ``start .. stop-1``."""
        block = max(1, min(stop - start, _block_rows(self.memory_budget, self.n)))
        work = _Workspace.reused(block, self.n)
        sums = MomentSums(self.n)
        for t0 in range(start, stop, block):
            t1 = min(stop, t0 + block)
            sums.add(
                _values_from_distances(
                    self.distances[t0:t1],
                    self.y_train,
                    self.y_test[t0:t1],
                    self.k,
                    None,
                    self.n,
                    work,
                    self.soft,
                    self.regression,
                )
            )
        return sums.moments()


def _as_distance_matrix(distances: Any) -> np.ndarray:
    """A dense float64 matrix of distances >= 0, with the entries a sparse
    matrix does not store (and infinite ones) as the largest float."""
    if hasattr(distances, "tocoo"):
        graph = distances.tocoo()
        dense = np.full(graph.shape, np.inf)
        dense[graph.row, graph.col] = graph.data
    else:
        dense = np.array(distances, dtype=np.float64)
    if dense.ndim != 2:
        raise ValueError("distances must be a (n_test, n_train) matrix")
    if np.isnan(dense).any() or (dense < 0).any():
        raise ValueError("distances must be >= 0 and not NaN")
    # the largest float still sorts after every finite distance (its bits
    # are the largest of the sort keys) without inf - inf in the gaps
    dense[np.isinf(dense)] = np.finfo(np.float64).max
    return np.ascontiguousarray(dense + 0.0)


class PrecomputedKNNShapleyValuation(Valuation):
    """Exact KNN-Shapley values (hard, soft-label or regression) from a
    precomputed distance matrix or neighbour graph
    (:class:`PrecomputedKNNUtility`): the recursions of
    :class:`KNNShapleyValuation` and its variants, ranked by (distance, row
    index). The whole matrix is broadcast (it is not sharded): at most
    about a tenth of a worker's memory."""

    method_name = "precomputed_knn_shapley"
    default_memo = False

    def __init__(
        self,
        distances: Any,
        y_train: Any,
        y_test: Any,
        k: int,
        *,
        soft: bool = False,
        regression: bool = False,
        memory_budget: int = _DEFAULT_MEMORY,
    ) -> None:
        utility = PrecomputedKNNUtility(
            distances,
            y_train,
            y_test,
            k,
            soft=soft,
            regression=regression,
            memory_budget=memory_budget,
        )
        super().__init__(utility, stop=None, seed=0)
        self.utility: PrecomputedKNNUtility = utility

    def make_plan(self) -> Plan:
        return KNNShapleyPlan(self.utility.n, self.utility.n_test)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "k": self.utility.k,
            "soft": self.utility.soft,
            "regression": self.utility.regression,
            "tie_break": "training row index",
        }
