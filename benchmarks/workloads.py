"""Benchmark workloads, their data and models, and the record a runner prints.

The workloads are W1-W4 of ``shared/notes/benchmarks.md``. This module imports
only the standard library, numpy and scikit-learn, so every runner shares it:
the ideal loop and daskval (in daskval's environment) as well as pyDVL (in its
own numpy<2 environment). A runner is a script that runs one contender on one
workload once, in a fresh process, and prints one :func:`emit` line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "BLAS_ENV",
    "RESULT_MARKER",
    "SEED",
    "WORKLOADS",
    "Workload",
    "emit",
    "make_data",
    "import_modules",
    "make_model",
    "model_modules",
    "model_of",
    "bernoulli_subsets",
    "checksum",
    "permutation_prefixes",
    "workload_subsets",
    "runner_arguments",
    "workload_from_args",
]

# every contender runs with BLAS pinned to one thread (benchmarks.md)
BLAS_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
SEED = 42
RESULT_MARKER = "BENCH-RESULT "


@dataclass(frozen=True)
class Workload:
    """One benchmark workload.

    ``method`` names the estimator family (its budget unit): ``"permutation"``
    (permutation Shapley; budget in permutations), ``"msr"`` (MSR Banzhaf;
    budget in subsets) or ``"knn"`` (exact KNN-Shapley; no budget). Runners
    dispatch on it, so a new family slots in as one function per runner.
    """

    id: str
    title: str
    method: str
    model: str
    n_train: int
    n_test: int
    budget: int
    smoke_n_train: int = 16
    smoke_n_test: int = 16
    smoke_budget: int = 2

    def smoke(self) -> Workload:
        """The same workload at a tiny size and budget (for the smoke test)."""
        return replace(
            self,
            n_train=self.smoke_n_train,
            n_test=self.smoke_n_test,
            budget=self.smoke_budget,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description."""
        return asdict(self)


WORKLOADS: dict[str, Workload] = {
    "W1": Workload(
        id="W1",
        title="permutation Shapley, no truncation, LogisticRegression(max_iter=500)",
        method="permutation",
        model="logistic",
        n_train=200,
        n_test=200,
        budget=20,
    ),
    "W2": Workload(
        id="W2",
        title="Data Banzhaf, MSR sampler, LogisticRegression(max_iter=500)",
        method="msr",
        model="logistic",
        n_train=200,
        n_test=200,
        budget=1000,
        smoke_budget=8,
    ),
    "W3": Workload(
        id="W3",
        title="KNN-Shapley, exact, KNeighborsClassifier(5)",
        method="knn",
        model="knn",
        n_train=20000,
        n_test=2000,
        budget=0,
        smoke_n_train=64,
        smoke_budget=0,
    ),
    "W4": Workload(
        id="W4",
        title="permutation Shapley, RandomForestClassifier(n_estimators=20, n_jobs=1)",
        method="permutation",
        model="forest",
        n_train=500,
        n_test=200,
        budget=2,
    ),
}


def make_model(kind: str) -> Any:
    """The unfitted scikit-learn model of a workload."""
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=500)
    if kind == "forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=20, n_jobs=1, random_state=SEED)
    if kind == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(5)
    raise ValueError(f"unknown model kind {kind!r}")


def model_of(workload: Workload) -> Any:
    """The workload's unfitted model (its modules imported, so timing excludes that)."""
    return make_model(workload.model)


def model_modules(kind: str) -> list[str]:
    """Modules a fit and an accuracy score of the model import (to warm workers)."""
    model_module = type(make_model(kind)).__module__
    return ["numpy", "sklearn.base", "sklearn.metrics", model_module]


def import_modules(modules: list[str], linger: float = 0.0) -> int:
    """Import ``modules`` here (a worker warming up), then linger; the pid.

    Lingering keeps this worker busy for a moment so that a pool hands the
    other warm-up tasks to its other workers.
    """
    import importlib
    import time

    for name in modules:
        importlib.import_module(name)
    time.sleep(linger)
    return os.getpid()


def make_data(
    n_train: int, n_test: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` exactly as benchmarks.md specifies."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=n_train + n_test,
        n_features=20,
        n_informative=10,
        n_redundant=5,
        random_state=SEED,
    )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, train_size=n_train, test_size=n_test, random_state=SEED, stratify=y
    )
    return x_train, y_train, x_test, y_test


def permutation_prefixes(
    n: int, n_permutations: int, seed: int = SEED
) -> Iterator[np.ndarray]:
    """All non-empty prefixes (sizes 1..n) of ``n_permutations`` random permutations.

    The subsets the ideal loop evaluates: the same distribution as permutation
    Shapley's coalitions, ``n`` fits per permutation (as pyDVL does).
    """
    rng = np.random.default_rng(seed)
    for _ in range(n_permutations):
        permutation = rng.permutation(n)
        for size in range(1, n + 1):
            yield permutation[:size]


def bernoulli_subsets(n: int, count: int, seed: int = SEED) -> Iterator[np.ndarray]:
    """``count`` random subsets, each player in with probability 1/2.

    The subsets the ideal loop evaluates for MSR (one fit per subset); an
    empty subset is yielded too (its fit fails and scores 0, as in the
    estimators, which is vanishingly rare beyond a few players).
    """
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield np.flatnonzero(rng.random(n) < 0.5)


def workload_subsets(workload: Workload, seed: int = SEED) -> Iterator[np.ndarray]:
    """The subsets of the workload's ideal loop, drawn as its estimator draws them."""
    if workload.method == "permutation":
        return permutation_prefixes(workload.n_train, workload.budget, seed)
    if workload.method == "msr":
        return bernoulli_subsets(workload.n_train, workload.budget, seed)
    raise ValueError(f"no ideal loop for method {workload.method!r}")


def budget_unit(method: str) -> str:
    """What a workload's budget counts."""
    return {"permutation": "permutations", "msr": "subsets"}.get(method, "samples")


def runner_arguments(description: str) -> argparse.ArgumentParser:
    """The command line every runner shares (the workload and its size)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    parser.add_argument("--n-train", type=int, required=True)
    parser.add_argument("--n-test", type=int, required=True)
    parser.add_argument("--budget", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    return parser


def workload_from_args(args: argparse.Namespace) -> Workload:
    """The workload named on the command line, at the size given there."""
    return replace(
        WORKLOADS[args.workload],
        n_train=args.n_train,
        n_test=args.n_test,
        budget=args.budget,
    )


def versions(*modules: str) -> dict[str, str]:
    """Versions of already importable modules, plus Python's."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in modules:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "?"
    return found


def blas_pinned() -> bool:
    """True when every BLAS thread variable is set to 1 in this process."""
    return all(os.environ.get(k) == v for k, v in BLAS_ENV.items())


def checksum(values: Any) -> float:
    """sum_i (i + 1) v_i, to compare value vectors across environments: it
    changes when value moves between points (a plain sum is u(N) for any
    efficient method)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values @ np.arange(1, len(values) + 1, dtype=np.float64))


def emit(record: dict[str, Any]) -> None:
    """Print a runner's result as one marked JSON line (the last one it prints).

    Fields every runner fills in:

    - ``contender``, ``workload``;
    - ``wall_seconds``: the valuation alone (start-up excluded);
    - ``cpu_seconds``: CPU time of the runner and all its descendants over the
      same stretch (see cpumeter.py);
    - ``startup_seconds``: cluster / worker-pool start-up, or 0;
    - ``workers``: processes evaluating utilities in parallel;
    - ``samples``: samples (permutations) in the result;
    - ``evaluations``: utility calls as the contender counts them;
    - ``fits``: non-empty coalitions evaluated for the result;
    - ``fits_performed``: non-empty coalitions evaluated, used or not;
    - ``peak_rss_bytes``, ``peak_pss_bytes`` (optional): the peak summed RSS
      and PSS of the runner and its descendants over the timed stretch
      (rssmeter.py);
    - ``extra``: contender-specific diagnostics.
    """
    record = {**record, "pid": os.getpid(), "blas_pinned": blas_pinned()}
    sys.stdout.write(RESULT_MARKER + json.dumps(record) + "\n")
    sys.stdout.flush()
