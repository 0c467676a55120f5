"""The workers' memo: what it saves, what it costs, and where it cannot help.

One invocation starts one daskval LocalCluster and runs, in paired rounds
(the order within a pair alternates, so drift in the machine's load hits both
sides alike):

* **sequence**: exact Shapley, then exact Banzhaf, then LOO on one 12-player
  ModelUtility (LogisticRegression, benchmarks.md's data), with the memo on
  (emptied first) and with ``memo=False``. Target: >= 2.5x faster with it.
* **W1**: permutation Shapley, 200 points, LogisticRegression(max_iter=500),
  20 permutations, with the memo on (emptied first) and off: the memo's
  overhead when it rarely hits. Target: median(on / off) <= 1.05.
* **spill**: the sequence with a memo bound too small for its 4096 entries,
  with and without disk spill (LMDB), against no memo.
* **hit rates** where the memo cannot help (large n, random subsets), with a
  cheap function utility (hit rates depend on the coalitions only).

Wall ratios are reported next to CPU-time ratios of the whole cluster
(:mod:`cpumeter`): on a shared machine the CPU figures are the steadier ones.

    /work/venv/bin/python benchmarks/memo_bench.py            # full
    /work/venv/bin/python benchmarks/memo_bench.py --smoke    # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from cpumeter import CpuMeter
from workloads import BLAS_ENV, SEED, make_data, make_model

import daskval as dv
from daskval.engine.memo import MemoConfig, clear_memo, ensure_memo


def count_game(players: np.ndarray) -> float:
    """A microsecond utility: hit rates depend on the coalitions alone."""
    return float(len(players))


def timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process and its workers, result)."""
    meter = CpuMeter().start()
    begin = time.perf_counter()
    out = run()
    wall = time.perf_counter() - begin
    return wall, meter.stop()["cpu_seconds"], out


def model_utility(n: int) -> dv.ModelUtility:
    x_train, y_train, x_test, y_test = make_data(n, 200)
    data = dv.Dataset(x_train, y_train, x_test, y_test)
    return dv.ModelUtility(make_model("logistic"), data, scoring="accuracy")


def sequence(client: Any, utility: dv.Utility, memo: bool | MemoConfig) -> dict:
    """Exact Shapley, exact Banzhaf, LOO; per-run memo figures."""
    runs = [
        dv.ShapleyValuation(utility, sampler=dv.ExactSampler()),
        dv.BanzhafValuation(utility, sampler=dv.ExactSampler()),
        dv.LOOValuation(utility),
    ]
    results = [v.fit(client, memo=memo).result_ for v in runs]
    return {
        "evaluations": sum(r.n_evaluations for r in results),
        "hits": sum(r.metadata["memo"]["hits"] for r in results),
        "misses": sum(r.metadata["memo"]["misses"] for r in results),
    }


def w1(client: Any, utility: dv.Utility, memo: bool, permutations: int) -> dict:
    valuation = dv.ShapleyValuation(
        utility,
        sampler=dv.PermutationSampler(),
        stop=dv.MaxSamples(permutations),
        seed=SEED,
    ).fit(client, memo=memo)
    meta = valuation.result_.metadata
    return {
        "hits": meta["memo"]["hits"],
        "misses": meta["memo"]["misses"],
        "compute_seconds": meta["compute_seconds"],
    }


def paired(
    client: Any,
    pairs: int,
    on: Callable[[], Any],
    off: Callable[[], Any],
) -> dict[str, Any]:
    """``pairs`` rounds of (on, off), alternating which goes first; the memo
    is emptied before every run."""
    rows = []
    for i in range(pairs):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        row: dict[str, Any] = {"first": order[0]}
        for side in order:
            clear_memo(client)
            wall, cpu, out = timed(on if side == "on" else off)
            row[side] = {"wall": wall, "cpu": cpu, **out}
        rows.append(row)
        print(
            f"  pair {i}: on {row['on']['wall']:.2f} s, off {row['off']['wall']:.2f} s",
            flush=True,
        )
    return {
        "pairs": rows,
        "median_wall_ratio_off_on": statistics.median(
            r["off"]["wall"] / r["on"]["wall"] for r in rows
        ),
        "median_cpu_ratio_off_on": statistics.median(
            r["off"]["cpu"] / r["on"]["cpu"] for r in rows
        ),
    }


def hit_rates(client: Any, sizes: list[int], samples: int) -> list[dict]:
    """Hit rates of single runs where the memo meets few repeated coalitions."""
    out = []
    for n in sizes:
        utility = dv.FunctionUtility(count_game, n=n)
        for name, valuation in (
            (
                "permutation Shapley",
                dv.ShapleyValuation(
                    utility, stop=dv.MaxSamples(max(2, samples // n)), seed=SEED
                ),
            ),
            (
                "MSR Banzhaf",
                dv.BanzhafValuation(
                    utility,
                    sampler=dv.MSRSampler(),
                    stop=dv.MaxSamples(samples),
                    seed=SEED,
                ),
            ),
        ):
            clear_memo(client)
            result = valuation.fit(client).result_
            meta = result.metadata["memo"]
            out.append(
                {
                    "n": n,
                    "method": name,
                    "evaluations": int(result.n_evaluations),
                    "hit_rate": meta["hit_rate"],
                }
            )
            print(f"  n={n:>6} {name:<20} {out[-1]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 pair")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--sections",
        default="sequence,w1,spill,hits",
        help="comma-separated subset of sequence,w1,spill,hits (hit rates do "
        "not depend on the machine's load; the timings do)",
    )
    args = parser.parse_args()
    os.environ.update(BLAS_ENV)
    smoke = args.smoke
    pairs = 1 if smoke else args.pairs
    n_seq, n_w1, perms = (6, 16, 2) if smoke else (12, 200, 20)
    sizes, samples = ([50], 200) if smoke else ([12, 200, 1000, 10_000], 20_000)

    from daskval.engine.cluster import local_cluster

    report: dict[str, Any] = {
        "load_before": os.getloadavg(),
        "smoke": smoke,
        "workers": args.workers,
    }
    sections = set(args.sections.split(","))
    with local_cluster(args.workers) as client:
        ensure_memo(client, MemoConfig())
        seq_utility = model_utility(n_seq)
        if "sequence" in sections:
            print(f"sequence (n={n_seq}): exact Shapley, Banzhaf, LOO", flush=True)
            report["sequence"] = paired(
                client,
                pairs,
                lambda: sequence(client, seq_utility, True),
                lambda: sequence(client, seq_utility, False),
            )
        if "w1" in sections:
            w1_utility = model_utility(n_w1)
            print(f"W1 (n={n_w1}, {perms} permutations)", flush=True)
            report["w1"] = w1_report(
                paired(
                    client,
                    pairs,
                    lambda: w1(client, w1_utility, True, perms),
                    lambda: w1(client, w1_utility, False, perms),
                )
            )
        if "spill" in sections:
            report["spill"] = spill_runs(client, seq_utility, n_seq)
            ensure_memo(client, MemoConfig())
        if "hits" in sections:
            print("hit rates where the memo cannot help", flush=True)
            report["hit_rates"] = hit_rates(client, sizes, samples)
    report["load_after"] = os.getloadavg()
    summarise(report)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


def w1_report(figures: dict[str, Any]) -> dict[str, Any]:
    """Paired W1 figures with the memo's overhead (on / off - 1)."""
    figures["median_wall_overhead"] = 1 / figures["median_wall_ratio_off_on"] - 1
    figures["median_cpu_overhead"] = 1 / figures["median_cpu_ratio_off_on"] - 1
    return figures


def spill_runs(client: Any, utility: dv.Utility, n: int) -> dict[str, Any]:
    """The sequence with a bound of a quarter of its entries: spill on vs off."""
    bound = (2**n // 4) * 256 // 2  # per worker (2 workers by default)
    out: dict[str, Any] = {"bound_bytes_per_worker": bound}
    print(f"spill: sequence with a {bound} byte memo per worker", flush=True)
    try:
        import lmdb  # noqa: F401
    except ImportError:
        out["skipped"] = "lmdb is not installed (pip install 'daskval[lmdb]')"
        return out
    for name, memo in (
        ("memory only", MemoConfig(max_bytes=bound)),
        ("spill", MemoConfig(max_bytes=bound, spill=True)),
        ("no memo", False),
    ):
        if memo is not False:
            ensure_memo(client, memo)
        clear_memo(client)
        wall, cpu, figures = timed(lambda m=memo: sequence(client, utility, m))
        out[name] = {"wall": wall, "cpu": cpu, **figures}
        print(f"  {name:<12} {wall:.2f} s, {figures}", flush=True)
    return out


def summarise(report: dict[str, Any]) -> None:
    print()
    print(f"load average before/after: {report['load_before']} {report['load_after']}")
    if "sequence" in report:
        seq = report["sequence"]
        print(
            "sequence speed-up with the memo (median of pairs): "
            f"wall {seq['median_wall_ratio_off_on']:.2f}x, "
            f"CPU {seq['median_cpu_ratio_off_on']:.2f}x   (target >= 2.5x)"
        )
        # the ceiling: utility calls without the memo per call that reached
        # the utility with it (exact Banzhaf repeats exact Shapley's 2^n
        # coalitions; LOO adds only n + 1)
        row = seq["pairs"][0]
        print(
            "  ceiling (calls without / calls reaching the utility with): "
            f"{row['off']['evaluations'] / max(1, row['on']['misses']):.2f}x"
        )
    if "w1" in report:
        w = report["w1"]
        print(
            "W1 overhead of the memo (median of pairs): "
            f"wall {100 * w['median_wall_overhead']:+.1f}%, "
            f"CPU {100 * w['median_cpu_overhead']:+.1f}%   (target <= 5%)"
        )
    for row in report.get("hit_rates", []):
        print(
            f"hit rate, n={row['n']}, {row['method']}: {100 * row['hit_rate']:.2f}%"
            f" of {row['evaluations']} evaluations"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
