"""KNN-Shapley with the training set split over the workers.

When the training set does not fit one worker's memory (or ``train_chunk_size``
asks for it), the broadcast of :mod:`daskval.engine.broadcast` cannot be
used. Instead:

1. the training points are cut into chunks of consecutive rows, and each
   chunk is scattered once, to one worker (no worker holds them all);
2. for every block of test points, one task per chunk computes the careful
   distances of the block to the chunk's points (on the chunk's worker);
3. a task per block concatenates them in row order, sorts each test point's
   row by (distance, row index), runs the recursion and returns the block's
   per-player statistics;
4. those are merged in test-point order, k at a time, on the workers; the
   client fetches only the final state.

This is exact: the distances are the careful ones of the broadcast path (a
pair's distance does not depend on the chunk it is computed in), so every
test point gets the same order, the same ranks and the same values; only the
grouping of the sums over test points differs (to ~1e-16).

Limits: a block's (test points x N) distances must fit one worker (blocks
shrink to a single test point when N is large), and the run has neither
checkpoints nor progress events, and does not survive the loss of a worker
holding a chunk.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from distributed import Client, Future

from daskval.accumulate import Moments
from daskval.engine.faults import _MEMORY_SHARE, utility_nbytes
from daskval.engine.packed import submit_packed
from daskval.result import ValuationResult

if TYPE_CHECKING:
    from daskval.methods.knn import KNNShapleyValuation, KNNUtility

__all__ = ["chunk_size_for", "run_chunked"]

# blocks whose distances may be in flight at once, per worker thread
_BLOCKS_PER_THREAD = 2
_MERGE_FANIN = 8


@dataclass
class TrainChunk:
    """Consecutive training rows ``start ..`` as columns (features x rows)."""

    start: int
    train_t: np.ndarray
    norms: np.ndarray | None


@dataclass
class BlockSpec:
    """What the task that combines one block of test points needs besides the
    distances (small: the test points' labels, not the training set)."""

    k: int
    metric: str
    n_train: int
    n_players: int
    test_labels: np.ndarray


def chunk_distances(chunk: TrainChunk, x: np.ndarray, metric: str) -> np.ndarray:
    """Careful distances of the test points ``x`` to the chunk's points."""
    from daskval.methods.knn import _distances

    return _distances(x, chunk.train_t, metric, chunk.norms)


def block_moments(
    spec: BlockSpec,
    labels: np.ndarray,
    row_players: np.ndarray | None,
    *parts: np.ndarray,
) -> Moments:
    """Statistics of one block of test points from its distances to every
    chunk (in row order)."""
    from daskval.methods.knn import MomentSums, _order, _values, _Workspace

    exact = np.concatenate(parts, axis=1)
    rows, n = exact.shape
    work = _Workspace(rows, n)
    work.dist[...] = exact  # _order overwrites its input; the copy is kept
    order = _order(
        work.dist,
        np.zeros(rows),  # the distances are the careful ones
        max(1, (n - 1).bit_length()),
        work,
        lambda r, positions: exact[r, positions],
    )
    sums = MomentSums(spec.n_players)
    sums.add(
        _values(
            order, labels, spec.test_labels, spec.k, row_players, spec.n_players, work
        )
    )
    return sums.moments()


def merge_moments(*parts: Moments) -> Moments:
    """Adjacent blocks' statistics, merged in order."""
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    return merged


def chunk_size_for(client: Client, utility: KNNUtility) -> int | None:
    """Rows per chunk when the utility is too large to broadcast (the limit
    of :func:`daskval.engine.faults.check_fits_in_memory`), else None."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:
        info = client.scheduler_info()
    limits = [
        int(w["memory_limit"])
        for w in info.get("workers", {}).values()
        if w.get("memory_limit")
    ]
    if not limits:
        return None
    share = _MEMORY_SHARE * min(limits)
    # what a worker would hold: the arrays the utility ships (centred
    # features, labels, squared norms), or the dataset's if larger
    shipped = sum(
        value.nbytes
        for value in utility.__getstate__().values()
        if isinstance(value, np.ndarray)
    )
    size = max(shipped, utility_nbytes(utility))
    if size <= share:
        return None
    # a quarter of the share per chunk: a worker holds several, and the blocks
    per_row = max(1, size // max(1, utility.n_train))
    return max(1, int(share // 4 // per_row))


def run_chunked(
    valuation: KNNShapleyValuation, client: Client, chunk_size: int
) -> ValuationResult:
    """Run ``valuation`` with its training set in chunks of ``chunk_size`` rows."""
    utility = valuation.utility
    begin = time.monotonic()
    n, n_test = utility.n_train, utility.n_test
    chunks = [
        TrainChunk(
            start,
            np.ascontiguousarray(utility.train_t[:, start : start + chunk_size]),
            None
            if utility.train_norms is None
            else utility.train_norms[start : start + chunk_size],
        )
        for start in range(0, n, chunk_size)
    ]
    chunk_futures: list[Future] = client.scatter(chunks, hash=False)
    labels = client.scatter(utility.y_train, hash=False)
    row_players = (
        None
        if utility.row_players is None
        else client.scatter(utility.row_players, hash=False)
    )
    block = utility._block_size(n)
    n_threads = sum(client.nthreads().values()) or 1
    window = _BLOCKS_PER_THREAD * n_threads
    in_flight: deque[Future] = deque()
    pending: list[Future] = []  # statistics of consecutive blocks, in order
    for t0 in range(0, n_test, block):
        t1 = min(n_test, t0 + block)
        x = utility.x_test[t0:t1]
        parts = [
            submit_packed(client, chunk_distances, chunk, x, utility.metric)
            for chunk in chunk_futures
        ]
        spec = BlockSpec(utility.k, utility.metric, n, utility.n, utility.y_test[t0:t1])
        combined = submit_packed(
            client, block_moments, spec, labels, row_players, *parts
        )
        in_flight.append(combined)
        pending.append(combined)
        if len(pending) >= _MERGE_FANIN:
            pending = [submit_packed(client, merge_moments, *pending)]
        while len(in_flight) >= window:
            _wait(in_flight.popleft())
    while len(pending) > 1:
        pending = [
            submit_packed(client, merge_moments, *pending[i : i + _MERGE_FANIN])
            for i in range(0, len(pending), _MERGE_FANIN)
        ]
    moments: Moments = pending[0].result()
    # the chunks are released with the last reference to their futures
    values, stderr = moments.mean, moments.stderr
    data = utility.data
    return ValuationResult(
        values,
        stderr,
        moments.count,
        names=None if data is None else data.names,
        n_samples=n_test,
        n_evaluations=n_test,
        status="completed",
        metadata={
            **valuation.describe(),
            "plan": valuation.make_plan().describe(),
            "utility": utility.describe(),
            "utility_fingerprint": utility.fingerprint(),
            "n_workers": len(client.nthreads()),
            "elapsed_seconds": time.monotonic() - begin,
            "train_chunks": len(chunks),
            "train_chunk_size": chunk_size,
            "test_block": block,
        },
    )


def _wait(future: Future) -> None:
    """Wait for ``future`` without fetching its result; raise its error."""
    while not future.done():
        time.sleep(0.005)
    if future.status == "error":
        future.result()
