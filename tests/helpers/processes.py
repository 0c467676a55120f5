"""Real ``dask scheduler`` / ``dask worker`` processes on 127.0.0.1 for tests.

Every process starts in its own session, so that stopping it stops its
children too (a ``dask worker`` runs a nanny and a worker process); they are
stopped (SIGTERM, then SIGKILL) when the ``with`` block ends, failures
included.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# as on the embedded cluster: one BLAS thread per single-threaded worker
BLAS_ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
DASK_CLI = str(Path(sys.executable).with_name("dask"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and one certificate (for 127.0.0.1) that every party uses."""

    ca: Path
    cert: Path
    key: Path

    def cli_args(self) -> list[str]:
        return [
            "--tls-ca-file",
            str(self.ca),
            "--tls-cert",
            str(self.cert),
            "--tls-key",
            str(self.key),
        ]


def make_certificates(directory: Path) -> TlsFiles:
    """A self-signed CA and a certificate it signs, made with ``openssl``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = (
        directory / "node.key",
        directory / "node.csr",
        directory / "node.pem",
    )
    ext = directory / "node.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    ca_subject, node_subject = "/CN=daskval test CA", "/CN=127.0.0.1"
    commands = [
        [
            *"req -x509 -newkey rsa:2048 -nodes -days 2".split(),
            *["-keyout", str(ca_key), "-out", str(ca), "-subj", ca_subject],
            *["-addext", "basicConstraints=critical,CA:TRUE"],
            *["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ],
        [
            *"req -newkey rsa:2048 -nodes".split(),
            *["-keyout", str(key), "-out", str(csr), "-subj", node_subject],
        ],
        [
            *["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key)],
            *["-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(ext)],
        ],
    ]
    for args in commands:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
    return TlsFiles(ca, cert, key)


_PROBE = """
import distributed
try:
    import daskval
except ImportError:
    print("no daskval")
"""


def without_daskval(cwd: Path) -> tuple[list[str], dict[str, str]]:
    """An interpreter command and environment with dask but no daskval.

    ``python -S`` skips site-packages and its ``.pth`` files (daskval's
    editable install is one); the site-packages directory is then put back
    on ``PYTHONPATH``, where ``.pth`` files are not read. Raises if daskval
    can still be imported there.
    """
    paths = dict.fromkeys(
        [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "PYTHONPATH": os.pathsep.join(paths),
    }
    command = [sys.executable, "-S"]
    probe = subprocess.run(
        [
            *command,
            "-c",
            _PROBE,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.stdout.strip() != "no daskval":
        raise RuntimeError(
            "could not make an environment without daskval: "
            f"{probe.stdout!r} {probe.stderr[-2000:]!r}"
        )
    return command, env


class Processes:
    """Started processes, stopped together."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd or self.logs,
            start_new_session=True,  # its own process group: children stop too
        )
        log.close()
        self.running.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for _, proc in reversed(self.running):
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in self.running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal(proc, signal.SIGKILL)  # the group: stray children too
            proc.wait()
        self.running.clear()


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class RemoteCluster:
    """Addresses of a running scheduler and where its processes log."""

    address: str
    dashboard_port: int
    processes: Processes

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{self.processes.log(name)}"
            for name, _ in self.processes.running
        )


def _wait_for_file(
    path: Path, proc: subprocess.Popen[bytes], what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start within {timeout} s")
        time.sleep(0.1)


@contextmanager
def remote_cluster(
    workdir: Path,
    *,
    n_workers: int = 2,
    tls: TlsFiles | None = None,
    scheduler_without_daskval: bool = False,
    timeout: float = 60.0,
) -> Iterator[RemoteCluster]:
    """``dask scheduler`` and ``n_workers`` ``dask worker`` processes (one
    thread each) on 127.0.0.1, stopped when the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    processes = Processes(workdir)
    with ExitStack() as stack:
        stack.callback(processes.stop)
        port, dashboard = free_port(), free_port()
        scheduler_file = workdir / "scheduler.json"
        protocol = "tls" if tls is not None else "tcp"
        tls_args = [] if tls is None else tls.cli_args()
        python, env = [sys.executable], dict(os.environ)
        if scheduler_without_daskval:
            python, env = without_daskval(workdir)
        scheduler = processes.start(
            "scheduler",
            [
                *python,
                *[DASK_CLI, "scheduler", "--host", "127.0.0.1", "--port", str(port)],
                *["--protocol", protocol, "--scheduler-file", str(scheduler_file)],
                *["--dashboard-address", f"127.0.0.1:{dashboard}", *tls_args],
            ],
            env=env,
        )
        cluster = RemoteCluster(f"{protocol}://127.0.0.1:{port}", dashboard, processes)
        try:
            _wait_for_file(scheduler_file, scheduler, "dask scheduler", timeout)
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{cluster.logs()}") from exc
        worker_env = {**os.environ, **BLAS_ONE_THREAD}
        for i in range(n_workers):
            processes.start(
                f"worker-{i}",
                [
                    *[DASK_CLI, "worker", cluster.address, "--name", f"remote-{i}"],
                    *"--host 127.0.0.1 --nthreads 1 --nworkers 1".split(),
                    *"--memory-limit 2GiB --no-dashboard --death-timeout 60".split(),
                    *tls_args,
                ],
                env=worker_env,
            )
        yield cluster


@contextmanager
def loopback_cluster(n_workers: int) -> Iterator[tuple[Any, Any]]:
    """A LocalCluster of single-threaded worker processes on 127.0.0.1 (BLAS
    pinned, as on the embedded cluster) and a client of it, not the default."""
    import logging

    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
            env=dict(BLAS_ONE_THREAD),
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield cluster, client


def kill_worker_mid_run(
    client: Any, handle: Any, after_samples: int, pick: Callable[[], str | None]
) -> tuple[str, int, bool]:
    """SIGKILL the worker ``pick()`` names once the run has merged
    ``after_samples`` samples, and wait until the scheduler removed it.

    Returns the victim's address, the samples merged at the kill, and whether
    the run was still going when the worker was gone.
    """
    victim = None
    while victim is None:
        assert not handle.done(), "the run ended before the kill"
        time.sleep(0.05)
        if handle.progress["n_samples"] >= after_samples:
            victim = pick()
    pids = client.run(os.getpid)
    at_kill = handle.progress["n_samples"]
    os.kill(pids[victim], signal.SIGKILL)
    while victim in client.nthreads():
        time.sleep(0.01)
    return victim, at_kill, not handle.done()
