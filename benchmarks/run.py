"""Run daskval, pyDVL and the ideal loop side by side; print medians and ratios.

    python benchmarks/run.py --workloads W1 W2 W3 W4 --repeats 3 [--pydvl-python PATH]
    python benchmarks/run.py --smoke            # tiny budgets, one repeat

Every run of every contender is a fresh process (``python <runner>.py ...``)
with BLAS pinned to one thread; in each repeat the contenders take turns (the
order rotates between repeats), so a noisy neighbour hits them alike. pyDVL
runs with the python of its own environment (benchmarks/setup_pydvl_venv.sh);
this process never imports it, nor daskval. The table goes to stdout and a
JSON file to benchmarks/results/ (see report.py for the ratios).

W3 (exact KNN-Shapley) also has absolute targets: daskval's wall time and its
peak memory (summed RSS of all its processes, see rssmeter.py); every
contender that reports a peak has it printed under the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import format_workload, summarise_workload
from workloads import BLAS_ENV, RESULT_MARKER, WORKLOADS, Workload

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
IMPLEMENTED_METHODS = {"permutation", "msr", "knn"}
# workload -> (contender, wall seconds at most, peak summed RSS bytes at most)
ABSOLUTE_TARGETS = {"W3": ("daskval", 3.0, 0.5 * 2**30)}


@dataclass(frozen=True)
class Contender:
    """How to run one contender: which runner, with which python."""

    name: str
    runner: str
    env: str  # "daskval" (this interpreter) or "pydvl" (pyDVL's environment)
    parallel: bool  # runs on the --workers processes, else on one
    args: tuple[str, ...] = ()
    diagnostic: bool = False
    only: tuple[str, ...] | None = None  # workloads it runs on by default


CONTENDERS = {
    c.name: c
    for c in (
        Contender("ideal", "ideal_runner.py", "daskval", parallel=False),
        Contender("daskval", "daskval_runner.py", "daskval", parallel=True),
        Contender("pydvl", "pydvl_runner.py", "pydvl", parallel=True),
        Contender("pydvl_1job", "pydvl_runner.py", "pydvl", False, only=("W1", "W2")),
        Contender(
            "daskval_seq",
            "daskval_runner.py",
            "daskval",
            parallel=False,
            args=("--mode", "sequential"),
            diagnostic=True,
        ),
        Contender(
            "ideal_pydvl_env",
            "ideal_runner.py",
            "pydvl",
            parallel=False,
            diagnostic=True,
        ),
    )
}


def default_pydvl_python() -> Path:
    """pyDVL's python: $DASKVAL_PYDVL_VENV, else <repo>/.venv-pydvl."""
    venv = os.environ.get("DASKVAL_PYDVL_VENV") or str(REPO / ".venv-pydvl")
    return Path(venv) / "bin" / "python"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workloads", nargs="+", default=["W1", "W2", "W3", "W4"])
    parser.add_argument(
        "--repeats", type=int, default=None, help="fresh runs each (3; smoke: 1)"
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")
    parser.add_argument(
        "--pydvl-python",
        type=Path,
        default=None,
        help="python of pyDVL's environment (default: $DASKVAL_PYDVL_VENV/bin/python"
        " or <repo>/.venv-pydvl/bin/python)",
    )
    parser.add_argument(
        "--contenders",
        nargs="+",
        choices=sorted(CONTENDERS),
        default=None,
        help="run only these (default: all that apply to each workload)",
    )
    parser.add_argument(
        "--no-diagnostics",
        action="store_true",
        help="skip the diagnostic contenders (daskval_seq, ideal_pydvl_env)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and budgets")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    args = parser.parse_args(argv)
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    pending = [
        w
        for w in args.workloads
        if w in WORKLOADS and WORKLOADS[w].method not in IMPLEMENTED_METHODS
    ]
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: {sorted(WORKLOADS)}")
    if pending:
        parser.error(f"workloads {pending} are specified but not implemented yet")
    if args.repeats is None:
        args.repeats = 1 if args.smoke else 3
    if args.repeats < 1 or args.workers < 1:
        parser.error("--repeats and --workers must be >= 1")
    if args.pydvl_python is None:
        args.pydvl_python = default_pydvl_python()
    return args


def contenders_for(workload: Workload, args: argparse.Namespace) -> list[Contender]:
    """The contenders that run on ``workload``."""
    if args.contenders is not None:
        return [CONTENDERS[name] for name in args.contenders]
    return [
        c
        for c in CONTENDERS.values()
        if (c.only is None or workload.id in c.only)
        and not (c.diagnostic and args.no_diagnostics)
    ]


def command(
    contender: Contender, workload: Workload, args: argparse.Namespace
) -> list[str]:
    """The command line of one run."""
    python = str(args.pydvl_python) if contender.env == "pydvl" else sys.executable
    workers = args.workers if contender.parallel else 1
    return [
        python,
        str(HERE / contender.runner),
        "--workload",
        workload.id,
        "--n-train",
        str(workload.n_train),
        "--n-test",
        str(workload.n_test),
        "--budget",
        str(workload.budget),
        "--workers",
        str(workers),
        *contender.args,
    ]


def run_once(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run one runner in a fresh process with BLAS pinned; its record or an error."""
    env = {**os.environ, **BLAS_ENV, "PYTHONUNBUFFERED": "1"}
    load_before = os.getloadavg()[0]
    try:
        done = subprocess.run(
            cmd,
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "command": cmd}
    records = [
        line[len(RESULT_MARKER) :]
        for line in done.stdout.splitlines()
        if line.startswith(RESULT_MARKER)
    ]
    if done.returncode != 0 or not records:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        return {
            "error": f"exit code {done.returncode}, {len(records)} records",
            "stderr_tail": tail,
            "command": cmd,
        }
    record: dict[str, Any] = json.loads(records[-1])
    record["load_before"] = load_before
    record["load_after"] = os.getloadavg()[0]
    return record


def run_workload(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """All repeats of all contenders of one workload, interleaved."""
    contenders = contenders_for(workload, args)
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in contenders}
    for repeat in range(args.repeats):
        shift = repeat % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            begin = time.monotonic()
            record = run_once(command(contender, workload, args), args.timeout)
            record["repeat"] = repeat
            runs[contender.name].append(record)
            log_run(workload, contender, repeat, args.repeats, record, begin)
    summary = summarise_workload(workload.to_dict(), runs)
    summary["workers"] = args.workers
    add_memory(summary, runs)
    return summary


def add_memory(summary: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> None:
    """Median peak memory per contender, and the workload's absolute targets."""
    for name, records in runs.items():
        for field in ("peak_rss_bytes", "peak_pss_bytes"):
            peaks = sorted(r[field] for r in records if r.get(field))
            if peaks:
                summary["contenders"][name][field] = peaks[len(peaks) // 2]
    target = ABSOLUTE_TARGETS.get(summary["spec"]["id"])
    if target is None:
        return
    name, wall, memory = target
    measured = summary["contenders"].get(name, {})
    summary["absolute_targets"] = {
        "contender": name,
        "wall_seconds_bound": wall,
        "wall_seconds": measured.get("wall_seconds"),
        "peak_rss_bytes_bound": memory,
        "peak_rss_bytes": measured.get("peak_rss_bytes"),
        "peak_pss_bytes": measured.get("peak_pss_bytes"),
    }


def format_memory(summary: dict[str, Any]) -> str:
    """Lines of peak memory per contender and the absolute targets' verdicts."""
    lines = [
        f"  peak memory of all processes (median): {name}"
        f" RSS {c['peak_rss_bytes'] / 2**30:.2f} GB,"
        f" PSS {c.get('peak_pss_bytes', 0) / 2**30:.2f} GB"
        for name, c in summary["contenders"].items()
        if c.get("peak_rss_bytes")
    ]
    target = summary.get("absolute_targets")
    if target:
        for what, bound, unit, scale in (
            ("wall_seconds", target["wall_seconds_bound"], "s", 1.0),
            ("peak_rss_bytes", target["peak_rss_bytes_bound"], "GB", 2**30),
        ):
            value = target[what]
            verdict = (
                "not measured"
                if value is None
                else ("met" if value <= bound else "NOT met")
            )
            shown = "-" if value is None else f"{value / scale:.2f}"
            lines.append(
                f"  target: {target['contender']} {what} <= {bound / scale:.2f}"
                f" {unit}: {shown} -> {verdict}"
            )
        if target["peak_pss_bytes"]:
            lines.append(
                f"    (its peak PSS, shared library pages counted once:"
                f" {target['peak_pss_bytes'] / 2**30:.2f} GB)"
            )
    return "\n".join(lines)


def log_run(
    workload: Workload,
    contender: Contender,
    repeat: int,
    repeats: int,
    record: dict[str, Any],
    begin: float,
) -> None:
    """One progress line on stderr."""
    where = f"[{workload.id} {repeat + 1}/{repeats}] {contender.name:16}"
    if "error" in record:
        print(f"{where} FAILED: {record['error']}", file=sys.stderr)
        if record.get("stderr_tail"):
            print(record["stderr_tail"], file=sys.stderr)
    else:
        print(
            f"{where} wall {record['wall_seconds']:7.2f} s, start-up"
            f" {record['startup_seconds']:5.2f} s, {record['fits']} fits,"
            f" load {record['load_before']:.1f}; process"
            f" {time.monotonic() - begin:.1f} s",
            file=sys.stderr,
        )


def machine() -> dict[str, Any]:
    """Where the run happened, and how loaded the machine was."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cores_available": cores,
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every run succeeded and held the budgeted samples."""
    args = parse_args(argv)
    uses_pydvl = any(
        c.env == "pydvl"
        for w in args.workloads
        for c in contenders_for(WORKLOADS[w], args)
    )
    if uses_pydvl and not args.pydvl_python.exists():
        print(
            f"pyDVL's python {args.pydvl_python} is missing: run"
            " benchmarks/setup_pydvl_venv.sh (or pass --pydvl-python)",
            file=sys.stderr,
        )
        return 2
    started = dt.datetime.now(dt.timezone.utc)
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "argv": sys.argv if argv is None else argv,
        "smoke": args.smoke,
        "repeats": args.repeats,
        "workers": args.workers,
        "machine_before": machine(),
        "pydvl_python": str(args.pydvl_python),
        "note": "shared, noisy machine: compare ratios within this run only",
        "workloads": {},
    }
    for name in args.workloads:
        workload = WORKLOADS[name].smoke() if args.smoke else WORKLOADS[name]
        summary = run_workload(workload, args)
        report["workloads"][name] = summary
        memory = format_memory(summary)
        table = format_workload(summary, args.workers)
        print(table + ("\n" + memory if memory else "") + "\n", flush=True)
    report["machine_after"] = machine()
    path = write_report(report, args.output, started, args.smoke)
    print(f"results written to {path}")
    consistent = all(s["consistent"] for s in report["workloads"].values())
    return 0 if consistent else 1


def write_report(
    report: dict[str, Any], output: Path | None, started: dt.datetime, smoke: bool
) -> Path:
    """Write the JSON report (to benchmarks/results/ unless told otherwise)."""
    if output is None:
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        output = RESULTS / f"bench-{stamp}{'-smoke' if smoke else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    return output


if __name__ == "__main__":
    sys.exit(main())
