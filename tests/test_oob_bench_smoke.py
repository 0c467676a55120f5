"""benchmarks/oob_bench.py at a tiny size: every contender runs and does the
work it claims, and the report carries the ratios. Timings mean nothing here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_oob_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "data-oob.json"
    script = REPO / "benchmarks" / "oob_bench.py"
    done = subprocess.run(
        [sys.executable, str(script), "--smoke", "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["benchmark"] == "data-oob" and report["smoke"] is True
    runs = {r["contender"]: r for r in report["runs"]}
    assert set(runs) == {"bagging", "daskval", "daskval-repeat"}
    for record in runs.values():
        assert "error" not in record
        assert record["wall_seconds"] > 0 and record["cpu_seconds"] > 0
        # this process tree, the pool or the cluster included
        assert record["peak_pss_mb"] > 0 and record["processes"] >= 2
    assert runs["daskval"]["weighting"] == "sample_weight"
    assert runs["daskval-repeat"]["weighting"] == "repeat"
    for name in ("daskval", "daskval-repeat"):
        # every bootstrap fitted, and every point left out by at least one
        assert runs[name]["n_samples"] == report["estimators"]
        assert runs[name]["n_failed"] == 0
        ratios = report["summary"]["ratios"][f"{name}/bagging"]
        assert set(ratios) == {
            "wall_seconds",
            "cpu_seconds",
            "peak_rss_mb",
            "peak_pss_mb",
        }
    assert "daskval/bagging: wall" in done.stdout
