"""The ideal: a plain sequential loop over the workload's subsets.

For each subset (prefixes of random permutations, as permutation Shapley
draws them; Bernoulli(1/2) subsets for MSR): ``clone(model)``, ``fit(X[s], y[s])``,
``get_scorer("accuracy")(m, X_test, y_test)``; a failed fit scores 0. No
framework, no parallelism: the harness divides its time by the number of
cores to get the ideal parallel time.

For exact KNN-Shapley (W3) the ideal is the bare vectorised computation of
the Jia et al. recursion in numpy, one process: for blocks of test points,
squared distances by the matmul expansion, an argsort of every row, the
label matches gathered in rank order, a reverse cumulative sum of the
recursion's increments, and the values scattered back and summed.

Run by benchmarks/run.py in a fresh process; imports only numpy and
scikit-learn (and the shared workloads module).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
from cpumeter import CpuMeter
from rssmeter import RssMeter
from workloads import (
    checksum,
    emit,
    make_data,
    make_model,
    runner_arguments,
    versions,
    workload_from_args,
    workload_subsets,
)


def ideal_loop(
    model: Any,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    subsets: Iterable[np.ndarray],
) -> dict[str, float]:
    """Fit and score ``model`` on every subset; seconds spent and counts."""
    from sklearn.base import clone
    from sklearn.metrics import get_scorer

    x_train, y_train, x_test, y_test = data
    scorer = get_scorer("accuracy")
    fit_seconds = score_seconds = 0.0
    fits = failures = 0
    meter = CpuMeter().start()
    begin = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for subset in subsets:
            fits += 1
            t0 = time.perf_counter()
            try:
                fitted = clone(model).fit(x_train[subset], y_train[subset])
            except Exception:
                failures += 1  # scores 0; nothing to score
                fit_seconds += time.perf_counter() - t0
                continue
            t1 = time.perf_counter()
            scorer(fitted, x_test, y_test)
            score_seconds += time.perf_counter() - t1
            fit_seconds += t1 - t0
    wall = time.perf_counter() - begin
    return {
        "wall_seconds": wall,
        "cpu_seconds": meter.stop()["cpu_seconds"],
        "fit_seconds": fit_seconds,
        "score_seconds": score_seconds,
        "fits": fits,
        "failures": failures,
    }


def knn_shapley(
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    k: int,
    block: int = 32,
) -> np.ndarray:
    """Exact KNN-Shapley values, vectorised over blocks of test points."""
    x_train, y_train, x_test, y_test = data
    n, n_test = len(y_train), len(y_test)
    squares = np.einsum("ij,ij->i", x_train, x_train)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    weights = np.minimum(k, ranks) / (k * ranks)
    values = np.zeros(n)
    for start in range(0, n_test, block):
        x, y = x_test[start : start + block], y_test[start : start + block]
        # |x - t|^2 up to |t|^2, which does not change a row's order
        order = np.argsort(squares - 2.0 * (x @ x_train.T), axis=1)
        matches = (y_train[order] == y[:, None]).astype(np.float64)
        increments = np.empty_like(matches)
        increments[:, :-1] = matches[:, :-1] - matches[:, 1:]
        increments[:, -1] = matches[:, -1]
        increments *= weights
        ranked = np.cumsum(increments[:, ::-1], axis=1)[:, ::-1]
        block_values = np.empty_like(ranked)
        np.put_along_axis(block_values, order, ranked, axis=1)
        values += block_values.sum(axis=0)
    return values / n_test


def knn_ideal(workload: Any) -> dict[str, Any]:
    """Time the vectorised KNN-Shapley computation once."""
    data = make_data(workload.n_train, workload.n_test)
    k = make_model(workload.model).n_neighbors
    memory = RssMeter().start()
    meter = CpuMeter().start()
    begin = time.perf_counter()
    values = knn_shapley(data, k)
    wall = time.perf_counter() - begin
    return {
        "wall_seconds": wall,
        "cpu_seconds": meter.stop()["cpu_seconds"],
        **{k: v for k, v in memory.stop().items() if k.endswith("_bytes")},
        "values_checksum": checksum(values),
    }


def main() -> None:
    """Run the ideal loop once and print its record."""
    args = runner_arguments(__doc__.splitlines()[0]).parse_args()
    workload = workload_from_args(args)
    if workload.method == "knn":
        timing = knn_ideal(workload)
        emit(
            {
                "contender": "ideal",
                "workload": workload.id,
                "wall_seconds": timing["wall_seconds"],
                "cpu_seconds": timing["cpu_seconds"],
                "startup_seconds": 0.0,
                "workers": 1,
                "samples": workload.n_test,
                "evaluations": workload.n_test,
                "fits": workload.n_test,  # one sort per test point
                "fits_performed": workload.n_test,
                "peak_rss_bytes": timing["peak_rss_bytes"],
                "peak_pss_bytes": timing["peak_pss_bytes"],
                "extra": {
                    "values_checksum": timing["values_checksum"],
                    "versions": versions("numpy", "scikit-learn"),
                },
            }
        )
        return
    if workload.method not in ("permutation", "msr"):
        raise SystemExit(f"the ideal for {workload.method!r} is not implemented yet")
    data = make_data(workload.n_train, workload.n_test)
    model = make_model(workload.model)
    subsets = workload_subsets(workload)
    timing = ideal_loop(model, data, subsets)
    emit(
        {
            "contender": "ideal",
            "workload": workload.id,
            "wall_seconds": timing["wall_seconds"],
            "cpu_seconds": timing["cpu_seconds"],
            "startup_seconds": 0.0,
            "workers": 1,
            "samples": workload.budget,
            "evaluations": timing["fits"],
            "fits": timing["fits"],
            "fits_performed": timing["fits"],
            "extra": {
                "fit_seconds": timing["fit_seconds"],
                "score_seconds": timing["score_seconds"],
                "failed_fits": timing["failures"],
                "versions": versions("numpy", "scikit-learn"),
            },
        }
    )


if __name__ == "__main__":
    main()
