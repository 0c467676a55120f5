"""dask-jobqueue: walltime handling, the job scripts of deploy/jobqueue.yaml,
and a valuation through jobqueue's LocalCluster (the real job scripts, run as
local processes instead of batch jobs)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import yaml
from distributed import Client
from helpers.reference import assert_same_values, small_valuation
from helpers.slow_games import slow_majority16

import daskval as dv
from daskval.engine.hpc import jobqueue_cluster, lifetime_args, parse_walltime

IN_CI = bool(os.environ.get("CI"))
if not IN_CI:
    pytest.importorskip("dask_jobqueue", reason='needs the hpc extra: "daskval[hpc]"')

# the clusters' schedulers listen on 127.0.0.1 only
ON_LOOPBACK = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
SHIPPED = Path(__file__).resolve().parents[1] / "deploy" / "jobqueue.yaml"


@pytest.mark.parametrize(
    ("walltime", "seconds"),
    [
        ("02:00:00", 7200),
        ("1-00:00:00", 86400),
        ("1-12", 129600),
        ("45:30", 2730),
        ("90", 5400),  # SLURM: bare minutes
        ("2h", 7200),
        (600, 600),
    ],
)
def test_walltime_formats(walltime: Any, seconds: float) -> None:
    assert parse_walltime(walltime) == seconds


def test_lifetime_leaves_the_margin_for_the_longest_lived_worker() -> None:
    args = lifetime_args("02:00:00")
    assert args == ["--lifetime", "6600s", "--lifetime-stagger", "300s"]
    lifetime, stagger = parse_walltime(args[1]), parse_walltime(args[3])
    assert lifetime + stagger == 7200 - 300
    assert lifetime_args("1h", margin="10m", stagger="2m")[1] == f"{3600 - 720}s"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"walltime": "soon"}, "walltime must be a batch walltime"),
        ({"walltime": "00:00:00"}, "walltime must be positive"),
        ({"walltime": "00:05:00"}, "too short for margin"),
        ({"walltime": "1h", "margin": "later"}, "margin must be a duration"),
    ],
)
def test_bad_walltimes_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lifetime_args(**kwargs)


def test_unknown_system_is_refused() -> None:
    with pytest.raises(ValueError, match="system must be one of"):
        jobqueue_cluster("lsf")


def shipped_config() -> dict[str, Any]:
    """deploy/jobqueue.yaml's sections over dask-jobqueue's defaults."""
    import dask_jobqueue  # noqa: F401  (its import registers those defaults)

    shipped = yaml.safe_load(SHIPPED.read_text())["jobqueue"]
    assert set(shipped) == {"slurm", "pbs"}
    return {
        f"jobqueue.{name}": {**dask.config.get(f"jobqueue.{name}"), **section}
        for name, section in shipped.items()
    }


def test_shipped_yaml_lifetimes_fit_in_the_walltime() -> None:
    for section in yaml.safe_load(SHIPPED.read_text())["jobqueue"].values():
        flags = section["worker-extra-args"]
        lifetime = parse_walltime(flags[flags.index("--lifetime") + 1])
        stagger = parse_walltime(flags[flags.index("--lifetime-stagger") + 1])
        # the longest-lived worker retires at least 5 minutes before the end
        assert lifetime + stagger <= parse_walltime(section["walltime"]) - 300


def test_slurm_job_script_of_the_shipped_config() -> None:
    with (
        dask.config.set(shipped_config()),
        jobqueue_cluster(
            "slurm", scheduler_options=ON_LOOPBACK, queue="debug"
        ) as cluster,
    ):
        script = cluster.job_script()
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    for directive in (
        "#SBATCH -J daskval-worker",
        "#SBATCH -p debug",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH -t 02:00:00",
        "#SBATCH -e daskval-logs/",
    ):
        assert any(line.startswith(directive) for line in lines), (directive, script)
    assert any(line.startswith("#SBATCH --mem=") for line in lines)
    for export in ("OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1"):
        assert f"export {export}" in lines
    (command,) = [line for line in lines if "distributed.cli.dask_worker" in line]
    assert command.startswith(sys.executable)
    assert "tcp://127.0.0.1:" in command
    for flag in ("--nthreads 1", "--nworkers 8", "--nanny", "--death-timeout 120"):
        assert flag in command, (flag, command)
    assert "--local-directory $TMPDIR" in command
    # jobqueue_cluster replaced the yaml's lifetime with the one it computed
    assert command.count("--lifetime ") == 1
    assert "--lifetime 6600s --lifetime-stagger 300s" in command


def test_pbs_job_script_of_the_shipped_config() -> None:
    with (
        dask.config.set(shipped_config()),
        jobqueue_cluster(
            "pbs", scheduler_options=ON_LOOPBACK, walltime="01:00:00"
        ) as cluster,
    ):
        script = cluster.job_script()
    lines = script.splitlines()
    for directive in (
        "#PBS -N daskval-worker",
        "#PBS -l select=1:ncpus=8:mem=32GB",
        "#PBS -l walltime=01:00:00",
    ):
        assert directive in lines, (directive, script)
    assert "export OMP_NUM_THREADS=1" in lines
    (command,) = [line for line in lines if "distributed.cli.dask_worker" in line]
    assert "--nthreads 1" in command and "--nworkers 8" in command
    assert "--lifetime 3120s --lifetime-stagger 180s" in command


@pytest.mark.timeout(240)
def test_jobqueue_local_cluster_gives_the_local_values(client: Client) -> None:
    reference = small_valuation().fit(client=client, progress=False, dashboard=False)
    with (
        jobqueue_cluster(
            "local",
            cores=1,
            processes=1,
            memory="2GiB",
            walltime="1h",
            scheduler_options=ON_LOOPBACK,
            python=sys.executable,
        ) as cluster,
        Client(cluster, set_as_default=False) as jq_client,
    ):
        script = cluster.job_script()
        assert "--lifetime 3120s" in script
        cluster.scale(jobs=2)
        jq_client.wait_for_workers(2, timeout=120)
        result = small_valuation().fit(
            client=jq_client, progress=False, dashboard=False
        )
        assert len(jq_client.nthreads()) == 2
    assert_same_values(result.result_, reference.result_)
    assert isinstance(result.result_, dv.ValuationResult)


BUDGET = 60


def slow_valuation() -> dv.ShapleyValuation:
    return dv.ShapleyValuation(
        dv.FunctionUtility(slow_majority16, 16),
        sampler=dv.PermutationSampler(),
        stop=dv.MaxSamples(BUDGET),
        seed=5,
    )


@pytest.mark.timeout(300)
def test_run_survives_workers_retiring_at_their_lifetime(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs of a 20 s walltime: workers retire after 4-8 s and adapt()
    replaces their jobs; the run (~10 s of work per worker, more under load)
    goes on and gets the fixed cluster's values."""
    # the jobs' workers import the game from tests/helpers
    tests = str(Path(__file__).resolve().parent)
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])),
    )
    fixed = slow_valuation().fit(client=client, progress=False, dashboard=False)
    with (
        # the cluster forgets a retired worker's job after 1 s instead of 15 s,
        # so that adapt() replaces it at once
        dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}),
        jobqueue_cluster(
            "local",
            cores=1,
            processes=1,
            memory="2GiB",
            walltime="20s",
            margin="12s",
            stagger="2s",
            scheduler_options=ON_LOOPBACK,
            python=sys.executable,
        ) as cluster,
        Client(cluster, set_as_default=False) as jq_client,
    ):
        assert "--lifetime 6s --lifetime-stagger 2s" in cluster.job_script()
        cluster.adapt(minimum_jobs=2, maximum_jobs=2, interval="500ms")
        jq_client.wait_for_workers(2, timeout=120)
        began = time.time()
        jq_client.get_task_stream()  # the scheduler records from now on
        result = slow_valuation().fit(client=jq_client, progress=False, dashboard=False)
        ran = {
            record["worker"]
            for record in jq_client.get_task_stream(start=began)
            if str(record["key"]).startswith("daskval-leaf")
        }
    # workers that started after others retired took tasks of the same run
    assert len(ran) > 2, ran
    assert result.result_.n_samples == fixed.result_.n_samples == BUDGET
    np.testing.assert_allclose(
        result.result_.values, fixed.result_.values, rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(result.result_.counts, fixed.result_.counts)


def test_importing_dask_jobqueue_through_daskval_keeps_ctrl_c() -> None:
    """dask_jobqueue's runner sets SIGINT to sys.exit at import; daskval's
    import puts Python's handler back, so Ctrl-C still stops a fit."""
    import subprocess
    import sys

    code = (
        "import signal\n"
        "from daskval.engine.hpc import _import_keeping_sigint\n"
        "_import_keeping_sigint('dask_jobqueue')\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "import dask_jobqueue.runner\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n" and "Traceback" not in done.stderr
