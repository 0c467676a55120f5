"""pyDVL 0.10 at W1's size until its estimate is within a target RMSE of a reference.

Runs in pyDVL's environment: ``TMCShapleyValuation`` (``--config permutation``:
``NoTruncation()``; ``--config tmc``: ``RelativeTruncation(rtol=0.01)``),
``ModelUtility(model, SupervisedScorer("accuracy", test, default=0,
range=(0, 1)), catch_errors=True, show_warnings=False)``, inside
``joblib.parallel_config(backend="loky", n_jobs=workers)`` with the pool
started and warmed first, and a stopping criterion that records the
corrected RMSE at every check and stops at the target (see time_to_rmse.py).
Its calls are counted as permutations x n: exact without truncation, an upper
bound with it.
Never imports daskval. Run by time_to_rmse.py.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from time_to_rmse import corrected_rmse, emit, runner_arguments
from workloads import import_modules, make_data, make_model, model_modules

warnings.filterwarnings("ignore")

from joblib import Parallel, delayed, parallel_config  # noqa: E402
from pydvl.valuation import (  # noqa: E402
    Dataset,
    ModelUtility,
    NoTruncation,
    RelativeTruncation,
    Status,
    SupervisedScorer,
    TMCShapleyValuation,
)
from pydvl.valuation.stopping import StoppingCriterion  # noqa: E402


class RmseRecorder(StoppingCriterion):
    """Stops at the first check whose estimate is within ``target`` of the reference."""

    def __init__(
        self,
        reference: np.ndarray,
        ref_stderr: np.ndarray,
        target: float,
        max_seconds: float,
        max_evaluations: int,
    ) -> None:
        super().__init__()
        self.reference, self.ref_stderr, self.target = reference, ref_stderr, target
        self.max_seconds, self.max_evaluations = max_seconds, max_evaluations
        self.began = time.perf_counter()
        self.trajectory: list[tuple[float, int, float]] = []

    def _check(self, result: Any) -> Status:
        seconds = time.perf_counter() - self.began
        values = np.zeros(len(self.reference))
        values[np.asarray(result.indices, dtype=int)] = result.values
        error = corrected_rmse(values, self.reference, self.ref_stderr)
        # each processed permutation evaluated its n prefixes
        evaluations = int(result.counts.max()) * len(self.reference)
        self.trajectory.append((seconds, evaluations, error))
        done = (
            error <= self.target
            or seconds >= self.max_seconds
            or evaluations >= self.max_evaluations
        )
        if done:
            self._converged = np.full_like(result.indices, True, dtype=bool)
            return Status.Converged
        return Status.Pending


def warm_pool(workers: int) -> None:
    """Start joblib's loky workers and import pyDVL and the model there."""
    if workers > 1:
        modules = ["pydvl.valuation", *model_modules("logistic")]
        Parallel()(delayed(import_modules)(modules, 0.2) for _ in range(2 * workers))


def main() -> None:
    """Run one configuration once and print its record."""
    args = runner_arguments(__doc__.splitlines()[0]).parse_args()
    truncation = {"permutation": NoTruncation(), "tmc": RelativeTruncation(rtol=0.01)}
    x_train, y_train, x_test, y_test = make_data(args.n_train, args.n_test)
    stored = np.load(args.reference)
    stop = RmseRecorder(
        stored["values"],
        stored["stderr"],
        args.target,
        args.max_seconds,
        args.max_evaluations,
    )
    with parallel_config(backend="loky", n_jobs=args.workers):
        warm_pool(args.workers)
        begin = time.perf_counter()
        stop.began = begin
        test = Dataset(x_test, y_test)
        scorer = SupervisedScorer("accuracy", test, default=0, range=(0, 1))
        utility = ModelUtility(
            make_model("logistic"), scorer, catch_errors=True, show_warnings=False
        )
        valuation = TMCShapleyValuation(
            utility,
            truncation=truncation[args.config],
            is_done=stop,
            seed=args.seed,
        )
        valuation.fit(Dataset(x_train, y_train))
        wall = time.perf_counter() - begin
    seconds, evaluations, error = stop.trajectory[-1]
    emit(
        {
            "config": args.config,
            "reached": error <= args.target,
            "seconds": seconds,
            "evaluations": evaluations,
            "rmse": error,
            "wall_seconds": wall,
            "trajectory": stop.trajectory,
        }
    )


if __name__ == "__main__":
    main()
