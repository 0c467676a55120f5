"""The dashboard tests again, on the oldest dask/distributed daskval supports.

The /daskval page uses distributed internals (daskval.dashboard.scheduler),
and a library cannot pin distributed, so its tests run on the newest release
(this environment) and on the oldest that pyproject.toml declares
(``dask[distributed]>=X``), in the environment .ci/oldest_distributed_venv.sh
builds. Locally, without that environment, this skips; in CI it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))
# what runs there: the browser tests of both pages and the report, and the
# events, bar and arguments
TESTS = ["tests/test_dashboard.py", "tests/test_progress.py"]


def declared_oldest() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'"dask\[distributed\]>=([0-9.]+)"', text)
    assert match, "pyproject.toml declares no dask[distributed]>= version"
    return match[1]


def oldest_python() -> Path:
    venv = Path(os.environ.get("DASKVAL_OLDEST_VENV") or ROOT / ".venv-oldest")
    python = venv / "bin" / "python"
    if not python.exists():
        reason = (
            f"no environment with the oldest distributed at {venv} "
            "(run .ci/oldest_distributed_venv.sh)"
        )
        if IN_CI:
            pytest.fail(f"CI needs the oldest-distributed tier: {reason}")
        pytest.skip(reason)
    return python


@pytest.mark.slow
def test_dashboard_tests_pass_on_the_oldest_supported_distributed() -> None:
    python = oldest_python()
    oldest = declared_oldest()
    version = subprocess.run(
        [str(python), "-c", "import distributed; print(distributed.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == oldest, f"{python} has distributed {version}, not {oldest}"
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = (run.stdout + run.stderr)[-4000:]
    assert run.returncode == 0, tail
    # every test ran: none skipped (the browser tier included)
    assert "skipped" not in run.stdout.splitlines()[-1], tail
