"""daskval on a freshly started LocalCluster, or its evaluation path without Dask.

``--mode cluster`` (the contender): start a LocalCluster (worker processes,
one thread each, 127.0.0.1; start-up timed separately), then time

    dv.ShapleyValuation(dv.ModelUtility(model, dv.Dataset(...), scoring="accuracy"),
                        sampler=dv.PermutationSampler(), stop=dv.MaxSamples(P),
                        seed=42).fit(client=client)

(W1, W4), for MSR Banzhaf (W2)

    dv.BanzhafValuation(utility, sampler=dv.MSRSampler(), stop=dv.MaxSamples(N),
                        seed=42).fit(client=client)

or for exact KNN-Shapley (W3; K from the workload's KNeighborsClassifier)

    KNNShapleyValuation(dv.Dataset(...), k=5).fit(client=client)

The peak summed RSS (and PSS) of the runner and its descendants (client,
scheduler, workers) over the timed stretch: ``peak_rss_bytes`` (``peak_pss_bytes``).

``--mode sequential`` (a diagnostic): the same plan, the same samples, run in
this process through daskval's worker-side code path (anchors, then one range
of samples) with no Dask at all. Its time per evaluation against the ideal's
isolates the cost of daskval's evaluation path; against the cluster run's, the
engine's overhead. It uses daskval internals (``make_plan``,
``evaluate_anchors``, ``evaluate_range``), so it may need updating when they
change.

Run by benchmarks/run.py in a fresh process, in daskval's environment.
"""

from __future__ import annotations

import time
from typing import Any

from cpumeter import CpuMeter
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

import daskval as dv
from daskval.methods.knn import KNNShapleyValuation

Arrays = tuple[Any, Any, Any, Any]


METHODS = ("permutation", "msr", "knn")


def make_valuation(workload: Workload, arrays: Arrays, model: Any) -> dv.Valuation:
    """The workload's valuation, built as a user would."""
    data = dv.Dataset(*arrays)
    if workload.method == "knn":
        return KNNShapleyValuation(data, k=model.n_neighbors)
    utility = dv.ModelUtility(model, data, scoring="accuracy")
    stop = dv.MaxSamples(workload.budget)
    if workload.method == "msr":
        return dv.BanzhafValuation(
            utility, sampler=dv.MSRSampler(), stop=stop, seed=SEED
        )
    return dv.ShapleyValuation(
        utility, sampler=dv.PermutationSampler(), stop=stop, seed=SEED
    )


def empty_anchors(valuation: dv.Valuation) -> int:
    """How many of the plan's one-off coalitions are empty (they fit nothing)."""
    return sum(len(c) == 0 for c in valuation.make_plan().anchors())


def start_cluster(
    workers: int, modules: list[str]
) -> tuple[Any, Any, dict[str, float]]:
    """daskval's own LocalCluster of ``workers`` processes, warmed up.

    The cluster is the one ``daskval.engine.cluster.local_cluster`` gives
    users (one thread per worker, BLAS pinned, no profiler, daskval imported).
    Warming up also imports the model's modules on every worker (what a worker
    otherwise does on its first task): the ideal loop's imports are not timed
    either. Both steps are timed, as start-up.
    """
    from daskval.engine.cluster import local_cluster

    begin = time.perf_counter()
    context = local_cluster(workers)
    client = context.__enter__()
    client.wait_for_workers(workers)
    started = time.perf_counter()
    client.run(
        import_modules,
        ["daskval", "daskval.engine.tasks", "daskval.methods.knn", *modules],
    )
    warmed = time.perf_counter()
    return context, client, {"cluster": started - begin, "warmup": warmed - started}


def run_cluster(workload: Workload, workers: int) -> dict[str, Any]:
    """Time one valuation on a started cluster (start-up reported apart)."""
    arrays, model = make_data(workload.n_train, workload.n_test), model_of(workload)
    # KNN-Shapley fits no model: its workers need daskval alone (scikit-learn
    # would add ~100 MB to each)
    modules = [] if workload.method == "knn" else model_modules(workload.model)
    cluster, client, startup = start_cluster(workers, modules)
    try:
        memory = RssMeter().start()
        meter = CpuMeter().start()
        begin = time.perf_counter()
        valuation = make_valuation(workload, arrays, model).fit(client=client)
        wall = time.perf_counter() - begin
        cpu = meter.stop()
        peak = memory.stop()
    finally:
        cluster.__exit__(None, None, None)
    result = valuation.result_
    meta = result.metadata
    return {
        "wall_seconds": wall,
        "startup_seconds": startup["cluster"] + startup["warmup"],
        "cpu_seconds": cpu["cpu_seconds"],
        "workers": workers,
        "samples": int(result.n_samples),
        "evaluations": int(result.n_evaluations),
        "peak_rss_bytes": peak["peak_rss_bytes"],
        "peak_pss_bytes": peak["peak_pss_bytes"],
        "extra": {
            "peak_rss_processes": peak["peak_processes"],
            "values_checksum": checksum(result.values),
            "cpu_client_scheduler_seconds": cpu["cpu_own_seconds"],
            "cpu_workers_nannies_seconds": cpu["cpu_children_seconds"],
            "cluster_start_seconds": startup["cluster"],
            "warmup_seconds": startup["warmup"],
            "engine_elapsed_seconds": meta.get("elapsed_seconds"),
            "compute_seconds": meta.get("compute_seconds"),
            "n_workers_seen": meta.get("n_workers"),
            "task_bytes": meta.get("task_bytes"),
            "n_failed": int(result.n_failed),
            "status": result.status,
            "min_count": int(result.counts.min()),
            "max_count": int(result.counts.max()),
        },
    }


def run_sequential(workload: Workload) -> dict[str, Any]:
    """daskval's worker-side evaluation path for the same samples, no Dask."""
    from daskval.plan import evaluate_anchors, evaluate_range

    arrays, model = make_data(workload.n_train, workload.n_test), model_of(workload)
    memory = RssMeter().start()
    meter = CpuMeter().start()
    begin = time.perf_counter()
    valuation = make_valuation(workload, arrays, model)
    plan = valuation.make_plan()
    values, anchor_stats, _ = evaluate_anchors(plan, valuation.utility)
    plan.bind_anchors(values)
    samples = plan.sample_limit() if workload.method == "knn" else workload.budget
    assert samples is not None
    partial = evaluate_range(plan, valuation.utility, 0, samples)
    wall = time.perf_counter() - begin
    return {
        "wall_seconds": wall,
        "cpu_seconds": meter.stop()["cpu_seconds"],
        **{k: v for k, v in memory.stop().items() if k.endswith("_bytes")},
        "startup_seconds": 0.0,
        "workers": 1,
        "samples": int(partial.stop - partial.start),
        "evaluations": anchor_stats.n_evaluations + partial.eval_stats.n_evaluations,
        "extra": {"compute_seconds": partial.compute_seconds},
    }


def main() -> None:
    """Run daskval once and print its record."""
    parser = runner_arguments(__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("cluster", "sequential"), default="cluster")
    args = parser.parse_args()
    workload = workload_from_args(args)
    if workload.method not in METHODS:
        raise SystemExit(f"daskval's {workload.method!r} runner is not implemented yet")
    if args.mode == "cluster":
        record = run_cluster(workload, args.workers)
    else:
        record = run_sequential(workload)
    # u(empty), when an anchor, is the one empty coalition daskval evaluates;
    # it fits nothing, and every evaluation it counts enters the result
    arrays = make_data(workload.n_train, workload.n_test)
    valuation = make_valuation(workload, arrays, model_of(workload))
    anchors = len(valuation.make_plan().anchors())
    fits = record["evaluations"] - empty_anchors(valuation)
    record["extra"]["anchor_evaluations"] = anchors
    record["extra"]["versions"] = versions(
        "daskval", "dask", "distributed", "numpy", "scikit-learn"
    )
    emit(
        {
            "contender": "daskval" if args.mode == "cluster" else "daskval_seq",
            "workload": workload.id,
            **record,
            "fits": fits,
            "fits_performed": fits,
        }
    )


if __name__ == "__main__":
    main()
