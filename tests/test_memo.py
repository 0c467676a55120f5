"""The workers' memo: reuse across methods, keys, bounds, spill, threads, identity."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from distributed import Client, LocalCluster
from helpers.counting import CountingLogisticRegression, fit_count, reset_fit_count
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import daskval as dv
from daskval.engine.memo import (
    MemoConfig,
    MemoizedUtility,
    WorkerMemo,
    clear_memo,
    ensure_memo,
    memo_stats,
    namespace,
    subset_key,
)
from daskval.utility import EvalStats, UtilityChain


def _data(n: int, seed: int = 0) -> dv.Dataset:
    """n training points alternating between the two classes (the first rows
    of make_classification can all share one class, and a game where every
    fit fails is not a test of anything), 60 scoring points."""
    x, y = make_classification(
        n_samples=n + 60, n_features=5, n_informative=3, random_state=seed
    )
    by_class = [np.flatnonzero(y == c) for c in (0, 1)]
    train = np.array([by_class[i % 2][i // 2] for i in range(n)])
    test = np.setdiff1d(np.arange(len(y)), train)
    return dv.Dataset(x[train], y[train], x[test], y[test])


def _fits(client: Client) -> int:
    return sum(client.run(fit_count).values())


def square_root_game(players: np.ndarray) -> float:
    return float(np.sqrt(np.asarray(players, dtype=float) + 1).sum())


@pytest.fixture
def fresh(client: Client) -> Iterator[Client]:
    """The shared cluster with an empty, default-configured memo, restored after."""
    ensure_memo(client, MemoConfig())
    clear_memo(client)
    client.run(reset_fit_count)
    yield client
    ensure_memo(client, MemoConfig())
    clear_memo(client)


# --------------------------------------------------------------------------
# Done-when: one fit per coalition across methods


def test_exact_shapley_banzhaf_and_loo_fit_each_coalition_once(fresh: Client) -> None:
    n = 12
    utility = dv.ModelUtility(CountingLogisticRegression(max_iter=200), _data(n))
    shapley = dv.ShapleyValuation(utility, sampler=dv.ExactSampler()).fit(fresh)
    after_shapley = _fits(fresh)
    banzhaf = dv.BanzhafValuation(utility, sampler=dv.ExactSampler()).fit(fresh)
    after_banzhaf = _fits(fresh)
    loo = dv.LOOValuation(utility).fit(fresh)
    total = _fits(fresh)

    # the empty coalition scores the default without a fit: 2^n - 1 fits
    assert after_shapley == 2**n - 1
    # later methods fit (almost) nothing: each coalition sits in the memo of
    # the worker its sample range was placed on (typically 0 refits; a few
    # hundred when Dask steals tasks to even out the load); 3x without memo
    assert total <= 1.5 * (2**n - 1), (after_shapley, after_banzhaf, total)
    for valuation in (shapley, banzhaf, loo):
        assert valuation.result_ is not None
    # LOO maps its samples to other coalitions (N minus one player), so about
    # half of its n + 1 coalitions sit on another worker's memo
    assert total - after_banzhaf <= n + 1


def test_placement_sends_each_block_to_one_worker_whatever_the_task_sizes() -> None:
    from daskval.engine.memo import Placement

    placement = Placement(4096, {"tcp://b:1": 1, "tcp://a:1": 1})
    assert placement.block == 256  # 8 blocks per thread, a power of two
    owners: dict[int, str] = {}
    for size in (1, 7, 100, 256, 1000):
        start = 0
        while start < 4096:
            end = placement.clip(start, start + size)
            assert start // placement.block == (end - 1) // placement.block
            (worker,) = placement.hint(start)["workers"]
            for j in range(start, end):
                assert owners.setdefault(j, worker) == worker
            start = end
    assert set(owners.values()) == {"tcp://a:1", "tcp://b:1"}


# --------------------------------------------------------------------------
# Keys


def test_keys_are_small_canonical_and_per_utility() -> None:
    space = namespace("a" * 64)
    players = np.random.default_rng(0).permutation(100_000)[:60_000]
    key = subset_key(space, players)
    assert len(key) == 20
    assert subset_key(space, np.sort(players)) == key
    assert subset_key(space, players[::-1].astype(np.int64)) == key
    assert subset_key(namespace("b" * 64), players) != key
    assert subset_key(space, players[1:]) != key
    assert subset_key(space, np.empty(0, dtype=np.intp)) != subset_key(
        namespace("b" * 64), np.empty(0, dtype=np.intp)
    )
    # large coalitions are keyed by their membership mask: still canonical
    masked = subset_key(space, players, 100_000)
    assert len(masked) == 20
    assert subset_key(space, np.sort(players), 100_000) == masked
    assert subset_key(space, players[1:], 100_000) != masked
    small = players[:100]
    assert subset_key(space, small, 100_000) == subset_key(space, small[::-1])


@pytest.mark.parametrize("change", ["label", "scorer", "parameter"])
def test_a_changed_label_scorer_or_parameter_never_hits_old_entries(
    fresh: Client, change: str
) -> None:
    data = _data(6)
    utility = dv.ModelUtility(LogisticRegression(max_iter=200), data)
    first = dv.ShapleyValuation(utility, sampler=dv.ExactSampler()).fit(fresh)
    assert first.result_ is not None
    assert first.result_.metadata["memo"]["misses"] == 2**6
    if change == "label":
        y = data.y_train.copy()
        y[0] = 1 - y[0]
        other_data = dv.Dataset(data.x_train, y, data.x_test, data.y_test)
        other = dv.ModelUtility(LogisticRegression(max_iter=200), other_data)
    elif change == "scorer":
        other = dv.ModelUtility(LogisticRegression(max_iter=200), data, "f1")
    else:
        other = dv.ModelUtility(LogisticRegression(max_iter=200, C=0.5), data)
    again = dv.ShapleyValuation(other, sampler=dv.ExactSampler()).fit(fresh)
    assert again.result_ is not None
    assert again.result_.metadata["memo"]["hits"] == 0
    assert again.result_.metadata["memo"]["misses"] == 2**6
    same = dv.ShapleyValuation(utility, sampler=dv.ExactSampler()).fit(fresh)
    assert same.result_ is not None
    assert same.result_.metadata["memo"]["hits"] > 0


# --------------------------------------------------------------------------
# Identity: the memo changes no value and no counter


def failing_game(players: np.ndarray) -> float:
    """Fails on odd-sized coalitions, NaN on size 2, warns on size 4."""
    import warnings

    if len(players) % 2 == 1:
        raise ValueError(f"odd coalition of {len(players)}")
    if len(players) == 2:
        return float("nan")
    if len(players) == 4:
        warnings.warn("four players", UserWarning, stacklevel=1)
    return float(np.sum(players))


def _fingerprint_of(result: dv.ValuationResult) -> tuple[Any, ...]:
    meta = result.metadata
    return (
        result.values.tolist(),
        result.stderr.tolist(),
        result.counts.tolist(),
        result.n_evaluations,
        result.n_failed,
        meta["failures"],
        meta["warnings"],
        meta["first_failure"],
    )


@pytest.mark.parametrize("game", ["model", "function"])
def test_results_with_the_memo_off_equal_results_with_it_on(
    fresh: Client, game: str
) -> None:
    if game == "model":
        # single-class coalitions make LogisticRegression fail: failures counted
        utility: dv.Utility = dv.ModelUtility(
            LogisticRegression(max_iter=5), _data(7), "roc_auc"
        )
    else:
        utility = dv.FunctionUtility(failing_game, n=7)

    def run(memo: bool) -> list[dv.ValuationResult]:
        # fixed task sizes that divide the placement blocks: the same sums in
        # the same order, so the values are bitwise equal (placement, like any
        # change of task sizes, may otherwise move them by an ulp)
        return [
            v.fit(fresh, memo=memo, samples_per_task=4).result_  # type: ignore[misc]
            for v in (
                dv.ShapleyValuation(utility, sampler=dv.ExactSampler()),
                dv.ShapleyValuation(utility, stop=dv.MaxSamples(6), seed=3),
                dv.LOOValuation(utility),
            )
        ]

    off = run(False)
    cold = run(True)  # mostly misses (the later methods hit the first's entries)
    warm = run(True)  # all hits
    assert all(r.metadata["memo"]["hits"] == 0 for r in off)
    assert warm[0].metadata["memo"]["hit_rate"] > 0.9
    assert off[0].n_failed > 0
    for a, b, c in zip(off, cold, warm, strict=True):
        assert _fingerprint_of(a) == _fingerprint_of(b) == _fingerprint_of(c)


# --------------------------------------------------------------------------
# Bounds, spill, clearing


def test_the_bound_evicts_and_spilled_entries_come_back_from_disk(
    fresh: Client,
) -> None:
    pytest.importorskip("lmdb")
    utility = dv.ModelUtility(CountingLogisticRegression(max_iter=200), _data(8))
    ensure_memo(fresh, MemoConfig(max_bytes=40 * 256, spill=True))
    first = dv.ShapleyValuation(utility, sampler=dv.ExactSampler()).fit(fresh)
    stats = memo_stats(fresh)
    assert stats["evictions"] > 0 and stats["disk_writes"] == stats["evictions"]
    assert stats["bytes"] <= stats["limit_bytes"] == 2 * 40 * 256
    fitted = _fits(fresh)
    assert fitted == 2**8 - 1
    again = dv.BanzhafValuation(utility, sampler=dv.ExactSampler()).fit(fresh)
    assert again.result_ is not None and first.result_ is not None
    assert memo_stats(fresh)["disk_hits"] > 0
    assert _fits(fresh) - fitted <= 0.5 * fitted  # most came back from disk

    # without spill, evicted entries are gone: the same run refits most
    ensure_memo(fresh, MemoConfig(max_bytes=40 * 256))
    clear_memo(fresh)
    client_fits = _fits(fresh)
    dv.ShapleyValuation(utility, sampler=dv.ExactSampler()).fit(fresh)
    dv.ShapleyValuation(utility, sampler=dv.ExactSampler()).fit(fresh)
    assert _fits(fresh) - client_fits > 1.5 * (2**8 - 1)


def test_clear_memo_drops_one_utility_or_all(fresh: Client) -> None:
    u = dv.FunctionUtility(square_root_game, n=5)
    w = dv.FunctionUtility(failing_game, n=5)
    for utility in (u, w):
        dv.ShapleyValuation(utility, sampler=dv.ExactSampler()).fit(fresh)
    assert memo_stats(fresh)["entries"] == 2 * 2**5
    assert clear_memo(fresh, u) == 2**5
    assert memo_stats(fresh)["entries"] == 2**5
    again = dv.ShapleyValuation(w, sampler=dv.ExactSampler()).fit(fresh)
    assert again.result_ is not None and again.result_.metadata["memo"]["misses"] == 0
    assert clear_memo(fresh) == 2**5
    assert memo_stats(fresh)["entries"] == 0


def test_a_small_worker_under_pressure_evicts_and_never_pauses() -> None:
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            memory_limit="600MiB",
            host="127.0.0.1",
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        # 2% of 600 MiB: ~49k entries; the run makes ~100k distinct coalitions
        config = MemoConfig(memory_fraction=0.02)
        utility = dv.FunctionUtility(square_root_game, n=400)
        valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(250), seed=1)
        handle = valuation.submit(client, memo=config)
        statuses = set()
        while not handle.done():
            statuses |= set(
                client.run_on_scheduler(
                    lambda dask_scheduler: [
                        ws.status.name for ws in dask_scheduler.workers.values()
                    ]
                )
            )
            time.sleep(0.1)
        result = handle.result()
        workers = result.metadata["memo"]["workers"]
        assert workers["evictions"] > 0
        assert workers["bytes"] <= workers["limit_bytes"]
        assert workers["limit_bytes"] == int(0.02 * 600 * 2**20)
        assert statuses == {"running"}


# --------------------------------------------------------------------------
# Threads


class _SlowCountingUtility(dv.Utility):
    """u(S) = sum of S; counts the calls that reach it, slowly."""

    def __init__(self) -> None:
        self.n, self.default = 50, 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def fingerprint(self) -> str:
        return "slow-counting"

    def evaluate(self, players: np.ndarray, stats: EvalStats) -> float:
        stats.n_evaluations += 1
        with self._lock:
            self.calls += 1
        time.sleep(0.0005)
        if len(players) == 3:
            stats.record_failure("ValueError: three")
            return self.default
        return float(np.sum(players))


def test_threads_hammering_the_same_keys_get_right_values_and_counts() -> None:
    inner = _SlowCountingUtility()
    memo = WorkerMemo(limit_bytes=10**7)
    utility = MemoizedUtility(inner, memo)
    coalitions = [np.arange(k) for k in range(1, 21)]
    n_threads, rounds = 8, 30
    per_thread = [EvalStats() for _ in range(n_threads)]
    wrong: list[tuple[int, float]] = []
    barrier = threading.Barrier(n_threads)

    def hammer(stats: EvalStats) -> None:
        barrier.wait()
        rng = np.random.default_rng()
        for _ in range(rounds):
            for k in rng.permutation(len(coalitions)):
                players = rng.permutation(coalitions[k])
                value = utility.evaluate(players, stats)
                expected = 0.0 if k + 1 == 3 else float(np.sum(coalitions[k]))
                if value != expected:
                    wrong.append((k, value))

    threads = [threading.Thread(target=hammer, args=(s,)) for s in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = EvalStats()
    for stats in per_thread:
        total += stats
    calls = n_threads * rounds * len(coalitions)
    assert not wrong
    assert total.n_evaluations == calls
    assert total.memo_hits + total.memo_misses == calls
    # every coalition reached the utility exactly once (the others waited)
    assert total.memo_misses == inner.calls == len(coalitions)
    assert total.n_failed == n_threads * rounds  # the failing coalition, every call
    assert total.failures == {"ValueError: three": n_threads * rounds}
    counters = memo.stats()
    assert (counters["hits"], counters["misses"]) == (
        total.memo_hits,
        total.memo_misses,
    )


def test_several_threads_per_worker_match_one_thread(client1: Client) -> None:
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=4,
            host="127.0.0.1",
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        utility = dv.FunctionUtility(failing_game, n=9)
        handles = [
            dv.ShapleyValuation(utility, sampler=dv.ExactSampler()).submit(
                client, samples_per_task=8
            )
            for _ in range(3)
        ]
        results = [h.result() for h in handles]
        reference = (
            dv.ShapleyValuation(utility, sampler=dv.ExactSampler())
            .fit(client1, memo=False, samples_per_task=8)
            .result_
        )
        assert reference is not None
        for result in results:
            assert _fingerprint_of(result) == _fingerprint_of(reference)
        counters = memo_stats(client)
        assert counters["hits"] + counters["misses"] == 3 * 2**9
        assert counters["misses"] == 2**9  # one thread evaluates, others wait


# --------------------------------------------------------------------------
# API details


def test_chains_with_warm_starts_bypass_the_memo_and_cold_chains_use_it() -> None:
    memo = WorkerMemo(limit_bytes=10**6)
    data = _data(6)
    cold = MemoizedUtility(dv.ModelUtility(LogisticRegression(max_iter=50), data), memo)
    assert type(cold.chain()) is UtilityChain
    assert cold.chain().utility is cold
    warm_inner = dv.ModelUtility(LogisticRegression(max_iter=50), data, warm_start=True)
    warm = MemoizedUtility(warm_inner, memo)
    chain = warm.chain()
    assert type(chain) is not UtilityChain
    stats = EvalStats()
    chain.evaluate(np.arange(3), stats)
    assert stats.memo_hits == stats.memo_misses == 0
    assert memo.stats()["entries"] == 0
    # everything else is the wrapped utility's
    assert warm.fingerprint() == warm_inner.fingerprint()
    assert warm.identity() == warm_inner.identity() != cold.identity()
    assert warm.data is data


def test_memo_config_is_checked() -> None:
    with pytest.raises(ValueError, match="memory_fraction"):
        MemoConfig(memory_fraction=0.9)
    with pytest.raises(ValueError, match="max_bytes"):
        MemoConfig(max_bytes=-1)
    assert MemoConfig(max_bytes=10**15).limit_for(2**30) == 2**29


def test_spill_without_lmdb_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(ImportError, match=r"daskval\[lmdb\]"):
        MemoConfig(spill=True)


def test_progress_and_metadata_report_the_memo(fresh: Client) -> None:
    utility = dv.FunctionUtility(square_root_game, n=6)
    dv.ShapleyValuation(utility, sampler=dv.ExactSampler()).fit(fresh)
    handle = dv.ShapleyValuation(utility, sampler=dv.ExactSampler()).submit(fresh)
    result = handle.result()
    assert handle.progress["memo_hits"] == 2**6
    memo = result.metadata["memo"]
    assert memo["enabled"] and memo["hits"] == 2**6 and memo["misses"] == 0
    assert memo["workers"]["workers"] == 2
    with pytest.raises(TypeError, match="memo must be"):
        dv.ShapleyValuation(utility, stop=dv.MaxSamples(2)).submit(fresh, memo="yes")  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_memo_benchmark_runs_at_smoke_size(tmp_path: Any) -> None:
    import json
    import subprocess
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "memo_bench.py"
    out = tmp_path / "memo.json"
    subprocess.run(
        [sys.executable, str(bench), "--smoke", "--json", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    report = json.loads(out.read_text())
    assert report["sequence"]["pairs"] and report["w1"]["pairs"]
    assert report["hit_rates"]


@pytest.mark.filterwarnings("ignore:four players")
def test_calls_whose_effects_overflow_the_table_are_not_stored_but_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import daskval.engine.memo as memo_module

    monkeypatch.setattr(memo_module, "_MAX_EFFECTS", 2)
    inner = dv.FunctionUtility(failing_game, n=9)
    memo = WorkerMemo(limit_bytes=10**6)
    utility = MemoizedUtility(inner, memo)
    coalitions = [np.arange(k) for k in range(9)]
    direct, first, second = EvalStats(), EvalStats(), EvalStats()
    values = [inner.evaluate(c, direct) for c in coalitions]
    assert [utility.evaluate(c, first) for c in coalitions] == values
    assert [utility.evaluate(c, second) for c in coalitions] == values
    for stats in (first, second):
        assert (stats.n_evaluations, stats.n_failed, stats.failures) == (
            direct.n_evaluations,
            direct.n_failed,
            direct.failures,
        )
        assert stats.warnings == direct.warnings
        assert stats.first_failure == direct.first_failure
    # failures at 4 odd sizes and at size 2 (NaN): five distinct effects, of
    # which the table takes two (a FunctionUtility does not collect warnings)
    assert memo.stats()["unstored"] == 2 * (5 - 2)
