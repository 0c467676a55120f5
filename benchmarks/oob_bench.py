"""Data-OOB at 100k points against fitting the same bootstrap ensemble bare.

The bare fit is scikit-learn's ``BaggingClassifier(estimator=model,
n_estimators=B, n_jobs=2)``: B bootstraps of the 100k training points, each
fitted with its draw counts as ``sample_weight`` (the model accepts them), and
nothing else. daskval's Data-OOB fits the same number of bootstraps of the
same model on a two-worker LocalCluster (one thread each) and also predicts
and scores each bootstrap's out-of-bag points, then sums the per-point
statistics. Target (issue 5): daskval <= 1.2x the wall time of the bare fit.

Each contender runs in a fresh child process (so no process pool or cluster of
one contender is alive during the other's run), in alternating order across
pairs. In each child, the pool (loky's) or the cluster is started and warmed
first and timed separately; the figures compared are of the fit alone:

- wall seconds;
- CPU seconds of the child and all its descendants (:mod:`cpumeter`: on a
  shared machine the steadier figure);
- peak memory of the child and all its descendants during the fit, sampled
  every 0.1 s from ``/proc``: the sum of RSS (shared pages counted once per
  process), and the sum of PSS (shared pages split between processes, i.e.
  the real footprint), with the same sums just before the fit.

The model is a full-depth ``DecisionTreeClassifier`` (~2.2 s of CPU per fit
on 100k x 20), 40 bootstraps: ~45 s of fitting on two idle cores. What daskval
adds: the data's broadcast to the workers, the first bootstrap run alone to
time the tasks (one core idles for one fit), the out-of-bag predictions, and
the cluster's own background work (a few percent of a core).

daskval runs with ``weighting="auto"`` (counts as ``sample_weight``, as
BaggingClassifier does), and, as a second row, ``weighting="repeat"`` (the
drawn rows repeated: the definition, more rows to fit).

Usage::

    python benchmarks/oob_bench.py                # 100k points, ~3 minutes idle
    python benchmarks/oob_bench.py --pairs 3      # medians over 3 pairs
    python benchmarks/oob_bench.py --smoke        # 2000 points, seconds

Results go to ``benchmarks/results/data-oob-<UTC time>[-smoke].json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cpumeter import CpuMeter
from rssmeter import RssMeter
from workloads import BLAS_ENV, SEED, make_data, versions

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MARKER = "OOB-BENCH "
CONTENDERS = ("bagging", "daskval", "daskval-repeat")
TARGET_RATIO = 1.2


# --------------------------------------------------------------------------
# one contender, in a child process


def make_model(max_depth: int | None) -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=max_depth, random_state=SEED)


def measured(fit: Any) -> tuple[dict[str, Any], Any]:
    """Run ``fit()``; its wall and CPU seconds and peak memory, and its output."""
    before = RssMeter()
    before.sample()
    memory = RssMeter(interval=0.1).start()
    meter = CpuMeter().start()
    begin = time.perf_counter()
    out = fit()
    wall = time.perf_counter() - begin
    cpu = meter.stop()
    figures = {
        "wall_seconds": wall,
        "cpu_seconds": cpu["cpu_seconds"],
        "processes": cpu["processes"],
        "rss_before_mb": before.peak / 2**20,
        "pss_before_mb": before.peak_pss / 2**20,
    }
    peak = memory.stop()
    figures["peak_rss_mb"] = peak["peak_rss_bytes"] / 2**20
    figures["peak_pss_mb"] = peak["peak_pss_bytes"] / 2**20
    return figures, out


def run_bagging(args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.ensemble import BaggingClassifier

    x, y, _, _ = make_data(args.n, args.n_test)
    model = make_model(args.max_depth)
    begin = time.perf_counter()
    # start loky's worker pool (kept for later fits in this process)
    BaggingClassifier(estimator=model, n_estimators=2, n_jobs=2).fit(x[:200], y[:200])
    startup = time.perf_counter() - begin
    bagging = BaggingClassifier(
        estimator=model, n_estimators=args.estimators, n_jobs=2, random_state=SEED
    )
    figures, _ = measured(lambda: bagging.fit(x, y))
    return {**figures, "startup_seconds": startup}


def run_daskval(args: argparse.Namespace, weighting: str) -> dict[str, Any]:
    import numpy as np
    from distributed import Client, LocalCluster

    import daskval as dv
    from daskval.methods.oob import DataOOBValuation

    x, y, x_test, y_test = make_data(args.n, args.n_test)
    data = dv.Dataset(x, y, x_test, y_test)
    model = make_model(args.max_depth)
    begin = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env=dict(BLAS_ENV),
    )
    client = Client(cluster, set_as_default=False)
    try:
        # warm the workers as the bare fit warms loky's (imports, first
        # tasks) with a tiny run; the timed run still broadcasts its data
        tiny = dv.Dataset(x[:200], y[:200], x_test[:50], y_test[:50])
        DataOOBValuation(tiny, model, n_estimators=2, seed=SEED).fit(client=client)
        startup = time.perf_counter() - begin
        valuation = DataOOBValuation(
            data,
            model,
            n_estimators=args.estimators,
            seed=SEED,
            weighting=weighting,
        )
        figures, fitted = measured(lambda: valuation.fit(client=client))
        result = fitted.result_
    finally:
        client.close()
        cluster.close()
    return {
        **figures,
        "startup_seconds": startup,
        "weighting": valuation.weighting,
        "n_samples": result.n_samples,
        "n_failed": result.n_failed,
        "min_count": int(result.counts.min()),
        "never_out_of_bag": int(np.isnan(result.values).sum()),
        "mean_value": float(np.nanmean(result.values)),
        "task_bytes": result.metadata["task_bytes"],
        "compute_seconds": result.metadata["compute_seconds"],
    }


def child(args: argparse.Namespace) -> int:
    os.environ.update(BLAS_ENV)
    if args.contender == "bagging":
        record = run_bagging(args)
    elif args.contender == "daskval":
        record = run_daskval(args, "auto")
    else:
        record = run_daskval(args, "repeat")
    print(MARKER + json.dumps({"contender": args.contender, **record}), flush=True)
    return 0


# --------------------------------------------------------------------------
# the parent: pairs of children, ratios, the report


def run_child(args: argparse.Namespace, contender: str) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--contender",
        contender,
        "--n",
        str(args.n),
        "--n-test",
        str(args.n_test),
        "--estimators",
        str(args.estimators),
        "--max-depth",
        str(args.max_depth),
    ]
    env = {**os.environ, **BLAS_ENV}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        return {"contender": contender, "error": done.stderr[-3000:]}
    record: dict[str, Any] = json.loads(lines[-1][len(MARKER) :])
    return record


def median_of(runs: list[dict[str, Any]], field: str) -> float | None:
    values = [r[field] for r in runs if field in r]
    return statistics.median(values) if values else None


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per contender, and each daskval row's ratios to the bare fit."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_name.setdefault(record["contender"], []).append(record)
    fields = ("wall_seconds", "cpu_seconds", "peak_rss_mb", "peak_pss_mb")
    medians = {
        name: {field: median_of(runs, field) for field in fields}
        for name, runs in by_name.items()
    }
    ratios: dict[str, dict[str, float]] = {}
    bare = medians.get("bagging", {})
    for name in ("daskval", "daskval-repeat"):
        mine = medians.get(name)
        if not mine:
            continue
        ratios[f"{name}/bagging"] = {
            field: mine_value / bare_value
            for field in fields
            if (mine_value := mine.get(field)) and (bare_value := bare.get(field))
        }
    return {"medians": medians, "ratios": ratios}


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"Data-OOB, {report['n']} points x 20 features, {report['estimators']} "
        f"bootstraps of DecisionTreeClassifier(max_depth={report['max_depth']}), "
        f"2 processes; load average before: {report['load_average'][0]:.2f}",
        f"{'contender':<16}{'wall s':>9}{'cpu s':>9}{'peak RSS MB':>13}"
        f"{'peak PSS MB':>13}",
    ]
    for name, m in report["summary"]["medians"].items():
        lines.append(
            f"{name:<16}{m['wall_seconds']:>9.2f}{m['cpu_seconds']:>9.2f}"
            f"{m['peak_rss_mb']:>13.0f}{m['peak_pss_mb']:>13.0f}"
        )
    for name, ratio in report["summary"]["ratios"].items():
        wall = ratio.get("wall_seconds", float("nan"))
        verdict = "meets" if wall <= TARGET_RATIO else "misses"
        lines.append(
            f"{name}: wall {wall:.3f}, cpu {ratio.get('cpu_seconds', float('nan')):.3f}"
            f", peak PSS {ratio.get('peak_pss_mb', float('nan')):.2f} "
            f"({verdict} the {TARGET_RATIO}x target)"
        )
    for record in report["runs"]:
        if "error" in record:
            lines.append(f"ERROR in {record['contender']}:\n{record['error']}")
    return "\n".join(lines)


def parent(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.timezone.utc)
    load = os.getloadavg()
    records = []
    for pair in range(args.pairs):
        order = args.contenders if pair % 2 == 0 else args.contenders[::-1]
        for contender in order:
            record = run_child(args, contender)
            record["pair"] = pair
            records.append(record)
            print(json.dumps(record)[:300], file=sys.stderr)
    report = {
        "benchmark": "data-oob",
        "started": started.isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "n": args.n,
        "n_test": args.n_test,
        "features": 20,
        "estimators": args.estimators,
        "model": f"DecisionTreeClassifier(max_depth={args.max_depth})",
        "max_depth": args.max_depth,
        "pairs": args.pairs,
        "workers": 2,
        "target_ratio": TARGET_RATIO,
        "load_average": load,
        "load_average_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "blas_env": BLAS_ENV,
        "versions": versions(
            "daskval", "dask", "distributed", "scikit-learn", "numpy", "scipy"
        ),
        "runs": records,
        "summary": summarize([r for r in records if "error" not in r]),
    }
    print(format_report(report))
    output = args.output or RESULTS / (
        f"data-oob-{started.strftime('%Y%m%dT%H%M%SZ')}"
        f"{'-smoke' if args.smoke else ''}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"results written to {output}")
    return 1 if any("error" in r for r in records) else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=None, help="100000; smoke: 2000")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--estimators", type=int, default=None, help="40; smoke: 4")
    parser.add_argument(
        "--max-depth",
        type=lambda s: None if s in ("None", "none") else int(s),
        default=None,
        help="depth of the trees (default: unlimited)",
    )
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument(
        "--contenders",
        type=lambda s: s.split(","),
        default=list(CONTENDERS),
        help=f"comma-separated, of {','.join(CONTENDERS)} (default: all)",
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("-o", "--output", type=Path, default=None)
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")
    if args.n is None:
        args.n = 2000 if args.smoke else 100_000
    if args.estimators is None:
        args.estimators = 4 if args.smoke else 40
    if args.smoke:
        args.n_test = min(args.n_test, 200)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return child(args) if args.contender else parent(args)


if __name__ == "__main__":
    sys.exit(main())
