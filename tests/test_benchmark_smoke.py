"""The benchmark harness (benchmarks/run.py) at tiny budgets: it runs, every
contender processes the same samples, and the output carries the ratios.

Needs pyDVL's environment (benchmarks/setup_pydvl_venv.sh, at
$DASKVAL_PYDVL_VENV or <repo>/.venv-pydvl): skipped when it is missing, a
failure when it is missing in CI (``CI`` set), where a skipped tier counts as
a failure. Timings here mean nothing; only counts and fields are checked.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
IN_CI = bool(os.environ.get("CI"))
WORKLOADS = ("W1", "W4")
# the contenders every workload runs, and those W1 adds
CONTENDERS = {"ideal", "daskval", "pydvl"}
W1_ONLY = {"pydvl_1job"}
RATIO_FIELDS = (
    "daskval/ideal",
    "pydvl/ideal",
    "daskval/pydvl",
    "cpu daskval/ideal",
    "cpu daskval/pydvl",
)


def pydvl_python() -> Path:
    """pyDVL's python, where benchmarks/setup_pydvl_venv.sh puts it."""
    venv = os.environ.get("DASKVAL_PYDVL_VENV") or str(REPO / ".venv-pydvl")
    return Path(venv) / "bin" / "python"


def _load_report_module() -> Any:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import report
    finally:
        sys.path.remove(str(BENCHMARKS))
    return report


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON report of one smoke run of W1 and W4."""
    python = pydvl_python()
    if not python.exists():
        message = (
            f"pyDVL's environment is missing ({python}); "
            "run benchmarks/setup_pydvl_venv.sh"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    output = tmp_path_factory.mktemp("bench") / "smoke.json"
    command = [
        sys.executable,
        str(BENCHMARKS / "run.py"),
        "--smoke",
        "--workloads",
        *WORKLOADS,
        "--no-diagnostics",
        "--pydvl-python",
        str(python),
        "--output",
        str(output),
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(output.read_text())
    return report


@pytest.mark.slow
@pytest.mark.parametrize("workload", WORKLOADS)
def test_every_contender_processed_the_same_samples(
    smoke: dict[str, Any], workload: str
) -> None:
    summary = smoke["workloads"][workload]
    expected = CONTENDERS | (W1_ONLY if workload == "W1" else set())
    assert set(summary["runs"]) == expected
    budget = summary["spec"]["budget"]
    samples = {
        (name, run["samples"]) for name, runs in summary["runs"].items() for run in runs
    }
    assert samples == {(name, budget) for name in expected}
    assert summary["consistent"], summary["problems"]


@pytest.mark.slow
@pytest.mark.parametrize("workload", WORKLOADS)
def test_evaluations_are_counted_per_contender(
    smoke: dict[str, Any], workload: str
) -> None:
    summary = smoke["workloads"][workload]
    n, budget = summary["spec"]["n_train"], summary["spec"]["budget"]
    for name, runs in summary["runs"].items():
        for run in runs:
            if name == "daskval":
                # n-1 prefixes per permutation, plus u(empty) and u(N) once
                assert run["evaluations"] == budget * (n - 1) + 2
                assert run["fits"] == budget * (n - 1) + 1
            else:
                # all n prefixes of every permutation
                assert run["fits"] == budget * n
            assert run["fits_performed"] >= run["fits"]
            assert run["blas_pinned"]


@pytest.mark.slow
@pytest.mark.parametrize("workload", WORKLOADS)
def test_output_has_medians_and_ratios(smoke: dict[str, Any], workload: str) -> None:
    summary = smoke["workloads"][workload]
    fields = set(RATIO_FIELDS) | ({"daskval/pydvl_1job"} if workload == "W1" else set())
    for field in fields:
        ratio = summary["ratios"][field]
        assert math.isfinite(ratio) and ratio > 0, field
    for contender in summary["contenders"].values():
        for field in ("wall_seconds", "evaluations", "samples", "cost_ms", "cpu_ms"):
            assert contender[field] > 0, field
    assert summary["targets"], "every implemented workload has a target"
    assert all(isinstance(t["met"], bool) for t in summary["targets"])


def test_ratios_are_per_evaluation_costs() -> None:
    """Ratios compare core-time per fit: wall x workers / fits, medians first."""
    report = _load_report_module()

    def run(name: str, repeat: int, wall: float, workers: int, fits: int) -> Any:
        return {
            "contender": name,
            "repeat": repeat,
            "wall_seconds": wall,
            "startup_seconds": 0.0,
            "workers": workers,
            "samples": 2,
            "evaluations": fits,
            "fits": fits,
            "fits_performed": fits,
        }

    runs = {
        "ideal": [run("ideal", r, w, 1, 100) for r, w in enumerate((1.0, 1.2, 0.8))],
        "daskval": [run("daskval", 0, 0.6, 2, 99), run("daskval", 1, 0.5, 2, 99)],
        "pydvl": [run("pydvl", 0, 0.5, 2, 100)],
    }
    spec = {"id": "W4", "method": "permutation", "budget": 2}
    summary = report.summarise_workload(spec, runs)
    assert summary["contenders"]["ideal"]["cost_ms"] == pytest.approx(10.0)
    daskval_cost = 1e3 * 0.55 * 2 / 99  # median of the two repeats
    assert summary["ratios"]["daskval/ideal"] == pytest.approx(daskval_cost / 10.0)
    assert summary["ratios"]["daskval/pydvl"] == pytest.approx(daskval_cost / 10.0)
    assert summary["targets"][0]["met"] is False
    assert summary["consistent"]
