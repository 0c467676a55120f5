"""daskval at W1's size until its estimate is within a target RMSE of a reference.

``--config reference`` computes the reference (permutation Shapley,
``MaxEvaluations(N)``) and saves its values and standard errors; any other
config runs one daskval configuration on a started, warmed LocalCluster with
a stopping criterion that records the corrected RMSE at every check and stops
at the target (see time_to_rmse.py). Run by time_to_rmse.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from daskval_runner import start_cluster
from time_to_rmse import corrected_rmse, emit, runner_arguments
from workloads import make_data, make_model, model_modules

import daskval as dv
from daskval.stopping import Snapshot


class RmseRecorder(dv.StoppingCriterion):
    """Stops at the first check whose estimate is within ``target`` of the reference."""

    def __init__(
        self,
        reference: np.ndarray,
        ref_stderr: np.ndarray,
        target: float,
        max_seconds: float,
        max_evaluations: int,
    ) -> None:
        self.reference, self.ref_stderr, self.target = reference, ref_stderr, target
        self.max_seconds, self.max_evaluations = max_seconds, max_evaluations
        self.began = time.perf_counter()
        self.trajectory: list[tuple[float, int, float]] = []

    def check(self, snap: Snapshot) -> bool:
        seconds = time.perf_counter() - self.began
        error = corrected_rmse(snap.values, self.reference, self.ref_stderr)
        self.trajectory.append((seconds, int(snap.n_evaluations), error))
        return (
            error <= self.target
            or seconds >= self.max_seconds
            or snap.n_evaluations >= self.max_evaluations
        )

    def completion(self, snap: Snapshot) -> float:
        return min(1.0, (time.perf_counter() - self.began) / self.max_seconds)

    def ending(self) -> str:
        # its own time and evaluation budgets end every run
        return "surely"

    def describe(self) -> str:
        return f"RmseRecorder(target={self.target:g})"


def configs() -> dict[str, Callable[[Any, Any, Any], dv.Valuation]]:
    """config name -> (model, data, stop) -> valuation."""

    def shapley(sampler: Callable[[], Any], warm: bool = False) -> Any:
        def build(model: Any, data: Any, stop: Any, seed: int) -> dv.Valuation:
            utility = dv.ModelUtility(model, data, scoring="accuracy", warm_start=warm)
            return dv.ShapleyValuation(utility, sampler=sampler(), stop=stop, seed=seed)

        return build

    def tmc() -> Any:
        return dv.PermutationSampler(truncation=dv.RelativeTruncation(0.01))

    def regression() -> Any:
        from daskval.methods.regression import RegressionSampler

        return RegressionSampler(paired=True)

    return {
        "reference": shapley(dv.PermutationSampler),
        "permutation": shapley(dv.PermutationSampler),
        "permutation warm": shapley(dv.PermutationSampler, warm=True),
        "regression paired": shapley(regression),
        "tmc": shapley(tmc),
        "tmc warm": shapley(tmc, warm=True),
        "stratified": shapley(dv.StratifiedSampler),
        "antithetic permutation": shapley(
            lambda: dv.PermutationSampler(antithetic=True)
        ),
    }


def main() -> None:
    """Run one configuration once and print its record."""
    args = runner_arguments(__doc__.splitlines()[0]).parse_args()
    build = configs()[args.config]
    arrays = make_data(args.n_train, args.n_test)
    model = make_model("logistic")
    data = dv.Dataset(*arrays)
    if args.config == "reference":
        stop: dv.StoppingCriterion = dv.MaxEvaluations(args.max_evaluations)
    else:
        stored = np.load(args.reference)
        stop = RmseRecorder(
            stored["values"],
            stored["stderr"],
            args.target,
            args.max_seconds,
            args.max_evaluations,
        )
    context, client, startup = start_cluster(args.workers, model_modules("logistic"))
    try:
        begin = time.perf_counter()
        if isinstance(stop, RmseRecorder):
            stop.began = begin
        valuation = build(model, data, stop, args.seed).fit(client=client)
        wall = time.perf_counter() - begin
    finally:
        context.__exit__(None, None, None)
    result = valuation.result_
    if args.config == "reference":
        np.savez(
            args.output,
            values=result.values,
            stderr=result.stderr,
            samples=result.n_samples,
        )
        emit(
            {
                "config": "reference",
                "seconds": wall,
                "evaluations": result.n_evaluations,
            }
        )
        return
    assert isinstance(stop, RmseRecorder)
    seconds, evaluations, error = stop.trajectory[-1]
    emit(
        {
            "config": args.config,
            "reached": error <= args.target,
            "seconds": seconds,
            "evaluations": evaluations,
            "rmse": error,
            "wall_seconds": wall,
            "startup_seconds": sum(startup.values()),
            "trajectory": stop.trajectory,
            "memo": result.metadata.get("memo"),
        }
    )


if __name__ == "__main__":
    main()
