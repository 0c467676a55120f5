"""The engine's own unit costs, for docs/scaling.md's extrapolation.

Measures, on a real LocalCluster of worker processes on 127.0.0.1:

* **per task**: the wall time of a batch of no-op tasks submitted and
  gathered through ``submit_packed`` (how daskval submits every task), per
  task, with all worker threads busy; and the scheduler's share of it
  (its process CPU over the batch, read with ``run_on_scheduler``);
* **per merge**: the worker-side CPU of merging two ``Partial`` states of n
  players (``Partial.merge``, what every combine and link does per input),
  and the pickled size of one state;
* **per fetch**: the wall time for the client to receive one state of n
  players from a worker (``Future.result``).

Usage::

    python benchmarks/engine_costs.py [--workers 2] [--threads 1] [--tasks 2000]
        [--players 100 10000 100000] [--output FILE.json]

Prints a table and writes JSON (default ``benchmarks/results/engine-costs-
<UTC time>.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, LocalCluster

from daskval.accumulate import Moments, Partial
from daskval.engine.packed import submit_packed

RESULTS = Path(__file__).resolve().parent / "results"


def _noop(i: int) -> int:
    return i


def _state(n: int, start: int = 0, stop: int = 1) -> Partial:
    rng = np.random.default_rng(start)
    return Partial(start, stop, {"m": Moments.from_samples(rng.normal(size=(1, n)))})


def _scheduler_cpu(dask_scheduler: Any = None) -> float:
    import time as _time

    return _time.process_time()


def per_task(client: Client, n_tasks: int) -> dict[str, float]:
    """Seconds per no-op task, end to end and on the scheduler."""
    futures = [submit_packed(client, _noop, i) for i in range(50)]  # warm up
    client.gather(futures)
    cpu_before = client.run_on_scheduler(_scheduler_cpu)
    begin = time.perf_counter()
    futures = [submit_packed(client, _noop, i) for i in range(n_tasks)]
    client.gather(futures)
    wall = time.perf_counter() - begin
    cpu = client.run_on_scheduler(_scheduler_cpu) - cpu_before
    del futures
    return {"wall_per_task": wall / n_tasks, "scheduler_cpu_per_task": cpu / n_tasks}


def per_merge(n: int, repeats: int = 20) -> dict[str, float]:
    """CPU seconds of one merge of two n-player states, and a state's bytes."""
    a, b = _state(n, 0, 1), _state(n, 1, 2)
    a.merge(b)
    begin = time.process_time()
    for _ in range(repeats):
        a.merge(b)
    merge = (time.process_time() - begin) / repeats
    begin = time.process_time()
    for _ in range(repeats):
        blob = pickle.dumps(a, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)
    pickling = (time.process_time() - begin) / repeats
    return {"merge_cpu": merge, "pickle_roundtrip_cpu": pickling, "bytes": len(blob)}


def per_fetch(client: Client, n: int, repeats: int = 10) -> float:
    """Wall seconds (median) for the client to receive one n-player state
    that is already computed on a worker."""
    times = []
    for i in range(repeats):
        future = client.submit(_state, n, i, i + 1, pure=False)
        while future.status != "finished":
            time.sleep(0.005)
        begin = time.perf_counter()
        future.result()
        times.append(time.perf_counter() - begin)
        del future
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument(
        "--players", type=int, nargs="+", default=[100, 10_000, 100_000]
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    record: dict[str, Any] = {"workers": args.workers, "threads": args.threads}
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=args.threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        record["task"] = per_task(client, args.tasks)
        record["states"] = {
            str(n): {**per_merge(n), "fetch_wall": per_fetch(client, n)}
            for n in args.players
        }
    task = record["task"]
    print(
        f"per task: {task['wall_per_task'] * 1e3:.2f} ms wall, "
        f"{task['scheduler_cpu_per_task'] * 1e3:.2f} ms scheduler CPU"
    )
    print(
        f"{'players':>9} {'bytes':>10} {'merge ms':>9} {'pickle ms':>10}"
        f" {'fetch ms':>9}"
    )
    for n, row in record["states"].items():
        print(
            f"{n:>9} {row['bytes']:>10} {row['merge_cpu'] * 1e3:>9.3f} "
            f"{row['pickle_roundtrip_cpu'] * 1e3:>10.3f}"
            f" {row['fetch_wall'] * 1e3:>9.2f}"
        )
    output = args.output
    if output is None:
        RESULTS.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        output = RESULTS / f"engine-costs-{stamp}.json"
    output.write_text(json.dumps(record, indent=2))
    print(f"written: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
