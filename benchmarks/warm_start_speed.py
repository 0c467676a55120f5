"""Warm vs cold fits along permutations, on W1's data, in one process.

For each random permutation of the training rows, every prefix (sizes 1..n)
is evaluated twice: through one warm chain (``ModelUtility(warm_start=True)
.chain()``), and cold (``evaluate``), interleaved so that both see the same
machine load. Prints the mean wall and CPU time per evaluation, the speedup,
and the largest |u_warm - u_cold| over all prefixes.

Run with BLAS pinned to one thread (set here before numpy loads)::

    /work/venv/bin/python benchmarks/warm_start_speed.py --model logistic
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import SEED, make_data, make_model  # noqa: E402

import daskval as dv  # noqa: E402
from daskval.utility import EvalStats  # noqa: E402


def model_for(kind: str, tol: float | None = None) -> Any:
    """W1's logistic regression (``tol`` overrides its stopping tolerance), or a
    quick linear SGD / small MLP to compare."""
    if kind == "sgd":
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(random_state=SEED)
    if kind == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=SEED)
    model = make_model(kind)
    return model if tol is None else model.set_params(tol=tol)


def timed(fn: Any, *args: Any) -> tuple[float, float, float]:
    """``fn(*args)``, its wall seconds and its CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn(*args)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def measure(
    kind: str, scoring: str, n_permutations: int, n: int, tol: float | None = None
) -> dict[str, Any]:
    """Walk ``n_permutations`` permutations warm and cold; the figures."""
    x_train, y_train, x_test, y_test = make_data(n, n)
    data = dv.Dataset(x_train, y_train, x_test, y_test)
    utility = dv.ModelUtility(
        model_for(kind, tol), data, scoring=scoring, seed=SEED, warm_start=True
    )
    rng = np.random.default_rng(SEED)
    seconds = {"warm_wall": 0.0, "warm_cpu": 0.0, "cold_wall": 0.0, "cold_cpu": 0.0}
    deviation, evaluations, n_warm, n_cold = 0.0, 0, 0, 0
    warm_stats, cold_stats = EvalStats(), EvalStats()
    with utility.context():
        for _ in range(n_permutations):
            perm = rng.permutation(data.n)
            chain = utility.chain()
            for size in range(1, data.n + 1):
                prefix = perm[:size]
                warm, wall, cpu = timed(chain.evaluate, prefix, warm_stats)
                seconds["warm_wall"] += wall
                seconds["warm_cpu"] += cpu
                cold, wall, cpu = timed(utility.evaluate, prefix, cold_stats)
                seconds["cold_wall"] += wall
                seconds["cold_cpu"] += cpu
                deviation = max(deviation, abs(warm - cold))
                evaluations += 1
            n_warm += getattr(chain, "n_warm", 0)
            n_cold += getattr(chain, "n_cold", 0)
    per_eval = {k: v / evaluations * 1e3 for k, v in seconds.items()}
    return {
        "model": repr(model_for(kind, tol)),
        "scoring": scoring,
        "n_train": n,
        "permutations": n_permutations,
        "evaluations": evaluations,
        "ms_per_eval": {k: round(v, 3) for k, v in per_eval.items()},
        "speedup_wall": round(per_eval["cold_wall"] / per_eval["warm_wall"], 3),
        "speedup_cpu": round(per_eval["cold_cpu"] / per_eval["warm_cpu"], 3),
        "max_abs_deviation": deviation,
        "warm_fits": n_warm,
        "cold_fits_in_chains": n_cold,
        "failed_warm_cold": [warm_stats.n_failed, cold_stats.n_failed],
        "warnings_warm": sum(warm_stats.warnings.values()),
        "warnings_cold": sum(cold_stats.warnings.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", choices=["logistic", "sgd", "mlp"], default="logistic"
    )
    parser.add_argument("--scoring", default="accuracy")
    parser.add_argument("--permutations", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--tol", type=float, default=None, help="logistic only")
    args = parser.parse_args()
    figures = measure(
        args.model, args.scoring, args.permutations, args.n_train, args.tol
    )
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
