"""Time to a fixed RMSE at W1's size: daskval's configurations vs pyDVL's TMC.

    python benchmarks/time_to_rmse.py                  # W1 size, 400000-call reference
    python benchmarks/time_to_rmse.py --smoke          # 12 points, seconds

1. A long-run reference: daskval permutation Shapley on a LocalCluster, in
   chunks of ``MaxEvaluations(100000)`` with seeds 1000, 1001, ... pooled
   (unbiased, the same estimator family pyDVL runs), each chunk cached under
   benchmarks/results/ with its standard errors, so a longer reference
   extends a shorter one. Permutation sampling is unbiased, so the
   reference's own error is its stderr.
2. Every contender (a fresh process each, BLAS pinned, workers started and
   warmed before the clock starts) runs with a stopping criterion that, at
   every check, computes the RMSE of the current estimate against the
   reference, corrected for the reference's own variance:
   ``sqrt(max(0, mean((v - ref)^2) - mean(ref_stderr^2)))``, and stops at the
   first check where it is at most the target (or at a time / call cap).
   The time to the target is the wall time from the call of ``fit`` to that
   check.
3. The table: each contender's time, calls and per-call cost to the target,
   and every daskval configuration's speed-up over the best pyDVL contender.

The default target is 0.75x the spread (sd) of the reference values: a
constant estimate u(N)/n scores 1x, so reaching the target means resolving
the differences between points. At W1's size the values are small and noisy
(sd ~3e-3, one permutation's marginals ~4e-2), so the reference must be long:
its RMS stderr should be at most half the target, which takes ~400k calls
(~10-15 minutes on two idle cores); the script warns when it is not. Timings
need an idle machine: check ``uptime`` and compare ratios within one run
only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from workloads import BLAS_ENV

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
MARKER = "TIME-TO-RMSE "
REFERENCE_SEED = 1000
CHUNK = 100_000  # calls per reference chunk (one seed each)
# default target: this fraction of the spread (sd) of the reference values.
# A constant estimate (u(N) / n for every point) has an RMSE of 1 x the spread,
# so a contender must resolve part of the differences between points.
TARGET_FRACTION = 0.75
RUNNERS = {"daskval": "ttr_daskval_runner.py", "pydvl": "ttr_pydvl_runner.py"}
# run by default; ttr_daskval_runner.py has more ("permutation warm", "stratified",
# "antithetic permutation")
DASKVAL_CONFIGS = ("permutation", "tmc", "tmc warm", "regression paired")
PYDVL_CONFIGS = ("permutation", "tmc")


def corrected_rmse(values: Any, reference: np.ndarray, ref_stderr: np.ndarray) -> float:
    """RMSE against the reference, less the reference's own variance."""
    mse = float(np.mean((np.asarray(values, dtype=float) - reference) ** 2))
    return float(np.sqrt(max(0.0, mse - float(np.mean(ref_stderr**2)))))


def chunk_path(n_train: int, n_test: int, seed: int, evaluations: int) -> Path:
    """Where one chunk of the reference (one seed, one budget) is cached."""
    return RESULTS / f"reference-w1-{n_train}x{n_test}-seed{seed}-{evaluations}.npz"


def merge_chunks(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, int]:
    """Independent permutation estimates pooled: values, stderr, permutations.

    Each chunk is a mean over its permutations; the pool weighs them by their
    permutation counts, and its variance is the weighted sum of theirs.
    """
    chunks = [np.load(p) for p in paths]
    counts = np.array([float(c["samples"]) for c in chunks])
    weights = counts / counts.sum()
    values = sum(w * c["values"] for w, c in zip(weights, chunks, strict=True))
    variance = sum(
        w**2 * c["stderr"] ** 2 for w, c in zip(weights, chunks, strict=True)
    )
    return np.asarray(values), np.sqrt(variance), int(counts.sum())


def emit(record: dict[str, Any]) -> None:
    """A runner's result, as one marked JSON line."""
    sys.stdout.write(MARKER + json.dumps(record) + "\n")
    sys.stdout.flush()


def runner_arguments(description: str) -> argparse.ArgumentParser:
    """The command line both runners share."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True)
    parser.add_argument("--n-train", type=int, required=True)
    parser.add_argument("--n-test", type=int, required=True)
    parser.add_argument("--reference", type=Path, default=None)
    parser.add_argument("--target", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--max-evaluations", type=int, default=10**7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=None, help="reference file")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The orchestrator's command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n-train", type=int, default=None, help="200; smoke: 12")
    parser.add_argument("--n-test", type=int, default=None, help="200; smoke: 50")
    parser.add_argument(
        "--reference-evaluations",
        type=int,
        default=None,
        help="utility calls of the reference run (400000; smoke: 4000)",
    )
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="RMSE to reach (default: 0.75 x the sd of the reference values)",
    )
    parser.add_argument("--max-seconds", type=float, default=None, help="per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--daskval", nargs="*", default=list(DASKVAL_CONFIGS))
    parser.add_argument("--pydvl", nargs="*", default=list(PYDVL_CONFIGS))
    parser.add_argument("--pydvl-python", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    small = {"n_train": 12, "n_test": 50, "reference_evaluations": 4000}
    large = {"n_train": 200, "n_test": 200, "reference_evaluations": 400000}
    for key, value in (small if args.smoke else large).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.max_seconds is None:
        args.max_seconds = 60.0 if args.smoke else 900.0
    if args.pydvl_python is None:
        venv = os.environ.get("DASKVAL_PYDVL_VENV") or str(REPO / ".venv-pydvl")
        args.pydvl_python = Path(venv) / "bin" / "python"
    return args


def run_runner(python: Path, runner: str, options: list[str], timeout: float) -> Any:
    """One runner in a fresh process with BLAS pinned: its record or an error."""
    env = {**os.environ, **BLAS_ENV, "PYTHONUNBUFFERED": "1"}
    command = [str(python), str(HERE / runner), *options]
    load = os.getloadavg()[0]
    try:
        done = subprocess.run(
            command, env=env, cwd=REPO, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [
        line[len(MARKER) :]
        for line in done.stdout.splitlines()
        if line.startswith(MARKER)
    ]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        return {"error": f"exit {done.returncode}", "stderr": tail}
    record = json.loads(lines[-1])
    record["load_before"], record["load_after"] = load, os.getloadavg()[0]
    return record


def ensure_reference(args: argparse.Namespace) -> Path:
    """The pooled reference of ``--reference-evaluations`` calls, cached in chunks.

    Chunks of at most ``CHUNK`` calls run with seeds 1000, 1001, ...; chunks
    already on disk are reused, so a longer reference extends a shorter one.
    """
    paths, left, seed = [], args.reference_evaluations, REFERENCE_SEED
    while left > 0:
        calls = min(CHUNK, left)
        path = chunk_path(args.n_train, args.n_test, seed, calls)
        if not path.exists():
            print(f"reference chunk: {calls} calls, seed {seed} ...", file=sys.stderr)
            options = [
                "--config", "reference", "--n-train", str(args.n_train),
                "--n-test", str(args.n_test), "--workers", str(args.workers),
                "--seed", str(seed), "--max-evaluations", str(calls),
                "--output", str(path),
            ]  # fmt: skip
            record = run_runner(Path(sys.executable), RUNNERS["daskval"], options, 1e5)
            if "error" in record:
                raise SystemExit(f"the reference run failed: {record}")
        paths.append(path)
        left, seed = left - calls, seed + 1
    values, stderr, samples = merge_chunks(paths)
    pooled = RESULTS / (
        f"reference-w1-{args.n_train}x{args.n_test}-{args.reference_evaluations}.npz"
    )
    np.savez(pooled, values=values, stderr=stderr, samples=samples)
    return pooled


def reference_warning(ref_stderr: float, target: float, calls: int) -> str | None:
    """A warning when the reference is too noisy to judge the target by."""
    if ref_stderr <= target / 2:
        return None
    needed = int(calls * (2 * ref_stderr / target) ** 2)
    return (
        f"the reference's RMS stderr {ref_stderr:.2e} is more than half the target"
        f" {target:.2e}: pass --reference-evaluations {needed} or more"
    )


def contender_runs(args: argparse.Namespace, reference: Path, target: float) -> Any:
    """Every contender once, in turn; their records by name."""
    common = [
        "--n-train", str(args.n_train), "--n-test", str(args.n_test),
        "--reference", str(reference), "--target", repr(target),
        "--max-seconds", str(args.max_seconds), "--workers", str(args.workers),
    ]  # fmt: skip
    jobs = [
        (f"daskval {c}", Path(sys.executable), "ttr_daskval_runner.py", c)
        for c in args.daskval
    ] + [
        (f"pydvl {c}", args.pydvl_python, "ttr_pydvl_runner.py", c) for c in args.pydvl
    ]
    records = {}
    for name, python, runner, config in jobs:
        if not python.exists():
            records[name] = {"error": f"{python} is missing"}
            continue
        timeout = args.max_seconds * 2 + 120
        record = run_runner(python, runner, ["--config", config, *common], timeout)
        records[name] = record
        print(f"{name:28} {summary_line(record)}", file=sys.stderr, flush=True)
    return records


def summary_line(record: dict[str, Any]) -> str:
    """One progress line."""
    if "error" in record:
        return f"FAILED: {record['error']}\n{record.get('stderr', '')}"
    reached = "reached" if record["reached"] else "NOT reached"
    return (
        f"{reached} {record['rmse']:.2e} after {record['seconds']:.1f} s,"
        f" {record['evaluations']} calls (load {record['load_before']:.1f})"
    )


def speedups(records: dict[str, Any]) -> dict[str, float]:
    """Time of the fastest pyDVL contender over each daskval one (both reached)."""
    pydvl = [
        r["seconds"]
        for name, r in records.items()
        if name.startswith("pydvl") and r.get("reached")
    ]
    if not pydvl:
        return {}
    return {
        name: min(pydvl) / r["seconds"]
        for name, r in records.items()
        if name.startswith("daskval") and r.get("reached")
    }


def format_report(report: dict[str, Any]) -> str:
    """The printed table."""
    lines = [
        f"time to RMSE <= {report['target']:.2e} (reference: "
        f"{report['reference_evaluations']} calls, RMS stderr "
        f"{report['reference_stderr']:.2e}, sd of its values "
        f"{report['reference_spread']:.2e}; {report['n_train']} train points)",
        f"{'contender':28} {'reached':>7} {'seconds':>8} {'calls':>8} {'rmse':>9}"
        f" {'ms/call':>8} {'speed-up':>8}",
    ]
    ups = report["speedups"]
    for name, r in report["contenders"].items():
        if "error" in r:
            lines.append(f"{name:28} FAILED: {r['error']}")
            continue
        per_call = 1e3 * r["seconds"] / max(1, r["evaluations"])
        up = f"{ups[name]:.2f}" if name in ups else "-"
        lines.append(
            f"{name:28} {'yes' if r['reached'] else 'no':>7} {r['seconds']:8.1f}"
            f" {r['evaluations']:8d} {r['rmse']:9.2e} {per_call:8.2f} {up:>8}"
        )
    best = max(ups.values()) if ups else None
    verdict = (
        "-" if best is None else f"{best:.2f} ({'met' if best >= 3 else 'NOT met'})"
    )
    lines.append(f"target: daskval's fastest >= 3x faster than pyDVL's: {verdict}")
    if report["reference_warning"]:
        lines.append(f"WARNING: {report['reference_warning']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Reference, contenders, table; 0 when every contender ran."""
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    path = ensure_reference(args)
    stored = np.load(path)
    ref_stderr = float(np.sqrt(np.mean(stored["stderr"] ** 2)))
    spread = float(np.std(stored["values"]))
    target = args.target if args.target is not None else TARGET_FRACTION * spread
    warning = reference_warning(ref_stderr, target, args.reference_evaluations)
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
    records = contender_runs(args, path, target)
    report = {
        "started": started.isoformat(timespec="seconds"),
        "n_train": args.n_train,
        "n_test": args.n_test,
        "workers": args.workers,
        "reference_evaluations": args.reference_evaluations,
        "reference_stderr": ref_stderr,
        "reference_spread": spread,
        "reference_warning": warning,
        "target": target,
        "load_average": os.getloadavg(),
        "contenders": records,
        "speedups": speedups(records),
    }
    print(format_report(report))
    output = args.output or RESULTS / (
        f"time-to-rmse-{started.strftime('%Y%m%dT%H%M%SZ')}"
        f"{'-smoke' if args.smoke else ''}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"results written to {output}")
    return 1 if any("error" in r for r in records.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
