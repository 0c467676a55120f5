"""The embedded cluster and the ``if __name__ == "__main__":`` guard.

Worker processes start with ``spawn`` and re-import the main script. A script
that calls ``fit()`` (with no client) at import time must fail fast with
daskval's ScriptGuardError and the fix, never hang; the same script with the
guard must run. Each case runs in a fresh interpreter, in its own process
group, under a timeout that turns a hang into a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# a hang shows up as a timeout; a healthy run takes ~2-10 s on 2 cores
TIMEOUT = 180.0

PREAMBLE = """\
import json

import daskval as dv


def game(players):
    # additive: player 0 is worth 3, the others 1 each
    return float(len(players)) + (2.0 if 0 in players else 0.0)


def value():
    u = dv.FunctionUtility(game, n=4)
    v = dv.ShapleyValuation(u, sampler=dv.ExactSampler(), seed=0).fit()
    print("VALUES", json.dumps(v.result_.values.tolist()), flush=True)
"""
EXPECTED = [3.0, 1.0, 1.0, 1.0]

UNGUARDED = PREAMBLE + "\n\nvalue()\n"
UNGUARDED_INLINE = PREAMBLE.replace("def value():\n", "if True:\n")
GUARDED = PREAMBLE + '\n\nif __name__ == "__main__":\n    value()\n'


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def values(self) -> list[float]:
        for line in self.stdout.splitlines():
            if line.startswith("VALUES "):
                return list(json.loads(line[len("VALUES ") :]))
        raise AssertionError(
            f"no VALUES line (exit {self.returncode})\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )


def run_python(
    args: list[str], cwd: Path, stdin: str | None = None, timeout: float = TIMEOUT
) -> Run:
    """Run ``python <args>``; a run past ``timeout`` is killed and fails the test."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: we can kill the workers
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(
            f"python {' '.join(args)[:60]} hung: no exit after {timeout:.0f} s\n"
            f"stdout:\n{out}\nstderr:\n{err[-3000:]}"
        )
    finally:
        # reap worker processes a failed start may have left behind
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return Run(proc.returncode, out, err, time.monotonic() - began)


def assert_guard_error(run: Run, script: Path) -> None:
    assert run.returncode != 0, f"expected a failure, got:\n{run.stdout}"
    assert "VALUES" not in run.stdout
    assert "daskval.exceptions.ScriptGuardError" in run.stderr, run.stderr[-3000:]
    assert 'if __name__ == "__main__":' in run.stderr
    assert str(script) in run.stderr
    # the one alternative that works: a cluster the script does not start
    # (one started at import time re-imports just the same)
    assert "fit(client=Client(ADDRESS))" in run.stderr
    assert "dask scheduler" in run.stderr
    assert "start a cluster yourself" not in run.stderr
    # refused before any worker process started
    assert "Nanny" not in run.stderr, run.stderr[-3000:]


@pytest.mark.parametrize(
    "source", [UNGUARDED, UNGUARDED_INLINE], ids=["call", "inline"]
)
def test_unguarded_script_fails_fast_with_the_fix(tmp_path: Path, source: str) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(source)
    run = run_python([str(script)], cwd=tmp_path)
    assert_guard_error(run, script)
    assert run.seconds < 60, f"took {run.seconds:.1f} s to refuse"


def test_the_error_names_the_offending_line(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    run = run_python([str(script)], cwd=tmp_path)
    line = UNGUARDED.splitlines().index("value()") + 1
    assert f"(line {line})" in run.stderr, run.stderr[-2000:]


def test_guarded_script_runs(tmp_path: Path) -> None:
    script = tmp_path / "guarded.py"
    script.write_text(GUARDED)
    run = run_python([str(script)], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.values() == pytest.approx(EXPECTED, abs=1e-9)


def test_python_dash_c_runs(tmp_path: Path) -> None:
    """``python -c``: there is no file to re-import, so no guard is needed."""
    run = run_python(["-c", UNGUARDED], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.values() == pytest.approx(EXPECTED, abs=1e-9)


@pytest.mark.parametrize("source", [GUARDED, UNGUARDED], ids=["guarded", "unguarded"])
def test_stdin_script_runs(tmp_path: Path, source: str) -> None:
    """``python - < script.py``: no file to re-import, so it runs like ``-c``.

    This used to fail fast with distributed's "Nanny failed to start" (the
    spawned workers tried to run a file called ``<stdin>``); it must neither
    hang nor fail.
    """
    run = run_python(["-"], cwd=tmp_path, stdin=source)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Nanny failed to start" not in run.stderr
    assert run.values() == pytest.approx(EXPECTED, abs=1e-9)


def test_guarded_script_by_relative_path_runs(tmp_path: Path) -> None:
    """``python sub/script.py``: the workers find the script from the same cwd."""
    script = tmp_path / "sub" / "guarded.py"
    script.parent.mkdir()
    script.write_text(GUARDED)
    run = run_python(["sub/guarded.py"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.values() == pytest.approx(EXPECTED, abs=1e-9)


README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path: Path) -> None:
    """The README's Python example, saved as a script, runs and prints values."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    run = run_python([str(script)], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    header, *rows = run.stdout.strip().splitlines()
    assert header.split() == ["value", "stderr", "count", "index"]
    assert len(rows) == 6  # the index name line, then head()'s five rows
