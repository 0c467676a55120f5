"""Sample efficiency: RMSE against exact values at equal numbers of utility calls.

    python benchmarks/sample_efficiency.py                 # wine12 + cancer14, 20 seeds
    python benchmarks/sample_efficiency.py --smoke         # wine6, 2 seeds (seconds)

For every game of tabulated.py (all 2^n utilities tabulated once and cached
under benchmarks/results/), every estimator of daskval, pyDVL 0.10 and
shapiq runs at budgets of B utility calls (100, 300, 1000, 3000; below 2^n)
for 20 seeds; the table is the RMSE over players against the exact Shapley or
Banzhaf values, mean over seeds, and the mean number of distinct coalitions
the estimator touched. Each library runs in a subprocess of its own
environment (se_daskval_runner.py here, se_pydvl_runner.py in
.venv-pydvl, se_shapiq_runner.py in .venv-shapiq); this process imports none
of them. Calls are a count, so the figures do not depend on machine load.

The verdict per budget: daskval's best estimator's RMSE over the best of
pyDVL's and shapiq's (below 1 = daskval ahead), with the ratio's standard
error from the spread over seeds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tabulated import (
    BUDGETS,
    GAMES,
    RESULT_MARKER,
    RESULTS,
    exact_banzhaf,
    exact_shapley,
    load_table,
    rmse,
)
from workloads import BLAS_ENV

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LIBRARIES = ("daskval", "pydvl", "shapiq")
RUNNERS = {
    "daskval": "se_daskval_runner.py",
    "pydvl": "se_pydvl_runner.py",
    "shapiq": "se_shapiq_runner.py",
}
SEMIVALUES = ("shapley", "banzhaf")
SMOKE = {"games": ["wine6"], "budgets": [30, 60], "seeds": 2}


def venv_python(library: str) -> Path:
    """The python of a contender's own environment ($DASKVAL_<LIB>_VENV or repo)."""
    variable = f"DASKVAL_{library.upper()}_VENV"
    venv = os.environ.get(variable) or str(REPO / f".venv-{library}")
    return Path(venv) / "bin" / "python"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--games", nargs="+", choices=sorted(GAMES), default=None)
    parser.add_argument("--budgets", nargs="+", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None, help="20; smoke: 2")
    parser.add_argument(
        "--libraries",
        nargs="*",
        choices=LIBRARIES,
        default=None,
        help="libraries to run (default: all; none with --reuse: re-report)",
    )
    parser.add_argument("--pydvl-python", type=Path, default=venv_python("pydvl"))
    parser.add_argument("--shapiq-python", type=Path, default=venv_python("shapiq"))
    parser.add_argument("--smoke", action="store_true", help="tiny game, 2 seeds")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--timeout", type=float, default=7200.0)
    parser.add_argument(
        "--reuse",
        type=Path,
        nargs="+",
        default=None,
        help="previous reports (same budgets and unit): take the runs of the"
        " libraries not in --libraries from the first that has them",
    )
    parser.add_argument(
        "--unit",
        choices=("calls", "distinct"),
        default="calls",
        help="budgets count utility calls (default) or distinct coalitions, the"
        " fits a memo of evaluated coalitions lets through",
    )
    args = parser.parse_args(argv)
    defaults = SMOKE if args.smoke else {"games": ["wine12", "cancer14"]}
    args.games = args.games or defaults["games"]
    args.budgets = args.budgets or defaults.get("budgets", list(BUDGETS))
    args.seeds = args.seeds or defaults.get("seeds", 20)
    if args.libraries is None:
        args.libraries = list(LIBRARIES)
    for game in args.games:
        too_big = [b for b in args.budgets if b >= 1 << GAMES[game].n]
        if too_big:
            parser.error(f"budgets {too_big} reach 2^n for {game}: estimates are exact")
    return args


def python_of(library: str, args: argparse.Namespace) -> Path:
    """Which interpreter runs a library's runner."""
    if library == "pydvl":
        return Path(args.pydvl_python)
    if library == "shapiq":
        return Path(args.shapiq_python)
    return Path(sys.executable)


def run_library(library: str, game: str, args: argparse.Namespace) -> dict[str, Any]:
    """One library's runner on one game: its record, or an error."""
    python = python_of(library, args)
    if not python.exists():
        return {"library": library, "error": f"{python} is missing"}
    command = [
        str(python),
        str(HERE / RUNNERS[library]),
        "--game",
        game,
        "--seeds",
        str(args.seeds),
        "--unit",
        args.unit,
        "--budgets",
        *map(str, args.budgets),
    ]
    env = {**os.environ, **BLAS_ENV, "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(
            command,
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=args.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"library": library, "error": f"timed out after {args.timeout:.0f} s"}
    lines = [
        line[len(RESULT_MARKER) :]
        for line in done.stdout.splitlines()
        if line.startswith(RESULT_MARKER)
    ]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        return {"library": library, "error": f"exit {done.returncode}", "stderr": tail}
    record: dict[str, Any] = json.loads(lines[-1])
    return record


def summarise_runs(
    runs: list[dict[str, Any]], exact: dict[str, np.ndarray]
) -> dict[str, dict[str, dict[int, dict[str, float]]]]:
    """semivalue -> estimator -> budget -> mean RMSE, calls and distinct coalitions."""
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        grouped[(run["semivalue"], run["estimator"], run["budget"])].append(run)
    table: dict[str, dict[str, dict[int, dict[str, float]]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for (semivalue, name, budget), group in grouped.items():
        errors = [rmse(r["values"], exact[semivalue]) for r in group]
        table[semivalue][name][budget] = {
            "rmse": statistics.fmean(errors),
            "rmse_sd": statistics.stdev(errors) if len(errors) > 1 else 0.0,
            "calls": statistics.fmean(r["calls"] for r in group),
            "distinct": statistics.fmean(r["distinct"] for r in group),
            "seeds": len(group),
        }
    return {k: dict(v) for k, v in table.items()}


def best_of(
    estimators: dict[str, dict[int, dict[str, float]]], budget: int
) -> tuple[str, float, float] | None:
    """The estimator with the lowest mean RMSE at ``budget``: its name, that
    mean and the mean's relative standard error (sd over seeds / sqrt(seeds))."""
    found = [(e[budget]["rmse"], name) for name, e in estimators.items() if budget in e]
    if not found:
        return None
    error, name = min(found)
    entry = estimators[name][budget]
    relative = entry["rmse_sd"] / max(1.0, entry["seeds"]) ** 0.5 / error
    return name, error, relative


def verdicts(
    libraries: dict[str, Any], budgets: list[int]
) -> dict[str, list[dict[str, Any]]]:
    """Per semivalue and budget: each library's best; daskval's over the others'."""
    out: dict[str, list[dict[str, Any]]] = {}
    for semivalue in SEMIVALUES:
        rows = []
        for budget in budgets:
            best = {
                lib: best_of(summary.get(semivalue, {}), budget)
                for lib, summary in libraries.items()
            }
            others = [b for lib, b in best.items() if lib != "daskval" and b]
            ours = best.get("daskval")
            ratio = spread = None
            if ours and others:
                theirs = min(others, key=lambda b: b[1])
                ratio = ours[1] / theirs[1]
                # the ratio's standard error (delta method, independent seeds)
                spread = ratio * (ours[2] ** 2 + theirs[2] ** 2) ** 0.5
            rows.append(
                {
                    "budget": budget,
                    "best": {lib: b[:2] for lib, b in best.items() if b},
                    "ratio": ratio,
                    "ratio_stderr": spread,
                    # daskval's best over each other library's best
                    "ratio_to": {
                        lib: ours[1] / b[1]
                        for lib, b in best.items()
                        if ours and b and lib != "daskval"
                    },
                    "met": None if ratio is None else ratio < 1.0,
                }
            )
        out[semivalue] = rows
    return out


def reused_records(game: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs of the libraries not re-run, from the reports given by ``--reuse``.

    Each library comes from the first report that holds it; the budgets and
    the unit must match this run's (the seeds may differ: every estimator's
    entry records how many it averages).
    """
    records: dict[str, Any] = {}
    for path in args.reuse or []:
        previous = json.loads(Path(path).read_text())
        if (previous["budgets"], previous.get("unit", "calls")) != (
            args.budgets,
            args.unit,
        ):
            raise SystemExit(f"{path}: other budgets or unit than this run")
        result = previous["games"].get(game, {})
        for lib, runs in result.get("runs", {}).items():
            if lib in args.libraries or lib in records or not runs:
                continue
            records[lib] = {
                "library": lib,
                "runs": runs,
                "skipped": result["skipped"].get(lib, []),
                "versions": result["versions"].get(lib),
                "reused_from": str(path),
                "seeds": previous["seeds"],
            }
    return records


def run_game(game: str, args: argparse.Namespace) -> dict[str, Any]:
    """Tabulate (or load) a game, run every library on it, summarise."""
    table = load_table(GAMES[game])
    exact = {"shapley": exact_shapley(table), "banzhaf": exact_banzhaf(table)}
    records: dict[str, Any] = reused_records(game, args)
    summaries: dict[str, Any] = {}
    for library in LIBRARIES:
        if library in records:
            summaries[library] = summarise_runs(records[library]["runs"], exact)
            continue
        if library not in args.libraries:
            continue
        print(f"[{game}] {library} ...", file=sys.stderr, flush=True)
        record = run_library(library, game, args)
        if "error" in record:
            print(f"[{game}] {library} FAILED: {record['error']}", file=sys.stderr)
            print(record.get("stderr", ""), file=sys.stderr)
        else:
            summaries[library] = summarise_runs(record["runs"], exact)
        records[library] = record
    return {
        "game": GAMES[game].describe(),
        "exact": {k: v.tolist() for k, v in exact.items()},
        "summaries": summaries,
        "verdicts": verdicts(summaries, args.budgets),
        "skipped": {
            lib: r.get("skipped", []) for lib, r in records.items() if "runs" in r
        },
        "errors": {lib: r for lib, r in records.items() if "error" in r},
        "versions": {lib: r.get("versions") for lib, r in records.items()},
        "seeds": {lib: r.get("seeds", args.seeds) for lib, r in records.items()},
        "runs": {lib: r.get("runs", []) for lib, r in records.items()},
    }


def _cell(entry: dict[str, float] | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['rmse']:.2e} ({entry['distinct']:.0f})"


def format_game(
    result: dict[str, Any], budgets: list[int], seeds: int, unit: str = "calls"
) -> str:
    """Markdown tables of one game: every estimator, then the verdicts."""
    game = result["game"]
    counted = "utility calls" if unit == "calls" else "distinct coalitions"
    lines = [
        f"## {game['name']}: {game['dataset']}, n={game['players']} "
        f"(B = budget of {counted}; RMSE over players, mean of {seeds} seeds;"
        " distinct coalitions in brackets)",
    ]
    for semivalue in SEMIVALUES:
        lines += ["", f"### {semivalue}", ""]
        lines.append("| estimator | " + " | ".join(f"B={b}" for b in budgets) + " |")
        lines.append("|---|" + "---|" * len(budgets))
        for library, summary in result["summaries"].items():
            for name, entries in summary.get(semivalue, {}).items():
                cells = " | ".join(_cell(entries.get(b)) for b in budgets)
                lines.append(f"| {library}: {name} | {cells} |")
        lines += [
            "",
            "| budget | daskval best | pyDVL best | shapiq best | ratio to the best"
            " of both | to pyDVL | to shapiq |",
        ]
        lines.append("|---|---|---|---|---|---|---|")
        for row in result["verdicts"][semivalue]:
            best = row["best"]
            cells = [
                f"{best[lib][1]:.2e} ({best[lib][0]})" if lib in best else "-"
                for lib in LIBRARIES
            ]
            ratio = "-"
            if row["ratio"] is not None:
                ratio = f"{row['ratio']:.2f} ± {row['ratio_stderr']:.2f}"
            verdict = {True: "", False: " NOT met", None: ""}[row["met"]]
            verdict += "".join(
                f" | {row['ratio_to'][lib]:.2f}" if lib in row["ratio_to"] else " | -"
                for lib in ("pydvl", "shapiq")
            )
            lines.append(
                f"| {row['budget']} | " + " | ".join(cells) + f" | {ratio}{verdict} |"
            )
    for library, skipped in result["skipped"].items():
        for s in skipped:
            lines.append(
                f"- skipped {library}: {s['estimator']} ({s['semivalue']}):"
                f" {s['reason']}"
            )
    for library, error in result["errors"].items():
        lines.append(f"- FAILED {library}: {error['error']}")
    for library, runs_seeds in result.get("seeds", {}).items():
        if runs_seeds != seeds:
            lines.append(
                f"- {library}: mean of {runs_seeds} seeds (from an earlier run)"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every library ran."""
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "argv": sys.argv if argv is None else argv,
        "budgets": args.budgets,
        "seeds": args.seeds,
        "unit": args.unit,
        "note": "budgets count utility calls (u(empty) once) or, with unit"
        " 'distinct', distinct coalitions (what a memo would pay)",
        "games": {},
    }
    for game in args.games:
        result = run_game(game, args)
        report["games"][game] = result
        print(
            format_game(result, args.budgets, args.seeds, args.unit) + "\n", flush=True
        )
    output = args.output or RESULTS / (
        f"sample-efficiency-{args.unit}-{started.strftime('%Y%m%dT%H%M%SZ')}"
        f"{'-smoke' if args.smoke else ''}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"results written to {output}")
    failed = any(r["errors"] for r in report["games"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
