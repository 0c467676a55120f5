"""Exact KNN-Shapley at scale: 1M training x 1k test points, d=20, on 2 cores.

    python benchmarks/knn_scale.py                   # 1 000 000 x 1 000, 2 workers
    python benchmarks/knn_scale.py --n-train 100000 --n-test 200   # smaller
    python benchmarks/knn_scale.py --method soft     # or regression, threshold

``--method`` picks the member of the KNN family: ``knn`` (KNN-Shapley),
``soft`` (soft-label), ``regression`` (the targets are then ``x[:, 0] +
y``, a continuous target from the same data) or ``threshold`` (radius
``--threshold``); the ideal is that of KNN-Shapley in every case.

Synthetic data made here: ``make_classification(n_samples=n_train + n_test,
n_features=20, n_informative=10, n_redundant=5, random_state=42)``, the first
``n_train`` rows for training. daskval runs on its own LocalCluster (worker
processes, one thread each, BLAS pinned; start-up timed apart) and is timed
from building the valuation to its result; its peak memory is the summed RSS
(and PSS) of this process and all its descendants over that stretch
(rssmeter.py). Targets (issue 5): <= 90 s and <= 4 GB on 2 cores.

The ideal: the bare vectorised numpy computation of ideal_runner.py, one
process, timed on the first ``--ideal-points`` test points in a subprocess and
extrapolated to all of them (CPU seconds per test point x n_test / workers):
at this size the whole of it would take as long as the benchmark itself.
Quote the ratio, measured in one run, not the absolute times of two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from cpumeter import CpuMeter
from rssmeter import RssMeter
from workloads import BLAS_ENV, SEED, checksum, versions

HERE = Path(__file__).resolve().parent
TARGET_SECONDS, TARGET_BYTES = 90.0, 4 * 2**30


def make_data(n_train: int, n_test: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n_train + n_test,
        n_features=20,
        n_informative=10,
        n_redundant=5,
        random_state=SEED,
    )
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def make_valuation(args: argparse.Namespace, arrays: tuple[np.ndarray, ...]) -> Any:
    """The valuation of ``--method`` on the data."""
    import daskval as dv

    if args.method == "regression":
        x_train, y_train, x_test, y_test = arrays
        targets = (x_train[:, 0] + y_train, x_test[:, 0] + y_test)
        data = dv.Dataset(x_train, targets[0], x_test, targets[1])
        return dv.KNNRegressionShapleyValuation(data, k=args.k)
    data = dv.Dataset(*arrays)
    if args.method == "soft":
        return dv.SoftLabelKNNShapleyValuation(data, k=args.k)
    if args.method == "threshold":
        return dv.ThresholdKNNShapleyValuation(data, args.threshold)
    return dv.KNNShapleyValuation(data, k=args.k)


def run_daskval(args: argparse.Namespace) -> dict[str, Any]:
    """One timed valuation on a fresh daskval LocalCluster."""
    from daskval.engine.cluster import local_cluster

    arrays = make_data(args.n_train, args.n_test)
    begin = time.perf_counter()
    context = local_cluster(args.workers)
    client = context.__enter__()
    try:
        client.wait_for_workers(args.workers)
        client.run(__import__, "daskval.methods.knn")
        startup = time.perf_counter() - begin
        memory = RssMeter().start()
        meter = CpuMeter().start()
        begin = time.perf_counter()
        valuation = make_valuation(args, arrays)
        result = valuation.fit(client=client).result_
        wall = time.perf_counter() - begin
        cpu = meter.stop()
        peak = memory.stop()
    finally:
        context.__exit__(None, None, None)
    assert result is not None
    return {
        "wall_seconds": wall,
        "startup_seconds": startup,
        "cpu_seconds": cpu["cpu_seconds"],
        "cpu_client_scheduler_seconds": cpu["cpu_own_seconds"],
        "cpu_workers_seconds": cpu["cpu_children_seconds"],
        **peak,
        "n_evaluations": int(result.n_evaluations),
        "status": result.status,
        "engine_elapsed_seconds": result.metadata.get("elapsed_seconds"),
        "compute_seconds": result.metadata.get("compute_seconds"),
        "values_checksum": checksum(result.values),
        "values_sum": float(result.values.sum()),
    }


def ideal_child(args: argparse.Namespace) -> None:
    """(In a subprocess) the ideal on the first test points; prints JSON."""
    from ideal_runner import knn_shapley

    x_train, y_train, x_test, y_test = make_data(args.n_train, args.n_test)
    points = slice(0, args.ideal_points)
    meter = CpuMeter().start()
    begin = time.perf_counter()
    knn_shapley((x_train, y_train, x_test[points], y_test[points]), args.k, block=8)
    wall = time.perf_counter() - begin
    print(
        json.dumps({"wall_seconds": wall, "cpu_seconds": meter.stop()["cpu_seconds"]})
    )


def run_ideal(args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--ideal-child",
        "--n-train",
        str(args.n_train),
        "--n-test",
        str(args.n_test),
        "--ideal-points",
        str(args.ideal_points),
        "--k",
        str(args.k),
    ]
    env = {**os.environ, **BLAS_ENV}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    per_point = measured["cpu_seconds"] / args.ideal_points
    measured["cpu_seconds_per_test_point"] = per_point
    measured["ideal_parallel_seconds"] = per_point * args.n_test / args.workers
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=1_000_000)
    parser.add_argument("--n-test", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument(
        "--method", choices=["knn", "soft", "regression", "threshold"], default="knn"
    )
    parser.add_argument("--threshold", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ideal-points", type=int, default=20)
    parser.add_argument("--no-ideal", action="store_true")
    parser.add_argument("--ideal-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.ideal_child:
        ideal_child(args)
        return 0
    for key, value in BLAS_ENV.items():
        os.environ[key] = value  # this process and the workers it starts
    load_before = os.getloadavg()
    ideal = None if args.no_ideal else run_ideal(args)
    daskval = run_daskval(args)
    report = {
        "n_train": args.n_train,
        "n_test": args.n_test,
        "k": args.k,
        "method": args.method,
        "threshold": args.threshold if args.method == "threshold" else None,
        "workers": args.workers,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "daskval": daskval,
        "ideal": ideal,
        "versions": versions("daskval", "dask", "distributed", "numpy", "scikit-learn"),
    }
    gb = daskval["peak_rss_bytes"] / 2**30
    print(
        f"KNN-Shapley ({args.method}) {args.n_train} x {args.n_test}, d=20,"
        f" k={args.k},"
        f" {args.workers} workers (load {load_before[0]:.1f} -> "
        f"{report['load_after'][0]:.1f})\n"
        f"  daskval: wall {daskval['wall_seconds']:.1f} s (start-up"
        f" {daskval['startup_seconds']:.1f} s apart), CPU {daskval['cpu_seconds']:.1f}"
        f" s (workers {daskval['cpu_workers_seconds']:.1f} s), peak RSS {gb:.2f} GB"
        f" (PSS {daskval['peak_pss_bytes'] / 2**30:.2f} GB)"
    )
    if ideal is not None:
        ratio = daskval["wall_seconds"] / ideal["ideal_parallel_seconds"]
        report["daskval_over_ideal"] = ratio
        print(
            f"  ideal (numpy, {args.ideal_points} test points, extrapolated):"
            f" {ideal['cpu_seconds_per_test_point'] * 1e3:.1f} CPU-ms per test"
            f" point, {ideal['ideal_parallel_seconds']:.1f} s on"
            f" {args.workers} cores -> daskval/ideal {ratio:.2f}"
        )
    met_time = daskval["wall_seconds"] <= TARGET_SECONDS
    met_memory = daskval["peak_rss_bytes"] <= TARGET_BYTES
    print(
        f"  targets: wall <= {TARGET_SECONDS:.0f} s {'met' if met_time else 'NOT met'};"
        f" peak RSS <= {TARGET_BYTES / 2**30:.0f} GB"
        f" {'met' if met_memory else 'NOT met'}"
    )
    output = args.output or HERE / "results" / time.strftime(
        "knn-scale-%Y%m%dT%H%M%SZ.json", time.gmtime()
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
