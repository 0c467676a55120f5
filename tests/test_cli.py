"""The ``daskval`` command: help, argument errors, and small demo runs.

Demo runs go through the installed console script in a subprocess (its own
process group, under a timeout), as a user would run them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daskval.cli import COMMANDS, DEMO_OUTPUT, build_parser, main
from daskval.result import ValuationResult

N_TRAIN = 398  # breast_cancer: 569 rows, 70 % for training
TIMEOUT = 240.0
SMALL = ["--budget", "1500", "--progress-interval", "0.5"]


def daskval_command() -> list[str]:
    """The console script next to this interpreter, else ``python -m daskval``."""
    script = Path(sys.executable).with_name("daskval")
    return [str(script)] if script.exists() else [sys.executable, "-m", "daskval"]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"exit {self.returncode}\nstdout:\n{self.stdout}\n"
            f"stderr:\n{self.stderr[-3000:]}"
        )


def run(args: list[str], cwd: Path, timeout: float = TIMEOUT) -> Run:
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(args)} hung for {timeout:.0f} s\n{out}\n{err}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return Run(proc.returncode, out, err)


TABLE_ROW = re.compile(
    r"^\s+(\d+)\s+(\d+)\s+(benign|malignant)\s+([+-]\d\.\d{6})\s+(\d\.\d{6}|inf)$"
)


# what a run, finished, stopped on its budget or interrupted, never prints: a
# traceback, an error logged by Dask (the scheduler's ``assert ts.who_wants``
# at the end of a run, issue 14.2), the workers' cancellations after Ctrl-C
NEVER_IN_STDERR = (
    "Traceback",
    " - ERROR - ",
    "AssertionError",
    "CancelledError",
    "KeyboardInterrupt",
)


def assert_no_traceback(stderr: str) -> None:
    found = [
        line
        for line in stderr.splitlines()
        if any(pattern in line for pattern in NEVER_IN_STDERR)
    ]
    assert not found, f"{found}\nstderr:\n{stderr}"


def table(stdout: str, title: str) -> list[tuple[int, str, float]]:
    """(rank, name, value) rows of the table under the line ``title``."""
    lines = stdout.splitlines()
    start = lines.index(title) + 2  # skip the header line
    rows = []
    for line in lines[start:]:
        match = TABLE_ROW.match(line)
        if not match:
            break
        rows.append((int(match[1]), match[2], float(match[4])))
    return rows


# -- help and usage ------------------------------------------------------------------
def test_help_lists_commands(tmp_path: Path) -> None:
    result = run([*daskval_command(), "--help"], cwd=tmp_path)
    assert result.returncode == 0, result
    assert "usage: daskval" in result.stdout
    for command in COMMANDS:
        assert command.name in result.stdout


def test_demo_help(tmp_path: Path) -> None:
    result = run([*daskval_command(), "demo", "--help"], cwd=tmp_path)
    assert result.returncode == 0, result
    for option in ("--budget", "--samples", "--seed", "--output", "--workers"):
        assert option in result.stdout
    assert DEMO_OUTPUT in "".join(result.stdout.split())  # argparse wraps at "-"
    assert "breast_cancer" in result.stdout


def test_python_dash_m_daskval(tmp_path: Path) -> None:
    result = run([sys.executable, "-m", "daskval", "--version"], cwd=tmp_path)
    assert result.returncode == 0, result
    assert result.stdout.startswith("daskval ")


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--budget", "0"],
        ["demo", "--budget", "many"],
        ["demo", "--seed", "-1"],
        ["demo", "--truncation", "1.5"],
        ["demo", "--budget", "10", "--samples", "10"],
        ["demo", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
        ["demo", "--scheduler", "nonsense://x"],
        ["nope"],
    ],
)
def test_bad_arguments_exit_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_unwritable_output_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    began = time.monotonic()
    missing = tmp_path / "missing" / "values.csv"
    assert main(["demo", "-o", str(missing)]) == 1
    assert main(["demo", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"the directory {missing.parent} does not exist" in err
    assert "is a directory" in err
    assert time.monotonic() - began < 5  # no cluster was started


def test_unreachable_scheduler_fails_with_a_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    assert main(["demo", "--scheduler", address]) == 1
    err = capsys.readouterr().err
    assert (
        f"daskval demo: error: could not connect to the scheduler at {address}" in err
    )


def test_every_command_has_a_parser() -> None:
    parser = build_parser()
    required = {"report": ["values.npz"]}  # positional arguments
    for command in COMMANDS:
        args = parser.parse_args([command.name, *required.get(command.name, [])])
        assert args._command is command


# -- demo runs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    """A small demo on the embedded cluster, writing the default CSV in its cwd."""
    cwd = tmp_path_factory.mktemp("demo")
    return run([*daskval_command(), "demo", *SMALL], cwd=cwd), cwd


def test_demo_writes_one_row_per_training_point(demo_run: tuple[Run, Path]) -> None:
    result, cwd = demo_run
    assert result.returncode == 0, result
    frame = pd.read_csv(cwd / DEMO_OUTPUT)
    assert list(frame.columns) == ["name", "value", "stderr", "count", "index"]
    assert len(frame) == N_TRAIN
    assert sorted(frame["index"]) == list(range(N_TRAIN))
    assert frame["name"].is_unique
    assert np.isfinite(frame["value"]).all()
    assert (frame["count"] > 0).all()
    assert f"wrote {N_TRAIN} values to {cwd / DEMO_OUTPUT}" in result.stdout


def test_demo_prints_dashboard_progress_and_tables(demo_run: tuple[Run, Path]) -> None:
    result, cwd = demo_run
    assert result.returncode == 0, result
    out = result.stdout
    assert re.search(r"Dask dashboard: http://127\.0\.0\.1:\d+/status", out), out
    assert re.search(r"\d+\.\d%\s+[\d,]+ evaluations", out), out
    lowest = table(out, "10 lowest-valued training points")
    highest = table(out, "10 highest-valued training points")
    assert [r[0] for r in lowest] == list(range(1, 11)), out
    assert [r[0] for r in highest] == list(range(1, 11)), out
    low_values = [r[2] for r in lowest]
    high_values = [r[2] for r in highest]
    assert low_values == sorted(low_values)
    assert high_values == sorted(high_values, reverse=True)
    assert max(low_values) <= min(high_values)

    # the tables agree with the CSV
    frame = pd.read_csv(cwd / DEMO_OUTPUT, dtype={"name": str}).set_index("name")
    ordered = frame["value"].sort_values(kind="stable")
    assert low_values == pytest.approx(ordered.iloc[:10].round(6).tolist(), abs=1e-6)
    assert high_values == pytest.approx(
        ordered.iloc[::-1].iloc[:10].round(6).tolist(), abs=1e-6
    )
    assert frame.loc[lowest[0][1], "value"] == pytest.approx(low_values[0], abs=1e-6)
    # the budget is exact: evaluations never exceed it
    match = re.search(r"([\d,]+) permutations, ([\d,]+) evaluations", out)
    assert match, out
    assert 0 < int(match[2].replace(",", "")) <= 1500


def test_demo_prints_no_traceback(demo_run: tuple[Run, Path]) -> None:
    result, _ = demo_run
    assert result.returncode == 0, result
    assert_no_traceback(result.stderr)


def test_demo_on_a_running_cluster_gives_the_same_values(
    demo_run: tuple[Run, Path], client: object, tmp_path: Path
) -> None:
    """--scheduler: same seed and budget, same values as on the embedded cluster."""
    embedded, cwd = demo_run
    assert embedded.returncode == 0, embedded
    address = client.scheduler.address  # type: ignore[attr-defined]
    out = tmp_path / "remote.csv"
    result = run(
        [*daskval_command(), "demo", *SMALL, "--scheduler", address, "-o", str(out)],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result
    assert f"connecting to the Dask scheduler at {address}" in result.stdout
    here = pd.read_csv(cwd / DEMO_OUTPUT)
    there = pd.read_csv(out)
    np.testing.assert_allclose(there["value"], here["value"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(there["count"], here["count"])


def test_demo_samples_top_and_workers(tmp_path: Path) -> None:
    out = tmp_path / "values.csv"
    result = run(
        [
            *daskval_command(),
            "demo",
            "--samples",
            "3",
            "--top",
            "3",
            "--workers",
            "1",
            "--seed",
            "7",
            "-o",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result
    assert "1 workers, 1 threads" in result.stdout
    assert len(table(result.stdout, "3 lowest-valued training points")) == 3
    assert len(table(result.stdout, "3 highest-valued training points")) == 3
    assert "3 permutations," in result.stdout
    frame = pd.read_csv(out)
    assert len(frame) == N_TRAIN
    assert (frame["count"] == 3).all()


def test_demo_ctrl_c_keeps_what_was_merged(tmp_path: Path) -> None:
    """SIGINT mid-run: exit 130, and the samples merged so far are reported."""
    out = tmp_path / "values.csv"
    proc = subprocess.Popen(
        [*daskval_command(), "demo", "--progress-interval", "0.5", "-o", str(out)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + TIMEOUT
        for line in proc.stdout:
            seen.append(line)
            match = re.search(r"\s([\d,]+) permutations  \(budget", line)
            if match and int(match[1].replace(",", "")) > 0:
                break  # mid-run, with something merged
            assert time.monotonic() < deadline, "".join(seen)
        else:
            pytest.fail("the demo ended before any progress:\n" + "".join(seen))
        proc.send_signal(signal.SIGINT)  # the main process only, like Ctrl-C's
        rest, err = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    stdout = "".join(seen) + rest
    assert proc.returncode == 130, f"{stdout}\n{err}"
    assert_no_traceback(err)
    assert "interrupted" in stdout
    assert "status interrupted" in stdout
    frame = pd.read_csv(out)
    assert len(frame) == N_TRAIN
    assert (frame["count"] > 0).all()


# -- README and CI agree ------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2, "README.md needs the set-up and the test command"
    setup, tests = blocks[0].strip(), blocks[1].strip()
    assert 'pip install -e ".[test]"' in setup
    assert setup.endswith("daskval demo")
    ci = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"^TEST_COMMAND=\((.*)\)$", ci, flags=re.M)
    assert match, ".ci/run must define TEST_COMMAND=(...)"
    assert match[1].split() == tests.split()
    assert '"${TEST_COMMAND[@]}"' in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


# -- run, report, compare --------------------------------------------------------------
# Runs go to the session's two-worker cluster (--scheduler): no cluster start-up
# per command. Errors must come before any cluster work, with a message.
def scheduler(client: object) -> str:
    return client.scheduler.address  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (
            "run",
            [
                "--config",
                "--dataset",
                "--data",
                "--target",
                "--model-param",
                "--budget",
            ],
        ),
        ("report", ["RESULT", "--output", "--top"]),
        ("compare", ["--methods", "--label-noise", "--plot", "--png", "--curves"]),
    ],
)
def test_command_help(tmp_path: Path, command: str, options: list[str]) -> None:
    result = run([*daskval_command(), command, "--help"], cwd=tmp_path)
    assert result.returncode == 0, result
    assert f"usage: daskval {command}" in result.stdout
    assert "examples:" in result.stdout
    for option in options:
        assert option in result.stdout


def test_run_from_a_yaml_config_writes_parquet_and_reports(
    tmp_path: Path, client: object
) -> None:
    """A config file sets the options, the command line overrides one (the
    budget); the values go to parquet, the whole result to .npz, and
    ``report`` turns it into HTML that holds every value."""
    (tmp_path / "experiment.yaml").write_text(
        "dataset: breast_cancer\n"
        "train-size: 60\n"
        "label_noise: 0.2\n"
        "method: banzhaf\n"
        "budget: 100000\n"
        "output: values.parquet\n"
        "result: values.npz\n"
    )
    result = run(
        [
            *daskval_command(),
            "run",
            "--config",
            "experiment.yaml",
            "--budget",
            "200",
            "--scheduler",
            scheduler(client),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result
    frame = pd.read_parquet(tmp_path / "values.parquet")
    assert len(frame) == 60
    assert list(frame.columns) == ["value", "stderr", "count", "index"]
    assert np.isfinite(frame["value"]).all()
    assert "banzhaf of the 60 training points of breast_cancer" in result.stdout
    assert re.search(r"noisy-label detection: F1 \d\.\d{3}", result.stdout)
    match = re.search(r"([\d,]+) evaluations \(0 failed\)", result.stdout)
    assert match and int(match[1].replace(",", "")) <= 200, result.stdout

    report = run([*daskval_command(), "report", "values.npz"], cwd=tmp_path)
    assert report.returncode == 0, report
    html = (tmp_path / "values.html").read_text()
    assert "daskval-values" in html
    assert "banzhaf of 60 players" in html
    saved = ValuationResult.load(tmp_path / "values.npz")
    np.testing.assert_array_equal(saved.values, frame["value"])
    assert saved.metadata["dataset"]["corrupted"] == sorted(
        saved.metadata["dataset"]["corrupted"]
    )
    assert len(saved.metadata["dataset"]["corrupted"]) == 12


def test_run_from_a_toml_config_writes_csv_and_reports_it(
    tmp_path: Path, client: object
) -> None:
    (tmp_path / "run.toml").write_text(
        'dataset = "diabetes"\ntrain_size = 40\nmethod = "data-oob"\n'
        'budget = 50\noutput = "values.csv"\n'
    )
    result = run(
        [
            *daskval_command(),
            "run",
            "--config",
            "run.toml",
            "--scheduler",
            scheduler(client),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result
    frame = pd.read_csv(tmp_path / "values.csv")
    assert len(frame) == 40
    assert "(regression)" in result.stdout
    report = run(
        [*daskval_command(), "report", "values.csv", "-o", "r.html", "--top", "3"],
        cwd=tmp_path,
    )
    assert report.returncode == 0, report
    assert "wrote the report of 40 values" in report.stdout
    assert (tmp_path / "r.html").stat().st_size > 10_000


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _user_table(path: Path, n: int = 60, **extra: object) -> Path:
    """A small classification table of a user's: features a, b, c, target
    ``label`` (and ``extra`` constant columns), as CSV or parquet."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(
        label=(x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int), **extra
    )
    if path.suffix == ".parquet":
        frame.set_axis([f"row{i}" for i in range(n)]).to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "--method", "shapely"], 2, "expected a method"),
        (["run", "--dataset", "mnist"], 2, "expected a bundled dataset"),
        (["run", "-o", "values.txt"], 1, "expected a .csv or .parquet file"),
        (["run", "--config", "missing.yaml"], 1, "missing.yaml"),
        (["run", "--config", "{bad_key}"], 1, "unknown option(s) colour"),
        (["run", "--config", "{bad_value}"], 1, "budget: expected a positive integer"),
        (["run", "--config", "{both}"], 1, "--workers or --scheduler, not both"),
        (["run", "--dataset", "diabetes", "--method", "knn-shapley"], 1, "classif"),
        (["run", "--dataset", "diabetes", "--model", "logistic"], 1, "regression"),
        (["report", "missing.npz"], 1, "no such file"),
        (["report", "{not_result}"], 1, "not a values table"),
        (["report"], 2, "the following arguments are required"),
        (["compare", "--label-noise", "0"], 1, "--label-noise must be above 0"),
        (["compare", "--methods", "loo,nope"], 2, "expected comma-separated"),
        (["compare", "--plot", "plot.png"], 1, "expected an .html file"),
        (["compare", "--train-size", "5000"], 1, "has 569"),
        (["run", "--data", "{rows}"], 1, "--data needs --target COLUMN"),
        (["run", "--target", "label"], 1, "--target needs --data FILE"),
        (
            ["run", "--data", "{rows}", "--target", "nope"],
            1,
            "--target nope: not a column of rows.csv",
        ),
        (["run", "--data", "missing.csv", "--target", "y"], 1, "no such file"),
        (
            ["run", "--data", "{rows}", "--dataset", "wine"],
            1,
            "--dataset or --data, not both",
        ),
        (
            ["run", "--data", "{text}", "--target", "label"],
            1,
            "the columns ['city'] are not numeric",
        ),
        (
            ["run", "--data", "{rows}", "--target", "label", "--model", "nope:Model"],
            1,
            "--model nope:Model: cannot import nope",
        ),
        (
            ["run", "--data", "{rows}", "--target", "label", "--model", "os:path"],
            1,
            "os has no class path",
        ),
        (["run", "--model", "sklearn.svm"], 2, "expected a model or module:Class"),
        (
            ["run", "--data", "{rows}", "--target", "label", "--model-param", "C"],
            2,
            "expected name=value",
        ),
        (
            ["run", "--data", "{rows}", "--target", "label", "--model-param", "Q=1"],
            1,
            "--model-param: Invalid parameter 'Q'",
        ),
    ],
)
def test_command_errors_exit_non_zero_before_any_work(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    files = {
        "{bad_key}": write(tmp_path / "a.yaml", "colour: red\n"),
        "{bad_value}": write(tmp_path / "b.toml", "budget = -3\n"),
        "{both}": write(tmp_path / "c.yml", "workers: 2\nscheduler: tcp://x:1\n"),
        "{not_result}": write(tmp_path / "d.csv", "a,b\n1,2\n"),
        "{rows}": str(_user_table(tmp_path / "rows.csv")),
        "{text}": str(_user_table(tmp_path / "text.csv", city="oslo")),
    }
    args = [files.get(a, a) for a in args]
    began = time.monotonic()
    result = run([*daskval_command(), *args], cwd=tmp_path)
    assert result.returncode == code, result
    assert message in result.stderr, result
    assert "Traceback" not in result.stderr, result
    assert "cluster ready" not in result.stdout  # failed before any cluster work
    assert time.monotonic() - began < 60


# floors for the noisy-label comparison: breast_cancer, 100 training points,
# 20 flipped labels. A random valuation scores F1 ~0.3 and AUROC ~0.5.
F1_FLOOR, AUROC_FLOOR = 0.6, 0.9
RANDOM_F1_CEILING, RANDOM_AUROC_CEILING = 0.45, 0.7


def test_compare_ranks_methods_against_the_random_baseline(
    tmp_path: Path, client: object
) -> None:
    """Done-when: on a bundled dataset with 20% flipped labels, compare ranks
    the methods by F1 and AUROC, in a table and a plot, with a random row."""
    result = run(
        [
            *daskval_command(),
            "compare",
            "--methods",
            "data-oob,knn-shapley,banzhaf,tmc-shapley,loo",
            "--budget",
            "300",
            "--scheduler",
            scheduler(client),
            "-o",
            "table.csv",
            "--plot",
            "plot.html",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result
    assert_no_traceback(result.stderr)
    table = pd.read_csv(tmp_path / "table.csv").set_index("method")
    print(result.stdout)  # the table, for the log
    assert set(table.index) == {
        "data-oob",
        "knn-shapley",
        "banzhaf",
        "tmc-shapley",
        "loo",
        "random",
    }
    ranks = list(zip(table["f1"], table["auroc"], strict=True))
    assert ranks == sorted(ranks, reverse=True)  # best F1 first, then AUROC
    assert (table["n_corrupted"] == 20).all()
    assert table.loc["random", "f1"] < RANDOM_F1_CEILING
    assert table.loc["random", "auroc"] < RANDOM_AUROC_CEILING
    # Data-OOB finds them best by F1; KNN-Shapley ranks them almost perfectly
    # (AUROC) but its long low tail makes the 2-means low cluster small
    assert table.loc["data-oob", "f1"] >= F1_FLOOR, table
    for method in ("data-oob", "knn-shapley"):
        assert table.loc[method, "auroc"] >= AUROC_FLOOR, table
        assert table.loc[method, "f1"] >= table.loc["random", "f1"] + 0.1, table
    assert table.loc["banzhaf", "f1"] >= 0.45, table
    assert table.loc["banzhaf", "auroc"] >= 0.75, table
    # the printed table is the file's, in the same order
    printed = result.stdout.split("best F1 first (then AUROC):")[1].splitlines()
    listed = [line.split()[0] for line in printed[3 : 3 + len(table)]]
    assert listed == list(table.index), result.stdout
    html = (tmp_path / "plot.html").read_text()
    assert "daskval-detection" in html
    assert "data-oob" in html


# -- daskval run on the user's own table -----------------------------------------
def test_run_on_your_own_csv_writes_values_that_join_back_without_a_traceback(
    tmp_path: Path, client: object
) -> None:
    """A real ``daskval run --data``: one value per training row (70 % of the
    file), named by its row number in the file, and nothing in the whole
    output that looks like a traceback or an error log."""
    rows = _user_table(tmp_path / "rows.csv")
    result = run(
        [
            *daskval_command(),
            "run",
            "--data",
            "rows.csv",
            "--target",
            "label",
            "--model",
            "sklearn.linear_model:LogisticRegression",
            "--model-param",
            "C=0.5",
            "--budget",
            "300",
            "--progress-interval",
            "0.5",
            "--scheduler",
            scheduler(client),
            "-o",
            "values.csv",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result
    output = result.stdout + result.stderr
    for sign in ("Traceback", "ERROR", "Exception", "Warning"):
        assert sign not in output, result
    assert "tmc-shapley of the 42 training points of rows.csv" in result.stdout
    values = pd.read_csv(tmp_path / "values.csv", index_col="name")
    assert len(values) == 42 and np.isfinite(values["value"]).all()
    data = pd.read_csv(rows)
    assert set(values.index) <= set(data.index) and values.index.is_unique
    joined = data.join(values, how="inner")
    assert len(joined) == 42


def test_run_data_reads_parquet_and_keeps_its_index(tmp_path: Path) -> None:
    """The parquet file's index names the rows (no cluster: the inputs only)."""
    import argparse

    from daskval.cli import _run_inputs

    path = _user_table(tmp_path / "rows.parquet")
    args = argparse.Namespace(
        data=path, target="label", train_size=None, label_noise=0.0, seed=0, model=None
    )
    inputs = _run_inputs(args)
    assert (inputs.task, inputs.n_train, inputs.name) == (
        "classification",
        42,
        "rows.parquet",
    )
    assert set(inputs.dataset.names) <= {f"row{i}" for i in range(60)}


def test_run_data_parquet_without_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _user_table(tmp_path / "rows.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow fails
    code = main(
        ["run", "--data", str(path), "--target", "label", "-o", str(tmp_path / "v.csv")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "parquet tables need pyarrow" in err and "Traceback" not in err
