"""The SLURM tier: a real single-node SLURM (Debian's slurm-wlm and munge,
started here as root by .ci/slurm_single_node.sh) runs a valuation's workers
as two batch jobs through dask-jobqueue's SLURMCluster.

In CI (``CI`` set) it always runs and a missing piece fails it; elsewhere it
runs only with ``DASKVAL_SLURM=1`` (it configures and starts system daemons)
and says why it skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import Client
from helpers.processes import BLAS_ONE_THREAD
from helpers.reference import (
    N_SAMPLES,
    assert_same_values,
    small_data,
    small_valuation,
)

import daskval as dv
from daskval.engine.hpc import jobqueue_cluster

IN_CI = bool(os.environ.get("CI"))
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "slurm_single_node.sh"
DEPLOY = ROOT / "deploy"

pytestmark = pytest.mark.timeout(600)


def why_not() -> str | None:
    """Why the SLURM tier cannot run here (None: it can)."""
    if not IN_CI and os.environ.get("DASKVAL_SLURM") != "1":
        return (
            "the SLURM tier configures and starts slurmctld, slurmd and munged "
            "as root; opt in with DASKVAL_SLURM=1 (CI always runs it)"
        )
    if os.geteuid() != 0:
        return "the SLURM tier needs root (it starts the SLURM daemons)"
    for program in ("slurmctld", "slurmd", "munged", "sbatch", "squeue"):
        if shutil.which(program) is None and not os.path.exists(f"/usr/sbin/{program}"):
            return (
                f"{program} is not installed: bash .ci/slurm_single_node.sh install "
                "(Debian's slurm-wlm and munge)"
            )
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        return 'dask-jobqueue is not installed: pip install "daskval[hpc]"'
    return None


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    """A running single-node SLURM; stopped again if this fixture started it."""
    reason = why_not()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"the SLURM tier must run in CI: {reason}")
        pytest.skip(reason)
    started = subprocess.run(
        ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=180
    )
    if started.returncode != 0:
        pytest.fail(f"could not start SLURM:\n{started.stdout}\n{started.stderr}")
    try:
        yield
    finally:
        if started.stdout.strip().endswith("started"):
            subprocess.run(["bash", str(SCRIPT), "stop"], timeout=60, check=False)


def test_slurm_cluster_with_two_jobs_gives_the_local_values(
    slurm: None, client: Client, tmp_path: Path
) -> None:
    reference = small_valuation().fit(client=client, progress=False, dashboard=False)
    with (
        jobqueue_cluster(
            "slurm",
            queue="debug",
            cores=1,
            processes=1,
            memory="1GB",
            walltime="00:20:00",
            python=sys.executable,
            scheduler_options={"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"},
            log_directory=str(tmp_path / "logs"),
            local_directory=str(tmp_path / "workers"),
            job_script_prologue=[f"export {k}={v}" for k, v in BLAS_ONE_THREAD.items()],
            job_extra_directives=[f"--chdir={tmp_path}"],
        ) as cluster,
        Client(cluster, set_as_default=False) as slurm_client,
    ):
        cluster.scale(jobs=2)
        try:
            slurm_client.wait_for_workers(2, timeout=240)
        except TimeoutError as exc:
            queue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
            logs = "\n".join(
                p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*")
            )
            raise AssertionError(
                f"two SLURM jobs did not bring two workers:\n{queue}\n{logs}"
            ) from exc
        jobs = slurm_client.run(os.getenv, "SLURM_JOB_ID")
        result = small_valuation().fit(
            client=slurm_client, progress=False, dashboard=False
        )
    # each worker ran inside its own batch job
    assert len(jobs) == 2 and None not in jobs.values()
    assert len(set(jobs.values())) == 2, jobs
    assert_same_values(result.result_, reference.result_)


def test_whole_valuation_as_one_slurm_job(
    slurm: None, client: Client, tmp_path: Path
) -> None:
    """deploy/slurm/valuation.sbatch: scheduler, client and a worker as the
    three tasks of one job (overcommitted: this node has fewer cores)."""
    data = small_data()
    path = tmp_path / "data.npz"
    np.savez(
        path,
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
    )
    output = tmp_path / "values.npz"
    env = {
        **os.environ,
        "DASKVAL_PYTHON": sys.executable,
        "DASKVAL_RUNNER": str(DEPLOY / "slurm" / "run_valuation.py"),
    }
    batch = subprocess.run(
        [
            *["sbatch", "--wait", "--overcommit", "--ntasks=3", "--time=00:15:00"],
            *["--mem-per-cpu=1G", f"--output={tmp_path / 'job.out'}"],
            str(DEPLOY / "slurm" / "valuation.sbatch"),
            *[str(path), str(output), "--budget", str(N_SAMPLES), "--seed", "7"],
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    log = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
    assert batch.returncode == 0, f"{batch.stdout}{batch.stderr}\n{log[-4000:]}"
    assert f"daskval: {N_SAMPLES} samples" in log
    reference = small_valuation(dv.Dataset.from_npz(path))
    reference.fit(client=client, progress=False, dashboard=False)
    assert_same_values(dv.ValuationResult.load(output), reference.result_)
