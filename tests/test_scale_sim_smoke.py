"""benchmarks/scale_sim.py at its smoke size (1 process x 8 threads, 3 s,
small n, 5 ms sleeping calls): it runs, cleans up, and reports every field
for every workload. Timings here mean nothing; only that the counts are
positive and the ratios plausible is checked.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "scale_sim.py"
WORKLOADS = ("perm100", "perm1000", "msr10k", "msr100k")
RATIOS = ("daskval_vs_ideal", "plain_vs_ideal", "daskval_vs_plain")


def _check_row(row: dict[str, Any]) -> None:
    name = row["workload"]
    for field in RATIOS:
        assert 0 < row[field] <= 1.5, (name, field, row[field])
    daskval, plain = row["daskval"], row["plain"]
    assert daskval["error"] is None, (name, daskval["error"])
    assert daskval["status"] == "completed", name
    assert daskval["n_evaluations"] > 0 and daskval["n_samples"] > 0, name
    assert plain["n_evaluations"] > 0 and plain["tasks_finished"] > 0, name
    assert plain["calls_per_task"] == daskval["calls_per_task"]["value"] >= 1
    assert math.isfinite(daskval["client_cpu_per_sample"])
    assert daskval["client_cpu_per_sample"] > 0, name
    tasks = daskval["tasks"]
    assert tasks["leaf"] > 0 and tasks["merge"] > 0, (name, tasks)
    workers = daskval["workers"]
    assert workers["bytes_received_total"] >= 0
    share = workers["busiest_share"]  # None: nothing moved (one worker process)
    assert share is None or 0 < share <= 1, (name, share)
    assert workers["busiest_peak_rss_bytes"] > 0, name
    assert daskval["cluster_peak_rss_bytes"] > workers["busiest_peak_rss_bytes"]
    assert row["ideal_calls"] == row["threads"] * row["seconds"] / row["call_seconds"]


def test_scale_sim_smoke(tmp_path: Path) -> None:
    output = tmp_path / "x.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(output.read_text())
    assert report["smoke"] and report["seconds"] == 3.0
    assert report["failures"] == []
    rows = {row["workload"]: row for row in report["rows"]}
    assert set(rows) == set(WORKLOADS)
    for row in rows.values():
        assert (row["processes"], row["threads_per_process"]) == (1, 8)
        _check_row(row)
    # the processes' logs are removed after a run that went well
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
