"""pyDVL 0.10 as benchmarks.md drove it, run once, printing one JSON record.

Runs in pyDVL's own environment (numpy<2; see setup_pydvl_venv.sh) and
imports only pydvl, scikit-learn, numpy, joblib (which pyDVL parallelises
with) and the harness's own stdlib-only modules (workloads, cpumeter); never
daskval.

Permutation Shapley (W1, W4)::

    scorer = SupervisedScorer("accuracy", test, default=0, range=(0, 1))
    utility = ModelUtility(model, scorer, catch_errors=True, show_warnings=False)
    TMCShapleyValuation(utility, truncation=NoTruncation(),
                        is_done=MaxUpdates(P), seed=42).fit(train)

MSR Banzhaf (W2)::

    MSRBanzhafValuation(utility, is_done=MaxChecks(N), batch_size=1,
                        seed=42).fit(train)

(one check per processed subset, so exactly N subsets enter the result; see
the notes), and exact KNN-Shapley (W3)::

    KNNShapleyValuation(KNeighborsClassifier(5), test, progress=False).fit(train)

(pyDVL splits the test points into J chunks), all inside
``joblib.parallel_config(backend="loky", n_jobs=J)``. The peak summed RSS of
the runner and its descendants (the loky workers) over the timed stretch is
reported as ``peak_rss_bytes``.
The loky worker pool is started (and timed as start-up) before the
valuation, as daskval's cluster is; pyDVL may still restart it inside ``fit``.

Utility calls are counted per process by a thin ModelUtility subclass that
writes its running counts to a file (one ``pwrite`` per call, a few
microseconds against milliseconds per fit), so work done in workers and then
discarded is seen too. pyDVL evaluates u(empty) once per permutation (no fit)
and then all n prefixes; MSR evaluates one subset per sample.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cpumeter import CpuMeter
from pydvl.valuation import (
    Dataset,
    KNNShapleyValuation,
    MaxChecks,
    MaxUpdates,
    ModelUtility,
    MSRBanzhafValuation,
    NoTruncation,
    SupervisedScorer,
    TMCShapleyValuation,
)
from rssmeter import RssMeter
from workloads import (
    SEED,
    Workload,
    checksum,
    emit,
    import_modules,
    make_data,
    model_modules,
    model_of,
    runner_arguments,
    versions,
    workload_from_args,
)


class CountingModelUtility(ModelUtility):
    """pyDVL's ModelUtility, counting fits and empty calls into ``counter_dir``."""

    counter_dir: str | None = None
    _fd: int | None = None
    _fd_pid: int | None = None
    _fits = 0
    _empty = 0

    def __call__(self, sample: Any) -> float:
        if sample is None or len(sample.subset) == 0:
            self._empty += 1
        else:
            self._fits += 1
        self._record()
        return super().__call__(sample)

    def _record(self) -> None:
        if self.counter_dir is None:
            return
        if self._fd is None or self._fd_pid != os.getpid():
            # a fresh copy in this process (each task unpickles its own, and
            # pickling drops the counts): it writes to a file of its own
            name = f"{os.getpid()}-{uuid.uuid4().hex}"
            path = os.path.join(self.counter_dir, name)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            self._fd_pid = os.getpid()
        os.pwrite(self._fd, b"%12d %12d\n" % (self._fits, self._empty), 0)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_fd", "_fd_pid", "_fits", "_empty"):
            state.pop(key, None)
        return state


def read_counts(counter_dir: str) -> tuple[int, int, set[int]]:
    """Fits and empty calls summed over the counter files; the pids that wrote."""
    fits = empty = 0
    pids: set[int] = set()
    for path in Path(counter_dir).iterdir():
        text = path.read_text().split()
        if len(text) == 2:
            fits, empty = fits + int(text[0]), empty + int(text[1])
            pids.add(int(path.name.split("-")[0]))
    return fits, empty, pids


def start_pool(jobs: int, modules: list[str]) -> tuple[float, list[int]]:
    """Start and warm joblib's loky workers (in the active parallel_config).

    Warming up imports pyDVL and the model's modules in the workers, as
    daskval's workers are warmed up: imports are timed as start-up, not as
    valuation. Returns the seconds taken and the workers' pids.
    """
    from joblib import Parallel, delayed

    begin = time.perf_counter()
    pids: list[int] = []
    if jobs > 1:
        warm = delayed(import_modules)
        pids = Parallel()(
            warm(["pydvl.valuation", *modules], 0.2) for _ in range(2 * jobs)
        )
    return time.perf_counter() - begin, sorted(set(pids))


def make_valuation(workload: Workload, utility: CountingModelUtility) -> Any:
    """The workload's pyDVL valuation, as the notes drove it."""
    if workload.method == "msr":
        return MSRBanzhafValuation(
            utility, is_done=MaxChecks(workload.budget), batch_size=1, seed=SEED
        )
    return TMCShapleyValuation(
        utility,
        truncation=NoTruncation(),
        is_done=MaxUpdates(workload.budget),
        seed=SEED,
    )


def run_valuation(
    workload: Workload, counter_dir: str
) -> tuple[Any, float, dict[str, Any]]:
    """The workload's valuation over ``workload.budget`` samples."""
    x_train, y_train, x_test, y_test = make_data(workload.n_train, workload.n_test)
    model = model_of(workload)
    meter = CpuMeter().start()
    begin = time.perf_counter()
    train, test = Dataset(x_train, y_train), Dataset(x_test, y_test)
    scorer = SupervisedScorer("accuracy", test, default=0, range=(0, 1))
    utility = CountingModelUtility(
        model, scorer, catch_errors=True, show_warnings=False
    )
    utility.counter_dir = counter_dir
    valuation = make_valuation(workload, utility)
    valuation.fit(train)
    wall = time.perf_counter() - begin
    return valuation, wall, meter.stop()


def run_knn(
    workload: Workload,
) -> tuple[Any, float, dict[str, Any], dict[str, int]]:
    """pyDVL's exact KNN-Shapley; the valuation, wall, CPU and peak memory."""
    x_train, y_train, x_test, y_test = make_data(workload.n_train, workload.n_test)
    model = model_of(workload)
    memory = RssMeter().start()
    meter = CpuMeter().start()
    begin = time.perf_counter()
    train, test = Dataset(x_train, y_train), Dataset(x_test, y_test)
    valuation = KNNShapleyValuation(model, test, progress=False)
    valuation.fit(train)
    wall = time.perf_counter() - begin
    cpu = meter.stop()
    return valuation, wall, cpu, memory.stop()


def main_knn(workload: Workload, workers: int) -> None:
    """Run pyDVL's KNN-Shapley once and print its record."""
    from joblib import parallel_config

    with parallel_config(backend="loky", n_jobs=workers):
        startup, _ = start_pool(workers, model_modules(workload.model))
        valuation, wall, cpu, peak = run_knn(workload)
    emit(
        {
            "contender": "pydvl" if workers > 1 else "pydvl_1job",
            "workload": workload.id,
            "wall_seconds": wall,
            "cpu_seconds": cpu["cpu_seconds"],
            "startup_seconds": startup,
            "workers": workers,
            "samples": workload.n_test,
            "evaluations": workload.n_test,
            "fits": workload.n_test,  # one sort per test point
            "fits_performed": workload.n_test,
            "peak_rss_bytes": peak["peak_rss_bytes"],
            "peak_pss_bytes": peak["peak_pss_bytes"],
            "extra": {
                "values_checksum": checksum(valuation.result.values),
                "cpu_main_seconds": cpu["cpu_own_seconds"],
                "cpu_workers_seconds": cpu["cpu_children_seconds"],
                "versions": versions("pydvl", "numpy", "scikit-learn", "joblib"),
            },
        }
    )


def samples_and_fits(workload: Workload, valuation: Any) -> tuple[int, int]:
    """Samples in the result and the non-empty coalitions they evaluated."""
    if workload.method == "msr":
        # one check per processed subset, one fit each
        checks = int(valuation.is_done.count)
        return checks, checks
    samples = int(valuation.result.counts.max())
    # each permutation's n prefixes, as merged into the result
    return samples, samples * workload.n_train


def main() -> None:
    """Run pyDVL once and print its record."""
    from joblib import parallel_config

    args = runner_arguments(__doc__.splitlines()[0]).parse_args()
    workload = workload_from_args(args)
    if workload.method == "knn":
        main_knn(workload, args.workers)
        return
    if workload.method not in ("permutation", "msr"):
        raise SystemExit(f"pyDVL's {workload.method!r} runner is not implemented yet")
    counter_dir = tempfile.mkdtemp(prefix="daskval-bench-pydvl-")
    try:
        with parallel_config(backend="loky", n_jobs=args.workers):
            startup, pool_pids = start_pool(args.workers, model_modules(workload.model))
            valuation, wall, cpu = run_valuation(workload, counter_dir)
        fits_performed, empty_calls, eval_pids = read_counts(counter_dir)
    finally:
        shutil.rmtree(counter_dir, ignore_errors=True)
    counts = valuation.result.counts
    samples, fits = samples_and_fits(workload, valuation)
    emit(
        {
            "contender": "pydvl" if args.workers > 1 else "pydvl_1job",
            "workload": workload.id,
            "wall_seconds": wall,
            "cpu_seconds": cpu["cpu_seconds"],
            "startup_seconds": startup,
            "workers": args.workers,
            "samples": samples,
            "evaluations": fits_performed + empty_calls,
            "fits": fits,
            "fits_performed": fits_performed,
            "extra": {
                # permutations start with u(empty); an MSR subset is one fit
                "samples_started": empty_calls
                if workload.method == "permutation"
                else fits_performed,
                "cpu_main_seconds": cpu["cpu_own_seconds"],
                "cpu_workers_seconds": cpu["cpu_children_seconds"],
                "min_count": int(counts.min()),
                "max_count": int(counts.max()),
                "processes_evaluating": len(eval_pids),
                # False: pyDVL's fit started workers of its own
                "warm_pool_reused": not pool_pids or eval_pids <= set(pool_pids),
                "versions": versions("pydvl", "numpy", "scikit-learn", "joblib"),
            },
        }
    )


if __name__ == "__main__":
    main()
