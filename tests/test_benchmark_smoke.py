"""The benchmark harnesses at tiny sizes: they run, every contender does the
work it claims, and the output carries the ratios.

- benchmarks/run.py (W1, W2, W4): every contender processes the same samples;
  (W3) daskval, pyDVL and the ideal give the same KNN-Shapley values;
- benchmarks/sample_efficiency.py (a 6-player game, 2 seeds): every library
  stays within its budget of utility calls, and the exact values the RMSEs
  are taken against equal daskval's exact enumeration;
- benchmarks/time_to_rmse.py (12 points): a reference, one contender per
  library, the speed-up table.

Needs pyDVL's environment (benchmarks/setup_pydvl_venv.sh, at
$DASKVAL_PYDVL_VENV or <repo>/.venv-pydvl) and shapiq's
(benchmarks/setup_shapiq_venv.sh, $DASKVAL_SHAPIQ_VENV or <repo>/.venv-shapiq):
skipped when missing, a failure when missing in CI (``CI`` set), where a
skipped tier counts as a failure. Timings here mean nothing; only counts,
fields and exact values are checked.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
IN_CI = bool(os.environ.get("CI"))
WORKLOADS = ("W1", "W2", "W4")
# the contenders every workload runs, and those W1 and W2 add
CONTENDERS = {"ideal", "daskval", "pydvl"}
ONE_JOB = {"W1", "W2"}
RATIO_FIELDS = (
    "daskval/ideal",
    "pydvl/ideal",
    "daskval/pydvl",
    "cpu daskval/ideal",
    "cpu daskval/pydvl",
)


def venv_python(library: str) -> Path:
    """A contender's python, where benchmarks/setup_<library>_venv.sh puts it."""
    variable = f"DASKVAL_{library.upper()}_VENV"
    venv = os.environ.get(variable) or str(REPO / f".venv-{library}")
    return Path(venv) / "bin" / "python"


def pydvl_python() -> Path:
    """pyDVL's python, where benchmarks/setup_pydvl_venv.sh puts it."""
    return venv_python("pydvl")


def require(library: str) -> Path:
    """The library's python; skip (fail in CI) when its environment is missing."""
    python = venv_python(library)
    if not python.exists():
        message = (
            f"{library}'s environment is missing ({python}); "
            f"run benchmarks/setup_{library}_venv.sh"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return python


def _load_benchmark_module(name: str) -> Any:
    import importlib

    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def _load_report_module() -> Any:
    return _load_benchmark_module("report")


def _run(command: list[str], timeout: float) -> None:
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON report of one smoke run of W1, W2 and W4."""
    python = require("pydvl")
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
    _run(command, timeout=500)
    report: dict[str, Any] = json.loads(output.read_text())
    return report


@pytest.mark.slow
@pytest.mark.parametrize("workload", WORKLOADS)
def test_every_contender_processed_the_same_samples(
    smoke: dict[str, Any], workload: str
) -> None:
    summary = smoke["workloads"][workload]
    expected = CONTENDERS | ({"pydvl_1job"} if workload in ONE_JOB else set())
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
    msr = summary["spec"]["method"] == "msr"
    for name, runs in summary["runs"].items():
        for run in runs:
            if msr:
                # one fit per subset, for every contender; daskval's MSR
                # estimator needs no anchors
                assert run["fits"] == budget
                if name == "daskval":
                    anchors = run["extra"]["anchor_evaluations"]
                    assert run["evaluations"] == budget + anchors
            elif name == "daskval":
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
    one_job = {"daskval/pydvl_1job"} if workload in ONE_JOB else set()
    fields = set(RATIO_FIELDS) | one_job
    for field in fields:
        ratio = summary["ratios"][field]
        assert math.isfinite(ratio) and ratio > 0, field
    for contender in summary["contenders"].values():
        for field in ("wall_seconds", "evaluations", "samples", "cost_ms", "cpu_ms"):
            assert contender[field] > 0, field
    assert summary["targets"], "every implemented workload has a target"
    assert all(isinstance(t["met"], bool) for t in summary["targets"])


@pytest.fixture(scope="module")
def knn_smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON report of one smoke run of W3 (exact KNN-Shapley)."""
    python = require("pydvl")
    output = tmp_path_factory.mktemp("bench-knn") / "smoke.json"
    command = [
        sys.executable,
        str(BENCHMARKS / "run.py"),
        "--smoke",
        "--workloads",
        "W3",
        "--no-diagnostics",
        "--pydvl-python",
        str(python),
        "--output",
        str(output),
    ]
    _run(command, timeout=300)
    report: dict[str, Any] = json.loads(output.read_text())
    summary: dict[str, Any] = report["workloads"]["W3"]
    return summary


@pytest.mark.slow
def test_w3_contenders_value_every_test_point_alike(knn_smoke: dict[str, Any]) -> None:
    assert set(knn_smoke["runs"]) == CONTENDERS
    assert knn_smoke["consistent"], knn_smoke["problems"]
    n_test = knn_smoke["spec"]["n_test"]
    checksums = []
    for runs in knn_smoke["runs"].values():
        (run,) = runs
        # a sample, an evaluation and a "fit" are each one test point
        assert run["samples"] == run["evaluations"] == run["fits"] == n_test
        assert run["peak_rss_bytes"] > 0
        assert run["blas_pinned"]
        checksums.append(run["extra"]["values_checksum"])
    # the same values from daskval, pyDVL and the ideal's numpy version
    assert max(checksums) - min(checksums) < 1e-9 * max(1.0, abs(checksums[0]))
    for field in RATIO_FIELDS:
        assert (
            math.isfinite(knn_smoke["ratios"][field]) and knn_smoke["ratios"][field] > 0
        )
    assert [t["ratio"] for t in knn_smoke["targets"]] == ["daskval/pydvl"]
    absolute = knn_smoke["absolute_targets"]
    assert absolute["wall_seconds"] > 0 and absolute["peak_rss_bytes"] > 0


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


# -- sample efficiency ----------------------------------------------------------


@pytest.fixture(scope="module")
def efficiency(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON report of one smoke run of benchmarks/sample_efficiency.py."""
    pydvl, shapiq = require("pydvl"), require("shapiq")
    output = tmp_path_factory.mktemp("efficiency") / "smoke.json"
    command = [
        sys.executable,
        str(BENCHMARKS / "sample_efficiency.py"),
        "--smoke",
        "--pydvl-python",
        str(pydvl),
        "--shapiq-python",
        str(shapiq),
        "--output",
        str(output),
    ]
    _run(command, timeout=300)
    report: dict[str, Any] = json.loads(output.read_text())
    return report


@pytest.mark.slow
def test_every_library_stays_within_its_budget(efficiency: dict[str, Any]) -> None:
    budgets = set(efficiency["budgets"])
    for result in efficiency["games"].values():
        assert not result["errors"], result["errors"]
        for library in ("daskval", "pydvl", "shapiq"):
            runs = result["runs"][library]
            semivalues = {r["semivalue"] for r in runs}
            assert semivalues == {"shapley", "banzhaf"}, library
            assert {r["budget"] for r in runs} == budgets
            for run in runs:
                assert 0 < run["calls"] <= run["budget"], (library, run["estimator"])
                # distinct coalitions: at most the calls (u(empty) counted once)
                assert run["distinct"] <= run["calls"] + 1
                assert all(math.isfinite(v) for v in run["values"])


@pytest.mark.slow
def test_efficiency_report_compares_the_best_of_each_library(
    efficiency: dict[str, Any],
) -> None:
    for result in efficiency["games"].values():
        for semivalue in ("shapley", "banzhaf"):
            rows = result["verdicts"][semivalue]
            assert [r["budget"] for r in rows] == efficiency["budgets"]
            for row in rows:
                assert set(row["best"]) == {"daskval", "pydvl", "shapiq"}
                assert math.isfinite(row["ratio"]) and row["ratio"] > 0
                assert row["ratio_stderr"] >= 0
                assert isinstance(row["met"], bool)
            summary = result["summaries"]["daskval"][semivalue]
            # the daskval estimators of the issue are all there
            assert {"permutation", "msr", "regression paired"} <= set(summary)


def test_exact_values_of_the_table_match_daskval_enumeration(
    tmp_path: Path,
) -> None:
    """The ground truth of the sample-efficiency benchmark is daskval's exact one."""
    import daskval as dv
    from daskval.plan import evaluate_range

    tabulated = _load_benchmark_module("tabulated")
    table = np.random.default_rng(0).random(1 << 5)
    table[0] = 0.0
    game = tabulated.TableGame(table)
    utility = dv.FunctionUtility(game, n=5)
    for cls, exact in (
        (dv.ShapleyValuation, tabulated.exact_shapley),
        (dv.BanzhafValuation, tabulated.exact_banzhaf),
    ):
        plan = cls(utility, sampler=dv.ExactSampler()).make_plan()
        partial = evaluate_range(plan, utility, 0, 1 << 5)
        values = plan.estimate(partial.moments)[0]
        np.testing.assert_allclose(values, exact(table), atol=1e-12)
    # efficiency
    total = np.sum(tabulated.exact_shapley(table))
    assert total == pytest.approx(table[-1] - table[0])


def test_the_daskval_driver_cuts_where_max_evaluations_would() -> None:
    """In-process runs spend at most B calls, and one more sample would not fit."""
    import daskval as dv

    runner = _load_benchmark_module("se_daskval_runner")
    tabulated = _load_benchmark_module("tabulated")
    table = np.random.default_rng(1).random(1 << 6)
    for budget in (23, 40):
        game = tabulated.TableGame(table)
        utility = dv.FunctionUtility(game, n=6)
        valuation = dv.ShapleyValuation(utility, stop=dv.MaxEvaluations(budget), seed=3)
        state = runner.run_plan(valuation.make_plan(), utility, game, budget)
        # 2 anchors, then 5 calls per permutation
        assert state.n_evaluations == 2 + 5 * ((budget - 2) // 5)
        assert state.n_samples == (budget - 2) // 5


@pytest.mark.parametrize("sampler", ["permutation", "msr", "regression"])
def test_the_daskval_driver_gives_what_fit_gives(client: Any, sampler: str) -> None:
    """The in-process driver's values are those of .fit() with MaxEvaluations(B)."""
    import daskval as dv
    from daskval.methods.regression import RegressionSampler

    runner = _load_benchmark_module("se_daskval_runner")
    tabulated = _load_benchmark_module("tabulated")
    table = np.random.default_rng(2).random(1 << 6)
    make = {
        "permutation": dv.PermutationSampler,
        "msr": dv.MSRSampler,
        "regression": lambda: RegressionSampler(paired=True),
    }[sampler]
    game = tabulated.TableGame(table)
    utility = dv.FunctionUtility(game, n=6)

    def valuation(u: Any) -> Any:
        return dv.BanzhafValuation(
            u, sampler=make(), stop=dv.MaxEvaluations(41), seed=5
        )

    plan = valuation(utility).make_plan()
    state = runner.run_plan(plan, utility, game, 41)
    # the workers cannot import the benchmarks' modules: a closure over the table
    closure = dv.FunctionUtility(
        lambda players: float(table[int(np.sum(1 << np.asarray(players)))]), n=6
    )
    fitted = valuation(closure).fit(client=client).result_
    assert fitted.n_evaluations == state.n_evaluations
    np.testing.assert_allclose(
        fitted.values, plan.estimate(state.moments)[0], atol=1e-12
    )


# -- time to a fixed RMSE -------------------------------------------------------


@pytest.mark.slow
def test_time_to_rmse_smoke(tmp_path: Path) -> None:
    python = require("pydvl")
    output = tmp_path / "ttr.json"
    command = [
        sys.executable,
        str(BENCHMARKS / "time_to_rmse.py"),
        "--smoke",
        "--daskval",
        "permutation",
        "--pydvl",
        "permutation",
        "--pydvl-python",
        str(python),
        "--max-seconds",
        "30",
        "--output",
        str(output),
    ]
    _run(command, timeout=300)
    report = json.loads(output.read_text())
    assert set(report["contenders"]) == {"daskval permutation", "pydvl permutation"}
    assert report["target"] > 0
    for record in report["contenders"].values():
        assert isinstance(record["reached"], bool)
        times = [t for t, _, _ in record["trajectory"]]
        assert times == sorted(times)
        assert record["evaluations"] > 0
    if all(r["reached"] for r in report["contenders"].values()):
        assert set(report["speedups"]) == {"daskval permutation"}
