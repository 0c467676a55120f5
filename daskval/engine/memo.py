"""The worker-local memo of utility evaluations.

Every worker keeps one memo, installed by a worker plugin (so workers that
join or restart get one too) and kept for the worker's life, across fits and
methods. It maps (utility fingerprint, canonical subset) to the value of u(S)
and to what the call did to the counters (failures, warnings), so a hit
changes an :class:`~daskval.utility.EvalStats` exactly as the original call
did: values, budgets and failure counts never depend on the memo's state.

The memo is a ``zict.LRU`` bounded in (estimated) bytes over a dict. Dask
counts it as unmanaged memory, so the bound is a fraction of the worker's
memory limit, kept far below the pause threshold (80%). Entries evicted from
memory may spill to one LMDB environment in the worker's local directory
(one file, not one file per key; needs the ``lmdb`` extra).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import zict
from distributed import Client, WorkerPlugin

from daskval.utility import EvalStats, Utility, UtilityChain, WrappedUtility

__all__ = [
    "MemoConfig",
    "MemoPlugin",
    "MemoizedUtility",
    "Placement",
    "WorkerMemo",
    "clear_memo",
    "ensure_memo",
    "memo_stats",
    "subset_key",
]

MEMO_PLUGIN = "daskval-memo"
# Measured with tracemalloc on CPython 3.11 (zict 3.0): a 20-byte key, a float,
# and the LRU's dict, order set and weight entries take ~230 bytes; a tuple
# value (an entry whose call failed or warned) ~64 more. Rounded up.
_ENTRY_BYTES = 256
_EFFECT_ENTRY_BYTES = 64
# the memo never takes more of the worker's memory limit than this (the pause
# threshold is 80%, and the worker needs room for its data and the fits)
_MAX_FRACTION = 0.5
# distinct failure/warning effects kept (each holds a traceback of up to 4 kB,
# outside the LRU's bound: at most ~4 MB); calls with a new effect beyond this
# are evaluated every time rather than stored with an unbounded table
_MAX_EFFECTS = 1024
_NO_EFFECT = -1
_DISK_VALUE = struct.Struct("<dq")
# coalitions at least this large (and 1/16 of the players) are keyed by mask
_BITMAP_MIN = 2048
_ATTRIBUTE = "_daskval_memo"


@dataclass(frozen=True)
class MemoConfig:
    """How much the workers' memo may hold, and whether it spills to disk.

    Pass one as ``fit(memo=MemoConfig(...))`` to (re)configure the memo of
    every worker of the cluster; entries already held are kept (the oldest
    are evicted if the bound shrank).

    Parameters
    ----------
    memory_fraction : float
        The bound as a fraction of each worker's memory limit (default 10%;
        at most 50%, so the memo alone never brings a worker near Dask's
        pause threshold of 80%).
    max_bytes : int, optional
        An absolute bound in bytes per worker instead of the fraction (still
        capped at 50% of the memory limit).
    spill : bool
        Keep entries evicted from memory in an LMDB environment in the
        worker's local directory, and read them back on a miss in memory.
        Needs ``pip install daskval[lmdb]``. The disk store is not bounded
        (about 60 bytes per entry); :func:`clear_memo` empties it.
    """

    memory_fraction: float = 0.1
    max_bytes: int | None = None
    spill: bool = False

    def __post_init__(self) -> None:
        fraction = self.memory_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise TypeError(
                f"memory_fraction must be a number, got {type(fraction).__name__}"
            )
        if not 0 < fraction <= _MAX_FRACTION:
            raise ValueError(
                f"memory_fraction must lie in (0, {_MAX_FRACTION}], got {fraction}"
            )
        if self.max_bytes is not None and (
            isinstance(self.max_bytes, bool)
            or not isinstance(self.max_bytes, int)
            or self.max_bytes < 0
        ):
            raise ValueError(
                f"max_bytes must be a non-negative integer, got {self.max_bytes!r}"
            )
        if self.spill:
            _require_lmdb()

    def limit_for(self, memory_limit: int | None) -> int:
        """The bound in bytes for a worker with ``memory_limit`` (None: no limit)."""
        if memory_limit is None or memory_limit <= 0:
            from distributed.system import MEMORY_LIMIT

            memory_limit = MEMORY_LIMIT
        ceiling = int(_MAX_FRACTION * memory_limit)
        if self.max_bytes is not None:
            return min(self.max_bytes, ceiling)
        return min(int(self.memory_fraction * memory_limit), ceiling)


def _require_lmdb() -> Any:
    try:
        import lmdb
    except ImportError as exc:
        raise ImportError(
            "MemoConfig(spill=True) needs the lmdb package: "
            "pip install 'daskval[lmdb]' (or pip install lmdb)"
        ) from exc
    return lmdb


# --------------------------------------------------------------------------
# Keys


def namespace(fingerprint: str) -> bytes:
    """16 bytes naming a utility: the key of every subset hash of that utility."""
    return hashlib.blake2b(fingerprint.encode(), digest_size=16).digest()


def subset_key(space: bytes, players: np.ndarray, n: int | None = None) -> bytes:
    """The memo key of a coalition: 4 bytes of the namespace, then a 16-byte
    keyed digest of the coalition in a canonical form.

    The digest is keyed by the whole namespace, so utilities never share a key;
    the prefix lets :func:`clear_memo` drop one utility's entries. The key does
    not depend on the order of ``players``, on the point being valued or on the
    sampler, and stays 20 bytes whatever the size of the coalition.

    The canonical form is the sorted int32 indices, or, for a coalition of at
    least 1/16 of ``n`` players (and 2048 or more), the n-bit membership mask,
    which is ~7x cheaper to build than a sort at 50 000 of 100 000 players.
    Which form a coalition gets depends on its size and ``n`` only, so a
    coalition always gets the same key.
    """
    count = len(players)
    if n is not None and count >= _BITMAP_MIN and 16 * count >= n:
        mask = np.zeros(n, dtype=bool)
        mask[players] = True
        data, person = np.packbits(mask).tobytes(), b"bitmap"
    else:
        canonical = np.array(players, dtype=np.int32)
        canonical.sort()
        data, person = canonical.tobytes(), b"sorted"
    digest = hashlib.blake2b(data, digest_size=16, key=space, person=person)
    return space[:4] + digest.digest()


# --------------------------------------------------------------------------
# The store on one worker


class _DiskStore:
    """Entries evicted from memory, in one LMDB environment (one data file).

    Keys are the 20-byte memo keys; values pack the float and the effect id.
    Each write is its own transaction without fsync: the store is a cache and
    dies with the worker.
    """

    def __init__(self, directory: str) -> None:
        lmdb = _require_lmdb()
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.env = lmdb.open(
            directory,
            map_size=min(2**40, (2**63 - 1) // 4),
            sync=False,
            writemap=True,
            metasync=False,
            lock=False,  # one process; the memo's lock serialises access
        )

    def get(self, key: bytes) -> tuple[float, int] | None:
        with self.env.begin() as txn:
            raw = txn.get(key)
        if raw is None:
            return None
        value, effect = _DISK_VALUE.unpack(raw)
        return float(value), int(effect)

    def put(self, key: bytes, value: float, effect: int) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(key, _DISK_VALUE.pack(value, effect))

    def delete_prefix(self, prefix: bytes) -> int:
        removed = 0
        with self.env.begin(write=True) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                while cursor.key().startswith(prefix):
                    if not cursor.delete():
                        break
                    removed += 1
        return removed

    def entries(self) -> int:
        return int(self.env.stat()["entries"])

    def close(self, remove: bool = True) -> None:
        self.env.close()
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)


Entry = float | tuple[float, int]


def _weight(key: bytes, value: Entry) -> int:
    return _ENTRY_BYTES + (_EFFECT_ENTRY_BYTES if isinstance(value, tuple) else 0)


class WorkerMemo:
    """One worker's memo: a byte-bounded LRU, an optional disk store, counters.

    Thread-safe: one lock guards the mappings and counters; evaluations run
    outside it. A coalition being evaluated by one thread is waited for, not
    evaluated again, by the other threads asking for it, so the misses count
    the calls that reached the utility.

    Parameters
    ----------
    limit_bytes : int
        The bound of the in-memory LRU, in estimated bytes.
    spill_directory : str, optional
        Where to keep evicted entries (an LMDB environment); None: no spill.
    """

    def __init__(self, limit_bytes: int, spill_directory: str | None = None) -> None:
        self._lock = threading.Lock()
        # coalitions being evaluated -> an Event once another thread waits
        self._pending: dict[bytes, threading.Event | None] = {}
        # failure/warning effects, interned: entries hold an index into this
        self._effects: list[EvalStats] = []
        self._effect_ids: dict[Any, int] = {}
        self.hits = self.misses = self.evictions = 0
        self.disk_hits = self.disk_writes = self.unstored = 0
        self._disk: _DiskStore | None = None
        self._lru: zict.LRU[bytes, Entry] = zict.LRU(
            limit_bytes, {}, on_evict=self._on_evict, weight=_weight
        )
        if spill_directory is not None:
            self._disk = _DiskStore(spill_directory)

    # -- configuration --------------------------------------------------------
    @property
    def limit_bytes(self) -> int:
        return int(self._lru.n)

    def configure(self, limit_bytes: int, spill_directory: str | None) -> None:
        """Apply a new bound (evicting down to it) and switch spilling."""
        with self._lock:
            if spill_directory is None and self._disk is not None:
                self._disk.close()
                self._disk = None
            elif spill_directory is not None and self._disk is None:
                self._disk = _DiskStore(spill_directory)
            self._lru.n = limit_bytes
            self._lru.evict_until_below_target()

    def clear(self, space: bytes | None = None) -> int:
        """Drop every entry (of one utility's namespace); the number dropped."""
        with self._lock:
            prefix = None if space is None else space[:4]
            keys = [k for k in self._lru.d if prefix is None or k.startswith(prefix)]
            for key in keys:
                del self._lru[key]
            if self._disk is not None:
                if prefix is None:
                    directory = self._disk.directory
                    self._disk.close()
                    self._disk = _DiskStore(directory)
                else:
                    self._disk.delete_prefix(prefix)
            if prefix is None:
                self.hits = self.misses = self.evictions = 0
                self.disk_hits = self.disk_writes = self.unstored = 0
            return len(keys)

    def close(self) -> None:
        with self._lock:
            if self._disk is not None:
                self._disk.close()
                self._disk = None
            self._lru.d.clear()

    # -- the hot path ---------------------------------------------------------
    def evaluate(
        self, utility: Utility, space: bytes, players: np.ndarray, stats: EvalStats
    ) -> float:
        """u(players) from the memo, or from ``utility`` (then remembered)."""
        key = subset_key(space, players, utility.n)
        while True:
            with self._lock:
                entry = self._lookup(key)
                waiting = None
                if entry is not None:
                    self.hits += 1
                elif key not in self._pending:
                    # no Event until a second thread asks (most misses are alone)
                    self._pending[key] = None
                    self.misses += 1
                    break
                else:
                    waiting = self._pending[key]
                    if waiting is None:
                        waiting = self._pending[key] = threading.Event()
            if entry is not None:
                return self._replay(entry, stats)
            # another thread is evaluating this coalition: wait for its entry
            assert waiting is not None
            waiting.wait()
        return self._evaluate_and_store(utility, key, players, stats)

    def _evaluate_and_store(
        self, utility: Utility, key: bytes, players: np.ndarray, stats: EvalStats
    ) -> float:
        local = EvalStats()
        done = False
        try:
            value = utility.evaluate(players, local)
            done = True
        finally:
            # store and release in one step: a thread arriving in between
            # would otherwise find neither the entry nor the pending mark
            with self._lock:
                try:
                    if done:
                        self._store(key, value, local)
                finally:
                    event = self._pending.pop(key)
            if event is not None:
                event.set()
        local.memo_misses += 1
        stats += local
        return value

    def _store(self, key: bytes, value: float, local: EvalStats) -> None:
        """Remember the call; lock held."""
        entry = self._entry(value, local)
        if entry is None:
            self.unstored += 1
        else:
            self._lru[key] = entry

    def _lookup(self, key: bytes) -> Entry | None:
        """The entry of ``key`` in memory or on disk (brought back); lock held."""
        try:
            return self._lru[key]
        except KeyError:
            pass
        if self._disk is None:
            return None
        found = self._disk.get(key)
        if found is None:
            return None
        self.disk_hits += 1
        value, effect = found
        entry: Entry = value if effect == _NO_EFFECT else (value, effect)
        self._lru[key] = entry
        return entry

    def _replay(self, entry: Entry, stats: EvalStats) -> float:
        """Count a hit as the original call counted (failures, warnings)."""
        stats.memo_hits += 1
        if isinstance(entry, tuple):
            value, effect = entry
            stats += self._effects[effect]
            return value
        stats.n_evaluations += 1
        return entry

    def _entry(self, value: float, local: EvalStats) -> Entry | None:
        """What to store for a call that returned ``value`` and counted
        ``local`` (None: an effect the bounded table cannot take); lock held."""
        if local.n_evaluations == 1 and not local.n_failed and not local.warnings:
            return float(value)
        signature = (
            local.n_evaluations,
            local.n_failed,
            local.first_failure,
            tuple(local.failures.items()),
            tuple(local.warnings.items()),
        )
        effect = self._effect_ids.get(signature)
        if effect is None:
            if len(self._effects) >= _MAX_EFFECTS:
                return None
            effect = len(self._effects)
            self._effects.append(
                EvalStats(
                    n_evaluations=local.n_evaluations,
                    n_failed=local.n_failed,
                    first_failure=local.first_failure,
                    warnings=dict(local.warnings),
                    failures=dict(local.failures),
                )
            )
            self._effect_ids[signature] = effect
        return (float(value), effect)

    def _on_evict(self, key: bytes, entry: Entry) -> None:
        # called by the LRU with our lock held (every LRU write happens under it)
        self.evictions += 1
        if self._disk is not None:
            value, effect = entry if isinstance(entry, tuple) else (entry, _NO_EFFECT)
            self._disk.put(key, value, effect)
            self.disk_writes += 1

    # -- statistics -----------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counters since the memo was made (or last cleared), and its size."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "entries": len(self._lru.d),
                "bytes": int(self._lru.total_weight),
                "limit_bytes": self.limit_bytes,
                "disk_entries": 0 if self._disk is None else self._disk.entries(),
                "disk_hits": self.disk_hits,
                "disk_writes": self.disk_writes,
                "unstored": self.unstored,
            }


# --------------------------------------------------------------------------
# The utility a task sees


class MemoizedUtility(WrappedUtility):
    """A utility whose :meth:`evaluate` goes through the worker's memo.

    Everything else is the wrapped utility's own: its fingerprint, context,
    description and any further attribute. Path-dependent evaluations never
    touch the memo: :meth:`chain` returns the wrapped utility's chain, except
    the plain (cold) :class:`~daskval.utility.UtilityChain`, whose values are
    u(S) itself and so are memoized.
    """

    def __init__(self, utility: Utility, memo: WorkerMemo) -> None:
        super().__init__(utility)
        self.memo = memo
        self._space = namespace(utility.fingerprint())

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        return self.memo.evaluate(self.utility, self._space, players, stats)

    def chain(self) -> UtilityChain:
        chain = self.utility.chain()
        if type(chain) is UtilityChain:
            # the cold chain is u(S) coalition by coalition: path-independent
            return UtilityChain(self)
        return chain  # warm starts: the value depends on the path, never memoized


# --------------------------------------------------------------------------
# Installing, configuring and reading the memo on the workers


class MemoPlugin(WorkerPlugin):
    """Gives every worker (late joiners too) a memo configured by ``config``.

    Registering it again with another configuration re-configures the memo in
    place: the entries survive, so a memo lives as long as its worker.
    """

    def __init__(self, config: MemoConfig) -> None:
        self.config = config

    def setup(self, worker: Any) -> None:
        limit = self.config.limit_for(worker.memory_manager.memory_limit)
        directory = (
            os.path.join(worker.local_directory, "daskval-memo")
            if self.config.spill
            else None
        )
        memo: WorkerMemo | None = getattr(worker, _ATTRIBUTE, None)
        if memo is None:
            setattr(worker, _ATTRIBUTE, WorkerMemo(limit, directory))
        else:
            memo.configure(limit, directory)


def worker_memo(worker: Any) -> WorkerMemo | None:
    """The memo of ``worker``, if the memo plugin set one up."""
    memo: WorkerMemo | None = getattr(worker, _ATTRIBUTE, None)
    return memo


_registering = threading.Lock()
# the configuration each client last installed (None: the defaults, if absent)
_installed: weakref.WeakKeyDictionary[Client, MemoConfig] = weakref.WeakKeyDictionary()


def ensure_memo(client: Client, config: MemoConfig | None = None) -> None:
    """Make sure the workers of ``client`` have a memo (configured as ``config``).

    With ``config=None`` a memo configured earlier (by this or another client)
    is left as it is, and a missing one gets the defaults.
    """
    # one registration at a time: a concurrent run must not start its tasks
    # before the first registration has reached the workers
    with _registering:
        current = _installed.get(client)
        if current is not None and (config is None or config == current):
            return
        wanted = config or MemoConfig()
        plugin = MemoPlugin(wanted)
        # the defaults never override a configuration another client installed
        plugin.idempotent = config is None
        client.register_plugin(plugin, name=MEMO_PLUGIN)
        _installed[client] = wanted


def _worker_stats(dask_worker: Any) -> dict[str, int] | None:
    memo = worker_memo(dask_worker)
    return None if memo is None else memo.stats()


def _worker_clear(space: bytes | None, dask_worker: Any = None) -> int:
    memo = worker_memo(dask_worker)
    return 0 if memo is None else memo.clear(space)


def _sum(per_worker: dict[str, dict[str, int] | None]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counters in per_worker.values():
        for name, count in (counters or {}).items():
            total[name] = total.get(name, 0) + count
    total["workers"] = sum(1 for c in per_worker.values() if c is not None)
    return total


def memo_stats(client: Any = None, *, per_worker: bool = False) -> dict[str, Any]:
    """The workers' memo counters, summed over workers.

    Counters run since each worker's memo was made or last cleared: ``hits``,
    ``misses``, ``evictions``, ``entries``, ``bytes`` (estimated) and
    ``limit_bytes`` in memory, ``disk_entries``, ``disk_hits`` and
    ``disk_writes`` when spilling, and ``workers`` (workers with a memo).

    Parameters
    ----------
    client : distributed.Client, optional
        Defaults to the active client, or the embedded cluster.
    per_worker : bool
        Also return each worker's counters under ``"per_worker"``.
    """
    from daskval.engine.cluster import resolve_client

    resolved = resolve_client(client)
    found = resolved.run(_worker_stats, on_error="return")
    counters = {w: c if isinstance(c, dict) else None for w, c in found.items()}
    summary: dict[str, Any] = dict(_sum(counters))
    if per_worker:
        summary["per_worker"] = counters
    return summary


def clear_memo(client: Any = None, utility: Utility | None = None) -> int:
    """Empty the workers' memo (of one utility only, if given).

    Returns the number of in-memory entries dropped, summed over workers;
    spilled entries are dropped from disk too. Clearing everything also
    resets the counters.
    """
    from daskval.engine.cluster import resolve_client

    resolved = resolve_client(client)
    space = None if utility is None else namespace(utility.fingerprint())
    dropped = resolved.run(_worker_clear, space, on_error="return")
    return sum(d for d in dropped.values() if isinstance(d, int))


def run_metadata(stats: EvalStats, enabled: bool, client: Client) -> dict[str, Any]:
    """``metadata["memo"]`` of a result: this run's hits and misses (from the
    merged counters, so budget cuts are respected) and the workers' totals."""
    calls = stats.memo_hits + stats.memo_misses
    summary: dict[str, Any] = {
        "enabled": enabled,
        "hits": stats.memo_hits,
        "misses": stats.memo_misses,
        "hit_rate": stats.memo_hits / calls if calls else 0.0,
    }
    if enabled:
        try:
            summary["workers"] = memo_stats(client)
        except Exception as exc:  # a result must not fail for its statistics
            summary["workers"] = {"error": f"{type(exc).__name__}: {exc}"}
    return summary


# --------------------------------------------------------------------------
# Placement: the same sample ranges on the same workers, run after run

# blocks per worker thread: enough for stealing to even out the load
_BLOCKS_PER_THREAD = 8
# no smaller blocks: tasks never straddle one, and a tiny enumeration of a
# cheap game should stay a few tasks (each task costs ~2 ms of overhead)
_MIN_BLOCK = 32


class Placement:
    """Sends each block of sample indices to one worker, the same one every run.

    Each memo is local to its worker, so a coalition evaluated on one worker
    misses on the others. Exact enumerations (exact Shapley, exact Banzhaf)
    map sample ``j`` to the same coalition, so when block ``j // block`` goes
    to the same worker in every run on a cluster, later methods find their
    coalitions in that worker's memo. Blocks are dealt round-robin over the
    worker threads; tasks never straddle a block and prefer its worker, but
    may run elsewhere (Dask may steal them), so the load stays balanced.
    Placement changes neither which samples run nor the values.

    Parameters
    ----------
    sample_limit : int
        The number of samples of the plan.
    nthreads : dict
        Worker address -> threads, as ``Client.nthreads()`` gives.
    """

    def __init__(self, sample_limit: int, nthreads: dict[str, int]) -> None:
        self.slots = [w for w in sorted(nthreads) for _ in range(nthreads[w])]
        blocks = max(1, _BLOCKS_PER_THREAD * len(self.slots))
        per_block = max(_MIN_BLOCK, sample_limit // blocks)
        self.block = 1 << (per_block.bit_length() - 1)

    @classmethod
    def of(cls, sample_limit: int | None, client: Client) -> Placement | None:
        """A placement for a plan of ``sample_limit`` samples, or None when
        it cannot help (endless plans, fewer than two workers)."""
        if sample_limit is None:
            return None
        nthreads = client.nthreads()
        if len(nthreads) < 2:
            return None
        return cls(sample_limit, nthreads)

    def clip(self, start: int, end: int) -> int:
        """``end``, cut back to the end of the block of ``start``."""
        return min(end, (start // self.block + 1) * self.block)

    def hint(self, start: int) -> dict[str, Any]:
        """``Client.submit`` keywords that prefer the worker of ``start``'s block."""
        worker = self.slots[(start // self.block) % len(self.slots)]
        return {"workers": [worker], "allow_other_workers": True}
