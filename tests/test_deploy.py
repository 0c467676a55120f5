"""deploy/: the launch scripts start a real cluster; the container files
(untested on a real cluster: no container runtime here) parse and name the
same image, valid ``dask`` commands and matching ports."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from distributed import Client
from distributed.cli import dask_scheduler, dask_worker
from helpers.processes import Processes, free_port

import daskval

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
IMAGE = f"daskval:{daskval.__version__}"


def check_cli(command: list[str]) -> None:
    """``command`` is ``dask scheduler|worker ...`` with options that the
    installed ``dask`` accepts (click parses them without running)."""
    assert command[0] == "dask", command
    cli = {"scheduler": dask_scheduler.main, "worker": dask_worker.main}[command[1]]
    cli.make_context(f"dask {command[1]}", list(command[2:]))


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_compose_file() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"scheduler", "worker"}
    scheduler, worker = services["scheduler"], services["worker"]
    assert scheduler["image"] == worker["image"] == IMAGE
    build = scheduler["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    )
    check_cli(scheduler["command"])
    assert scheduler["command"][:2] == ["dask", "scheduler"]
    assert option(scheduler["command"], "--port") == "8786"
    assert scheduler["ports"] == ["8786:8786", "8787:8787"]
    check_cli(worker["command"])
    assert worker["command"][:3] == ["dask", "worker", "tcp://scheduler:8786"]
    assert option(worker["command"], "--nthreads") == "1"
    assert worker["environment"]["OMP_NUM_THREADS"] == "1"


def _container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    (container,) = spec["spec"]["containers"]
    assert container["name"] == name
    return container


def test_kubernetes_daskcluster() -> None:
    manifest = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    assert manifest["apiVersion"] == "kubernetes.dask.org/v1"
    assert manifest["kind"] == "DaskCluster"
    name = manifest["metadata"]["name"]
    worker = _container(manifest["spec"]["worker"], "worker")
    scheduler_spec = manifest["spec"]["scheduler"]
    scheduler = _container(scheduler_spec, "scheduler")
    assert worker["image"] == scheduler["image"] == IMAGE
    # the operator passes the scheduler's address in DASK_SCHEDULER_ADDRESS
    check_cli(worker["args"])
    assert option(worker["args"], "--nthreads") == "1"
    assert option(worker["args"], "--name") == "$(DASK_WORKER_NAME)"
    check_cli(scheduler["args"])
    assert option(scheduler["args"], "--port") == "8786"
    ports = {p["name"]: p["containerPort"] for p in scheduler["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert option(scheduler["args"], "--dashboard-address") == ":8787"
    service = scheduler_spec["service"]
    assert service["selector"] == {
        "dask.org/cluster-name": name,
        "dask.org/component": "scheduler",
    }
    for port in service["ports"]:
        assert ports[port["targetPort"]] == port["port"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert scheduler[probe]["httpGet"]["port"] in ports
    worker_ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert worker_ports == {
        "http-dashboard": int(option(worker["args"], "--dashboard-address"))
    }


def test_dockerfile_builds_the_image_the_others_name() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)$", text, flags=re.MULTILINE)
    match = re.fullmatch(r"ghcr\.io/dask/dask:(\d+)\.(\d+)\.(\d+)-py3\.\d+", base)
    assert match is not None, base
    # at least the oldest dask/distributed daskval supports (2024.12.1)
    assert tuple(int(x) for x in match.groups()) >= (2024, 12, 1)
    assert f"-t {IMAGE} ." in text
    assert '"/src/daskval[hpc,parquet]"' in text


@pytest.mark.timeout(180)
def test_launch_scripts_start_a_cluster(tmp_path: Path) -> None:
    scheduler_file = tmp_path / "scheduler.json"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DASKVAL_SCHEDULER_HOST": "127.0.0.1",
        "DASKVAL_SCHEDULER_PORT": str(free_port()),
        "DASKVAL_DASHBOARD_ADDRESS": f"127.0.0.1:{free_port()}",
        "DASKVAL_SCHEDULER_FILE": str(scheduler_file),
        "DASKVAL_WORKER_HOST": "127.0.0.1",
        "DASKVAL_NWORKERS": "2",
        "DASKVAL_MEMORY_LIMIT": "1GiB",
        "DASKVAL_LIFETIME": "10m",
        "DASKVAL_LIFETIME_STAGGER": "1m",
    }
    processes = Processes(tmp_path)
    try:
        processes.start("scheduler", ["bash", str(DEPLOY / "scheduler.sh")], env=env)
        processes.start(
            "workers", ["bash", str(DEPLOY / "worker.sh"), "--no-dashboard"], env=env
        )
        with Client(
            scheduler_file=str(scheduler_file), timeout="60s", set_as_default=False
        ) as client:
            client.wait_for_workers(2, timeout=90)
            assert set(client.nthreads().values()) == {1}
            assert set(client.run(os.getenv, "OMP_NUM_THREADS").values()) == {"1"}
            assert client.scheduler.address.startswith("tcp://127.0.0.1:")
    except Exception as exc:
        logs = "\n".join(
            f"--- {n} ---\n{processes.log(n)}" for n in ("scheduler", "workers")
        )
        raise AssertionError(f"{exc}\n{logs}") from exc
    finally:
        processes.stop()
