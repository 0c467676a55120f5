"""Medians, ratios, targets and the printed table of a benchmark run.

Pure functions over the records the runners print (see ``workloads.emit``);
no contender is imported here.

Per-evaluation cost is ``wall_seconds * workers / fits`` (core-milliseconds
per fit): the ideal parallel time of a contender's own work is
``ideal cost * fits / workers``, so "x ideal" is both the cost ratio and the
wall-time ratio to the ideal at equal work. Only non-empty coalitions count as
fits (u(empty) is free for every contender), and only fits that entered the
result (pyDVL's discarded in-flight work is reported apart).

The same ratios prefixed ``cpu`` divide CPU-milliseconds per fit (CPU time of
the contender's processes, see cpumeter.py): on a shared machine they measure
the work done regardless of how much of the machine a contender got, but they
do not see idle time, which the wall-time ratios do.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

__all__ = [
    "LABELS",
    "RATIOS",
    "TARGETS",
    "format_workload",
    "summarise_workload",
]

LABELS = {
    "ideal": "ideal (sequential loop)",
    "daskval": "daskval (LocalCluster)",
    "pydvl": "pyDVL 0.10 (loky)",
    "pydvl_1job": "pyDVL 0.10 (1 job)",
    "daskval_seq": "daskval eval path, no Dask *",
    "ideal_pydvl_env": "ideal in pyDVL's env *",
}

# name -> (numerator, denominator), both per-evaluation costs
RATIOS: dict[str, tuple[str, str]] = {
    "daskval/ideal": ("daskval", "ideal"),
    "pydvl/ideal": ("pydvl", "ideal"),
    "pydvl_1job/ideal": ("pydvl_1job", "ideal"),
    "daskval/pydvl": ("daskval", "pydvl"),
    "daskval/pydvl_1job": ("daskval", "pydvl_1job"),
    # diagnostics: daskval's evaluation path, its engine, pyDVL's environment
    "daskval_seq/ideal": ("daskval_seq", "ideal"),
    "daskval/daskval_seq": ("daskval", "daskval_seq"),
    "ideal_pydvl_env/ideal": ("ideal_pydvl_env", "ideal"),
    "pydvl/ideal_pydvl_env": ("pydvl", "ideal_pydvl_env"),
}

# workload -> [(ratio name, upper bound, what it means)]
TARGETS: dict[str, list[tuple[str, float, str]]] = {
    "W1": [
        (
            "daskval/pydvl_1job",
            0.70,
            "daskval per-evaluation cost <= 0.7x pyDVL's at equal evaluations",
        )
    ],
    "W2": [
        ("daskval/ideal", 1.10, "daskval <= 1.1x the ideal"),
        (
            "daskval/pydvl",
            0.10,
            "daskval >= 10x faster than pyDVL with the same workers",
        ),
    ],
    "W3": [
        (
            "daskval/pydvl",
            1 / 13,
            "daskval >= 13x faster than pyDVL with the same workers",
        )
    ],
    "W4": [("daskval/ideal", 1.05, "daskval <= 1.05x the ideal")],
}
# methods whose every contender must hold exactly the budgeted samples
COUNTED_METHODS = ("permutation", "msr")
UNITS = {"permutation": "permutations", "msr": "subsets"}

_FIELDS = (
    "wall_seconds",
    "startup_seconds",
    "samples",
    "evaluations",
    "fits",
    "fits_performed",
    "cost_ms",
    "cpu_seconds",
    "cpu_ms",
)


def cost_ms(run: dict[str, Any]) -> float:
    """Core-milliseconds per fit of one run."""
    return 1e3 * run["wall_seconds"] * run["workers"] / max(1, run["fits"])


def cpu_ms(run: dict[str, Any]) -> float | None:
    """CPU-milliseconds per fit of one run (None when not measured)."""
    if run.get("cpu_seconds") is None:
        return None
    return 1e3 * run["cpu_seconds"] / max(1, run["fits"])


def _with_costs(run: dict[str, Any]) -> dict[str, Any]:
    return {**run, "cost_ms": cost_ms(run), "cpu_ms": cpu_ms(run)}


def _median(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise_contender(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (and the spread of wall times) over a contender's good runs."""
    good = [_with_costs(r) for r in runs if "error" not in r]
    summary: dict[str, Any] = {
        "repeats": len(good),
        "failed": len(runs) - len(good),
    }
    if not good:
        return summary
    summary["workers"] = good[0]["workers"]
    for name in _FIELDS:
        summary[name] = _median(r.get(name) for r in good)
    walls = [r["wall_seconds"] for r in good]
    summary["wall_min"], summary["wall_max"] = min(walls), max(walls)
    summary["samples_all"] = sorted({r["samples"] for r in good})
    return summary


def _paired(
    runs: dict[str, list[dict[str, Any]]], top: str, bottom: str, field: str
) -> float | None:
    """The median over repeats of the ratio of ``field`` within each repeat."""
    by_repeat = {
        r["repeat"]: _with_costs(r) for r in runs.get(bottom, []) if "error" not in r
    }
    ratios = []
    for run in runs.get(top, []):
        if "error" in run or run["repeat"] not in by_repeat:
            continue
        a, b = _with_costs(run)[field], by_repeat[run["repeat"]][field]
        if a and b:
            ratios.append(a / b)
    return _median(ratios)


def summarise_workload(
    spec: dict[str, Any], runs: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Medians per contender, ratios, targets and consistency of one workload."""
    contenders = {name: summarise_contender(rs) for name, rs in runs.items()}
    ratios: dict[str, float] = {}
    paired: dict[str, float | None] = {}
    for name, (top, bottom) in RATIOS.items():
        a, b = contenders.get(top, {}), contenders.get(bottom, {})
        for prefix, field in (("", "cost_ms"), ("cpu ", "cpu_ms")):
            if a.get(field) and b.get(field):
                ratios[prefix + name] = a[field] / b[field]
                paired[prefix + name] = _paired(runs, top, bottom, field)
    if "daskval" in contenders and "pydvl" in contenders:
        walls = (
            contenders["daskval"].get("wall_seconds"),
            contenders["pydvl"].get("wall_seconds"),
        )
        if all(walls):
            ratios["wall daskval/pydvl"] = walls[0] / walls[1]
    targets = [
        {
            "ratio": name,
            "bound": bound,
            "meaning": meaning,
            "value": ratios.get(name),
            "met": None if name not in ratios else ratios[name] <= bound,
            "cpu_value": ratios.get("cpu " + name),
        }
        for name, bound, meaning in TARGETS.get(spec["id"], [])
    ]
    problems = consistency_problems(spec, runs)
    return {
        "spec": spec,
        "contenders": contenders,
        "ratios": ratios,
        "paired_ratios": paired,
        "targets": targets,
        "consistent": not problems,
        "problems": problems,
        "runs": runs,
    }


def consistency_problems(
    spec: dict[str, Any], runs: dict[str, list[dict[str, Any]]]
) -> list[str]:
    """Failed runs, and runs whose result does not hold the budgeted samples."""
    problems = []
    for name, rs in runs.items():
        for r in rs:
            if "error" in r:
                problems.append(f"{name} repeat {r['repeat']} failed: {r['error']}")
            elif spec["method"] in COUNTED_METHODS and r["samples"] != spec["budget"]:
                problems.append(
                    f"{name} repeat {r['repeat']} processed {r['samples']} samples,"
                    f" not {spec['budget']}"
                )
    return problems


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def format_workload(summary: dict[str, Any], cores: int) -> str:
    """The printed table of one workload."""
    spec, contenders = summary["spec"], summary["contenders"]
    ideal = contenders.get("ideal", {})
    ideal_cost, ideal_cpu = ideal.get("cost_ms"), ideal.get("cpu_ms")
    lines = [
        f"{spec['id']}: {spec['title']}",
        f"    {spec['n_train']} train / {spec['n_test']} test points, budget "
        f"{spec['budget']} {UNITS.get(spec['method'], 'samples')}, medians of the"
        " repeats below",
        f"{'contender':31} {'procs':>5} {'reps':>4} {'start s':>8} {'wall s':>8}"
        f" {'(min-max)':>13} {'samples':>7} {'evals':>6} {'fits':>6}"
        f" {'core-ms/fit':>11} {'x ideal':>7} {'cpu-ms/fit':>10} {'x ideal':>7}",
    ]
    for name, c in contenders.items():
        if not c.get("repeats"):
            lines.append(f"{LABELS.get(name, name):31} failed in every repeat")
            continue
        spread = f"{c['wall_min']:.1f}-{c['wall_max']:.1f}"
        ratio = c["cost_ms"] / ideal_cost if ideal_cost else None
        cpu = c.get("cpu_ms")
        cpu_ratio = cpu / ideal_cpu if cpu and ideal_cpu else None
        lines.append(
            f"{LABELS.get(name, name):31} {c['workers']:>5} {c['repeats']:>4}"
            f" {_num(c['startup_seconds']):>8} {_num(c['wall_seconds']):>8}"
            f" {spread:>13} {_num(int(c['samples'])):>7}"
            f" {_num(int(c['evaluations'])):>6} {_num(int(c['fits'])):>6}"
            f" {_num(c['cost_ms']):>11} {_num(ratio):>7}"
            f" {_num(cpu):>10} {_num(cpu_ratio):>7}"
        )
        if name == "ideal":
            lines.append(
                f"{f'ideal parallel (/{cores})':31} {cores:>5} {'':>4} {'-':>8}"
                f" {_num(c['wall_seconds'] / cores):>8}"
            )
    lines.append("  * diagnostic contenders")
    for title, cpu_only in (("wall", False), ("CPU", True)):
        shown = [
            f"{k.removeprefix('cpu ')} {v:.2f}"
            for k, v in summary["ratios"].items()
            if k.startswith("cpu ") == cpu_only
        ]
        lines.append(f"  ratios, {title} per fit (medians): " + ", ".join(shown))
    for t in summary["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(
            f"  target: {t['ratio']} <= {t['bound']:.2f} ({t['meaning']}):"
            f" {_num(t['value'])} -> {verdict} (CPU-based: {_num(t['cpu_value'])})"
        )
    for problem in summary["problems"]:
        lines.append(f"  PROBLEM: {problem}")
    return "\n".join(lines)
