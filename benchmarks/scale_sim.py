"""How daskval's engine scales to hundreds of worker threads, by simulation.

The utility's calls sleep (``time.sleep``: the GIL is released and no CPU is
used), so 128-512 worker threads fit on a 2-core machine and what is left to
measure is the engine's own overhead: planning and sizing tasks, submitting
them, merging the workers' partial states and fetching them. The reference is
plain batched Dask over the same sleeping calls, on the same cluster, in the
same run, for the same wall time.

For every configuration (worker processes x threads) a real ``dask
scheduler`` and ``dask worker`` processes are started on 127.0.0.1 (BLAS
pinned to one thread, nanny per worker process), so this process is only the
client and its CPU time is the client's own. For every workload, on that
cluster:

- daskval: ``ShapleyValuation`` with ``PermutationSampler`` (perm100,
  perm1000) or ``BanzhafValuation`` with ``MSRSampler`` (msr10k, msr100k) of
  a :class:`SleepyGame`, ``stop=MaxTime(T)``, run with ``progress=False,
  dashboard=False, memo=False``;
- plain Dask: a window of tasks (2 per worker thread, ``client.map``),
  refilled in batches from ``distributed.as_completed(..., with_results=True)
  .batches()`` for T seconds, each task making as many sleeping calls as
  daskval's leaf tasks did (their median samples, read from the leaf keys'
  ranges ``daskval-leaf-<run>-<start>-<stop>``, times the plan's
  ``max_evaluations_per_sample()``; the JSON says which source was used).
  The calls of the tasks finished by T are counted, the rest are cancelled
  (and stop calling at T, so the threads are soon free again).

The ideal is ``threads x T / call_seconds`` calls. Reported per workload and
thread count: daskval's calls (``result.n_evaluations``) / ideal, plain Dask's
/ ideal, their ratio, the client's CPU seconds per merged sample during the
daskval run, the share of the bytes that workers received from other workers
that went to the busiest one (wire bytes, from the senders'
``transfer_outgoing_log``, cleared before the run), that worker's peak RSS
(``VmHWM``, reset before the run), and daskval's finished tasks by kind (the
scheduler's task stream). Both use the same ideal, over T: daskval's
result also holds what it merged after T, until its run ended (the ``dv s``
column, ``elapsed_seconds``), which favours it slightly.

The machine is shared: a daskval run is cancelled (and says so) when this
process and its cluster hold more RSS than ``--max-memory-gb`` (default half
the machine's memory); their peak is recorded. Every row is written to the
JSON as soon as it is measured; a cluster that fails skips the rest of its
configuration, leaves its processes' logs and makes the exit status 1.

Usage::

    python benchmarks/scale_sim.py                       # 128 and 256 threads, 25 s
    python benchmarks/scale_sim.py --threads 128 256 512 --seconds 25
    python benchmarks/scale_sim.py --workloads perm100 msr10k
    python benchmarks/scale_sim.py --smoke               # 8 threads, 3 s (< 1 min)

Results go to ``benchmarks/results/scale-sim-<UTC time>.json`` (``--output``)
and a table on stdout. Run it on an otherwise idle machine: the client, the
scheduler and every worker's event loop share the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cpumeter import cpu_seconds_of, descendants
from rssmeter import rss_bytes_of

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # tests/helpers: the process helpers

from helpers.processes import (  # noqa: E402
    BLAS_ONE_THREAD,
    DASK_CLI,
    Processes,
)

# thread count -> (worker processes, threads each)
CONFIGS: dict[int, tuple[int, int]] = {128: (4, 32), 256: (8, 32), 512: (8, 64)}
SMOKE_CONFIG = (1, 8)
DEFAULT_THREADS = (128, 256)
DEFAULT_SECONDS = 25.0
SMOKE_SECONDS = 3.0
SMOKE_CALL_SECONDS = 0.005
PLAIN_TASKS_PER_THREAD = 2
# the workers keep this many transfers in each of their logs (default 1000)
TRANSFER_LOG_LENGTH = 200_000
# a daskval run that has not ended this long after its budget is cancelled
GRACE_SECONDS = 20.0
IDLE_TIMEOUT = 90.0
START_TIMEOUT = 120.0
SCHEDULER_IDLE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Workload:
    """A simulated valuation: its estimator, players and seconds per call."""

    name: str
    method: str  # "permutation" (Shapley) or "msr" (Banzhaf)
    n: int
    call_seconds: float
    smoke_n: int


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("perm100", "permutation", 100, 0.010, 20),
        Workload("perm1000", "permutation", 1000, 0.010, 50),
        Workload("msr10k", "msr", 10_000, 0.5, 200),
        Workload("msr100k", "msr", 100_000, 0.5, 2000),
    )
}


@dataclass(frozen=True)
class SleepyGame:
    """u(S) = |S| / n after sleeping ``seconds``: a call that costs no CPU."""

    n: int
    seconds: float

    def __call__(self, players: np.ndarray) -> float:
        time.sleep(self.seconds)
        return len(players) / self.n


def plain_task(game: SleepyGame, calls: int, deadline: float) -> tuple[int, bool]:
    """``calls`` sleeping calls; gives up once ``deadline`` (epoch seconds) has
    passed, so that the threads are free soon after the reference ends.
    Returns the calls made and whether they were all made."""
    players = np.arange(game.n // 2)
    for done in range(calls):
        if time.time() > deadline:
            return done, False
        game(players)
    return calls, True


# -- the cluster -----------------------------------------------------------------


def _worker_env() -> dict[str, str]:
    path = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
    )
    return {
        **os.environ,
        **BLAS_ONE_THREAD,
        "PYTHONPATH": path,  # the workers can import this module by name
        "DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH": str(TRANSFER_LOG_LENGTH),
    }


def _wait_for(path: Path, processes: Processes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        dead = [name for name, p in processes.running if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(processes.log(name) for name, _ in processes.running)
            raise RuntimeError(f"the scheduler did not start ({dead}):\n{logs}")
        time.sleep(0.1)


@contextmanager
def cluster(
    n_processes: int, n_threads: int, workdir: Path
) -> Iterator[tuple[Any, Processes]]:
    """A scheduler and ``n_processes`` x ``n_threads`` worker threads on
    127.0.0.1 and a client of them; every process is stopped at the end."""
    from distributed import Client

    workdir.mkdir(parents=True, exist_ok=True)
    scheduler_file = workdir / "scheduler.json"
    processes = Processes(workdir)
    try:
        processes.start(
            "scheduler",
            [
                *[DASK_CLI, "scheduler", "--host", "127.0.0.1", "--port", "0"],
                *["--scheduler-file", str(scheduler_file), "--no-dashboard"],
                # should this process be killed: the scheduler ends itself, and
                # the workers follow it (--death-timeout)
                *["--idle-timeout", str(int(SCHEDULER_IDLE_TIMEOUT))],
            ],
        )
        _wait_for(scheduler_file, processes, START_TIMEOUT)
        processes.start(
            "workers",
            [
                *[DASK_CLI, "worker", "--scheduler-file", str(scheduler_file)],
                *["--nworkers", str(n_processes), "--nthreads", str(n_threads)],
                *["--host", "127.0.0.1", "--nanny", "--no-dashboard"],
                *["--death-timeout", "60", "--local-directory", str(workdir)],
            ],
            env=_worker_env(),
        )
        with Client(
            scheduler_file=str(scheduler_file), set_as_default=False, timeout=60
        ) as client:
            client.wait_for_workers(n_processes, timeout=START_TIMEOUT)
            client.run(_warm_up)
            yield client, processes
    finally:
        processes.stop()


def _warm_up() -> None:
    import daskval  # noqa: F401  (imported once, outside every timed run)


def _scheduler_busy(dask_scheduler: Any) -> int:
    queued = len(getattr(dask_scheduler, "queued", ()))
    unrunnable = len(getattr(dask_scheduler, "unrunnable", ()))
    processing = sum(len(ws.processing) for ws in dask_scheduler.workers.values())
    return processing + queued + unrunnable


def _threads_busy(dask_worker: Any) -> int:
    return len(dask_worker.active_threads)


def wait_idle(client: Any, timeout: float = IDLE_TIMEOUT) -> float:
    """Wait until no task is processing or queued and no worker thread runs
    one (cancelled tasks keep their thread until they return); the seconds
    waited."""
    begin = time.monotonic()
    while time.monotonic() - begin < timeout:
        busy = client.run_on_scheduler(_scheduler_busy)
        busy += sum(client.run(_threads_busy).values())
        if busy == 0:
            break
        time.sleep(0.25)
    return time.monotonic() - begin


# -- worker-side accounting --------------------------------------------------------


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _reset_worker(dask_worker: Any) -> None:
    """Forget the transfers logged so far and reset the peak RSS."""
    dask_worker.transfer_incoming_log.clear()
    dask_worker.transfer_outgoing_log.clear()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux)
    except OSError:
        pass


def _read_worker(dask_worker: Any) -> dict[str, Any]:
    """What this worker sent, by requester, and its memory.

    The outgoing log's ``compressed`` is what ``comm.write`` put on the wire;
    the incoming log's ``total`` is ``sizeof`` of the objects received, which
    for objects Dask does not know is ``sys.getsizeof`` (a few dozen bytes
    whatever their arrays hold), so it is recorded but not used.
    """
    sent: Counter[str] = Counter()
    for entry in dask_worker.transfer_outgoing_log:
        sent[str(entry["who"])] += int(entry.get("compressed") or entry["total"])
    incoming, outgoing = (
        dask_worker.transfer_incoming_log,
        dask_worker.transfer_outgoing_log,
    )
    return {
        "sent_to": dict(sent),
        "incoming_transfers": len(incoming),
        "incoming_sizeof_bytes": int(sum(entry["total"] for entry in incoming)),
        "log_full": any(
            log.maxlen is not None and len(log) >= log.maxlen
            for log in (incoming, outgoing)
        ),
        "peak_rss_bytes": _proc_status_bytes("VmHWM:"),
        "rss_bytes": _proc_status_bytes("VmRSS:"),
    }


def worker_summary(per_worker: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Bytes workers received from other workers (wire bytes, from the
    senders' logs): the total, the busiest receiver's share and its peak RSS."""
    received = dict.fromkeys(per_worker, 0)
    for record in per_worker.values():
        for who, sent in record["sent_to"].items():
            if who in received:  # a worker; the client and scheduler are not
                received[who] += sent
    for address, record in per_worker.items():
        record["bytes_received"] = received[address]
    total = sum(received.values())
    busiest = max(received, key=lambda w: received[w])
    return {
        "bytes_received_total": total,
        "busiest_worker": busiest,
        "busiest_share": received[busiest] / total if total else None,
        "busiest_peak_rss_bytes": per_worker[busiest]["peak_rss_bytes"],
        "max_peak_rss_bytes": max(r["peak_rss_bytes"] for r in per_worker.values()),
        "transfer_log_full": any(r["log_full"] for r in per_worker.values()),
        "per_worker": per_worker,
    }


# -- daskval -------------------------------------------------------------------------

_LEAF = re.compile(r"^daskval-leaf-[0-9a-f]+-(\d+)-(\d+)")


def make_valuation(
    workload: Workload, n: int, call_seconds: float, seconds: float
) -> Any:
    """The workload's valuation of a :class:`SleepyGame`, stopped after ``seconds``."""
    import daskval as dv

    utility = dv.FunctionUtility(SleepyGame(n, call_seconds), n=n)
    if workload.method == "permutation":
        return dv.ShapleyValuation(
            utility,
            sampler=dv.PermutationSampler(),
            stop=dv.MaxTime(seconds),
            seed=0,
        )
    return dv.BanzhafValuation(
        utility, sampler=dv.MSRSampler(), stop=dv.MaxTime(seconds), seed=0
    )


def task_counts(records: list[dict[str, Any]], run_id: str) -> dict[str, Any]:
    """daskval's finished tasks of run ``run_id`` by kind, and the samples of
    its leaf tasks (from their keys, ``daskval-leaf-<run>-<start>-<stop>``)."""
    kinds: Counter[str] = Counter()
    leaf_sizes: list[int] = []
    for record in records:
        key = str(record.get("key", ""))
        if run_id not in key:
            continue
        kind = key.split("-")[1] if key.startswith("daskval-") else "other"
        kinds[kind] += 1
        match = _LEAF.match(key)
        if match:
            leaf_sizes.append(int(match.group(2)) - int(match.group(1)))
    return {
        "by_kind": dict(kinds),
        "leaf": kinds.get("leaf", 0),
        "merge": kinds.get("merge", 0),
        "samples_per_leaf_median": (
            float(np.median(leaf_sizes)) if leaf_sizes else None
        ),
        "samples_per_leaf_max": max(leaf_sizes) if leaf_sizes else None,
    }


class MemoryGuard:
    """Cancels a run when this process and its descendants (the cluster) hold
    more than ``limit`` bytes of RSS, before the machine runs out (the machine
    is shared); keeps the peak of that sum, polled every ``interval`` s."""

    def __init__(self, handle: Any, limit: int, interval: float = 0.5) -> None:
        self.handle, self.limit, self.interval = handle, limit, interval
        self.peak, self.tripped = 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> MemoryGuard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        root = os.getpid()
        while not self._stop.wait(self.interval):
            total = sum(rss_bytes_of(p) for p in {root, *descendants(root)})
            self.peak = max(self.peak, total)
            if total > self.limit and not self.tripped:
                self.tripped = True
                threading.Thread(target=self.handle.cancel, daemon=True).start()


def _await(handle: Any, timeout: float) -> tuple[Any, str | None]:
    """The run's result, or (None, why) if it failed or overran (then it is
    cancelled, waiting at most 30 s for that)."""
    try:
        return handle.result(timeout=timeout), None
    except TimeoutError:
        stopper = threading.Thread(target=handle.cancel, daemon=True)
        stopper.start()
        stopper.join(30)
        try:
            return handle.result(timeout=1), f"overran {timeout:.0f} s: cancelled"
        except Exception as exc:
            return None, f"overran {timeout:.0f} s, then {type(exc).__name__}: {exc}"
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def run_daskval(
    client: Any,
    scheduler_pid: int,
    workload: Workload,
    n: int,
    call_seconds: float,
    seconds: float,
    max_memory: int,
) -> dict[str, Any]:
    """One daskval run of ``seconds``: its counts, the client's CPU, the
    scheduler's CPU, daskval's tasks and the workers' transfers and memory.
    The run is cancelled if the cluster's RSS exceeds ``max_memory`` bytes."""
    from distributed import get_task_stream

    valuation = make_valuation(workload, n, call_seconds, seconds)
    per_sample = valuation.make_plan().max_evaluations_per_sample()
    client.run(_reset_worker)
    with get_task_stream(client=client) as stream:
        scheduler_cpu = cpu_seconds_of(scheduler_pid)
        cpu, wall = time.process_time(), time.perf_counter()
        handle = valuation.submit(client, progress=False, dashboard=False, memo=False)
        with MemoryGuard(handle, max_memory) as guard:
            result, error = _await(handle, seconds + GRACE_SECONDS)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        scheduler_after = cpu_seconds_of(scheduler_pid)
    if guard.tripped:
        error = f"cancelled: the cluster's RSS passed {max_memory / 2**30:.1f} GiB"
    record: dict[str, Any] = {
        "wall_seconds": wall,
        "client_cpu_seconds": cpu,
        "cluster_peak_rss_bytes": guard.peak,
        "calls_per_sample": per_sample,
        "scheduler_cpu_seconds": (
            None
            if scheduler_cpu is None or scheduler_after is None
            else scheduler_after - scheduler_cpu
        ),
        "error": error,
        "workers": worker_summary(client.run(_read_worker)),
    }
    if result is None:
        return record
    samples, calls = int(result.n_samples), int(result.n_evaluations)
    tasks = task_counts(stream.data, str(result.metadata.get("run_id", "")))
    record.update(
        status=result.status,
        n_samples=samples,
        n_evaluations=calls,
        elapsed_seconds=result.metadata.get("elapsed_seconds"),
        client_cpu_per_sample=cpu / samples if samples else None,
        tasks=tasks,
        calls_per_task=calls_per_task(calls, per_sample, tasks),
    )
    return record


def calls_per_task(
    calls: int, per_sample: int, tasks: dict[str, Any]
) -> dict[str, Any]:
    """The sleeping calls per task the reference makes, and where it came from:
    the median samples per leaf task x calls per sample (the plan's
    ``max_evaluations_per_sample()``), else calls / leaves, else one sample's
    calls."""
    if tasks["samples_per_leaf_median"]:
        value = round(tasks["samples_per_leaf_median"] * per_sample)
        return {"value": max(1, value), "source": "leaf keys x calls per sample"}
    if tasks["leaf"]:
        return {"value": max(1, calls // tasks["leaf"]), "source": "calls / leaves"}
    return {"value": per_sample, "source": "one sample (no task stream)"}


# -- plain Dask ----------------------------------------------------------------------


def run_plain(
    client: Any,
    game: SleepyGame,
    calls: int,
    threads: int,
    seconds: float,
    tasks_per_thread: int = PLAIN_TASKS_PER_THREAD,
) -> dict[str, Any]:
    """A window of ``tasks_per_thread x threads`` tasks of ``calls`` sleeping
    calls, refilled in batches as tasks finish (``as_completed(...).batches()``,
    results included), for ``seconds``; the calls of the tasks that finished
    by then."""
    from distributed import as_completed

    begin = time.time()
    deadline = begin + seconds

    def submit(k: int) -> list[Any]:
        return client.map(
            plain_task, [game] * k, [calls] * k, [deadline] * k, pure=False
        )

    pending = as_completed(
        submit(tasks_per_thread * threads),
        loop=client.loop,
        with_results=True,
        timeout=seconds,
    )
    finished = made = 0
    try:
        for batch in pending.batches():
            if time.time() > deadline:
                break
            complete = [done for _, (done, whole) in batch if whole]
            finished, made = finished + len(complete), made + sum(complete)
            pending.update(submit(len(batch)))
    except TimeoutError:  # dask.distributed.TimeoutError is the built-in one
        pass
    client.cancel(list(pending.futures))
    return {
        "calls_per_task": calls,
        "tasks_per_thread": tasks_per_thread,
        "tasks_finished": finished,
        "n_evaluations": made,
        "wall_seconds": time.time() - begin,
    }


# -- one row, the table ----------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What every measurement of a run shares."""

    seconds: float
    smoke: bool
    max_memory: int  # bytes of RSS of the cluster and client; a run is cancelled


def measure(
    client: Any,
    scheduler_pid: int,
    workload: Workload,
    threads: int,
    settings: Settings,
) -> dict[str, Any]:
    """daskval and plain Dask on one workload, on an idle cluster."""
    seconds = settings.seconds
    n = workload.smoke_n if settings.smoke else workload.n
    call_seconds = SMOKE_CALL_SECONDS if settings.smoke else workload.call_seconds
    ideal = threads * seconds / call_seconds
    row: dict[str, Any] = {
        "workload": workload.name,
        "method": workload.method,
        "n": n,
        "call_seconds": call_seconds,
        "threads": threads,
        "seconds": seconds,
        "ideal_calls": ideal,
        "idle_wait_seconds": [wait_idle(client)],
    }
    dask_run = run_daskval(
        client, scheduler_pid, workload, n, call_seconds, seconds, settings.max_memory
    )
    row["daskval"] = dask_run
    per_sample = dask_run["calls_per_sample"]
    row["idle_wait_seconds"].append(wait_idle(client))
    # a failed daskval run: tasks of one sample each
    calls = dask_run.get("calls_per_task", {}).get("value") or per_sample
    plain = run_plain(client, SleepyGame(n, call_seconds), calls, threads, seconds)
    row["plain"] = plain
    row["idle_wait_seconds"].append(wait_idle(client))
    daskval_calls = dask_run.get("n_evaluations")
    row["daskval_vs_ideal"] = None if daskval_calls is None else daskval_calls / ideal
    row["plain_vs_ideal"] = plain["n_evaluations"] / ideal
    row["daskval_vs_plain"] = (
        daskval_calls / plain["n_evaluations"]
        if daskval_calls is not None and plain["n_evaluations"]
        else None
    )
    return row


def _num(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _ms(record: dict[str, Any], field: str) -> float | None:
    value = record.get(field)
    return None if value is None else 1e3 * value


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}M"


def _tasks(row: dict[str, Any]) -> str:
    tasks = row["daskval"].get("tasks")
    if tasks is None:
        return "-"
    others = sum(tasks["by_kind"].values()) - tasks["leaf"] - tasks["merge"]
    return f"{tasks['leaf']}/{tasks['merge']}" + (f"+{others}" if others else "")


def _workers(row: dict[str, Any], field: str) -> Any:
    return row["daskval"]["workers"][field]


def _note(row: dict[str, Any]) -> str:
    return str(row["daskval"]["error"] or row["daskval"].get("status", ""))


COLUMNS: list[tuple[str, int, Callable[[dict[str, Any]], str]]] = [
    ("workload", 9, lambda r: r["workload"]),
    ("n", 7, lambda r: f"{r['n']:,}"),
    ("threads", 7, lambda r: str(r["threads"])),
    ("dv/ideal", 8, lambda r: _num(r["daskval_vs_ideal"], ".3f")),
    ("plain/ideal", 11, lambda r: _num(r["plain_vs_ideal"], ".3f")),
    ("dv/plain", 8, lambda r: _num(r["daskval_vs_plain"], ".3f")),
    ("dv s", 6, lambda r: _num(r["daskval"].get("elapsed_seconds"), ".1f")),
    ("cpu ms/sample", 13, lambda r: _num(_ms(r["daskval"], "client_cpu_per_sample"))),
    ("busiest in", 10, lambda r: _num(_workers(r, "busiest_share"), ".0%")),
    ("MB in", 7, lambda r: _mb(_workers(r, "bytes_received_total"))),
    ("peak RSS", 8, lambda r: _mb(_workers(r, "busiest_peak_rss_bytes"))),
    ("leaf/merge+", 13, _tasks),
    ("calls/task", 10, lambda r: str(r["plain"]["calls_per_task"])),
    ("note", 0, _note),
]


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a plain-text table."""
    head = "  ".join(name.rjust(width) for name, width, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append("  ".join(fn(row).rjust(width) for _, width, fn in COLUMNS))
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        choices=sorted(CONFIGS),
        default=list(DEFAULT_THREADS),
        help="worker thread counts: 128 = 4 x 32, 256 = 8 x 32, 512 = 8 x 64",
    )
    parser.add_argument("--seconds", type=float, default=None, help="budget T (25)")
    parser.add_argument(
        "--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS)
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 process x 8 threads, 3 s, small n, 5 ms calls",
    )
    parser.add_argument(
        "--max-memory-gb",
        type=float,
        default=None,
        help="cancel a daskval run when this process and its cluster hold more "
        "RSS than this (default: half of the machine's memory)",
    )
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args(argv)


def machine_memory() -> int:
    """MemTotal of /proc/meminfo, in bytes."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def plan_configs(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    """(threads, processes, threads per process) of every cluster to start."""
    if args.smoke:
        processes, per_process = SMOKE_CONFIG
        return [(processes * per_process, processes, per_process)]
    return [(t, *CONFIGS[t]) for t in dict.fromkeys(args.threads)]


def versions() -> dict[str, Any]:
    """Versions, where daskval was imported from, and the repository's commit
    with the files under daskval/ that differ from it."""
    import subprocess

    import dask
    import distributed

    import daskval

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", *argv], cwd=REPO, capture_output=True, text=True, check=False
        )
        return done.stdout.rstrip("\n")  # keeps porcelain's leading blanks

    return {
        "python": platform.python_version(),
        "daskval": daskval.__version__,
        "daskval_path": str(Path(daskval.__file__).parent),
        "git_head": git("rev-parse", "HEAD"),
        "git_daskval_changes": git("status", "--porcelain", "daskval").splitlines(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "numpy": np.__version__,
    }


def run_config(
    config: tuple[int, int, int],
    workloads: list[str],
    settings: Settings,
    workdir: Path,
    save: Callable[[dict[str, Any]], None],
) -> bool:
    """Every workload on one fresh cluster, each row saved as soon as it is
    measured; False if the cluster failed (the rest of it is skipped)."""
    threads, n_processes, per_process = config
    print(f"== {n_processes} x {per_process} = {threads} threads", flush=True)
    with cluster(n_processes, per_process, workdir / f"t{threads}") as (client, procs):
        scheduler_pid = procs.running[0][1].pid
        for name in workloads:
            try:
                row = measure(client, scheduler_pid, WORKLOADS[name], threads, settings)
            except Exception as exc:
                print(f"{name} at {threads} threads failed: {exc!r}", flush=True)
                dead = [n for n, p in procs.running if p.poll() is not None]
                save(
                    {
                        "workload": name,
                        "threads": threads,
                        "failed": repr(exc),
                        "exited": dead,
                    }
                )
                return False
            row["processes"], row["threads_per_process"] = n_processes, per_process
            save(row)
            print(table([row]).splitlines()[-1], flush=True)
    return True


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)  # unwinds: the clusters' finally blocks stop them


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    seconds = args.seconds or (SMOKE_SECONDS if args.smoke else DEFAULT_SECONDS)
    max_memory = (
        int(args.max_memory_gb * 2**30) if args.max_memory_gb else machine_memory() // 2
    )
    settings = Settings(seconds, args.smoke, max_memory)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    output = args.output or HERE / "results" / f"scale-sim-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    workdir = output.parent / f".scale-sim-{stamp}-{os.getpid()}"
    report: dict[str, Any] = {
        "command": [sys.executable, *sys.argv],
        "created_utc": stamp,
        "smoke": args.smoke,
        "seconds": seconds,
        "max_memory_bytes": max_memory,
        "machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()},
        "versions": versions(),
        "workloads": {w: asdict(WORKLOADS[w]) for w in args.workloads},
        "rows": [],
        "failures": [],
    }
    begin = time.monotonic()

    def save(row: dict[str, Any]) -> None:
        report["failures" if "failed" in row else "rows"].append(row)
        report["wall_seconds"] = time.monotonic() - begin
        report["machine"]["load_after"] = os.getloadavg()
        output.write_text(json.dumps(report, indent=1, default=str))

    print(table([]), flush=True)
    ok = [
        run_config(config, args.workloads, settings, workdir, save)
        for config in plan_configs(args)
    ]
    if all(ok):
        shutil.rmtree(workdir, ignore_errors=True)  # the processes' logs
    print()
    print(table(report["rows"]))
    for failure in report["failures"]:
        print(
            f"FAILED {failure['workload']} at {failure['threads']} threads: "
            f"{failure['failed']} (logs in {workdir})"
        )
    print(f"\n{time.monotonic() - begin:.0f} s; results written to {output}")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
