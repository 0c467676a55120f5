"""Run one valuation inside a SLURM allocation (see valuation.sbatch).

Every task of the job runs this script; dask-jobqueue's ``SLURMRunner``
makes task 0 the scheduler, task 1 the client (the code in the ``with``
block) and the others workers. Edit ``make_valuation`` for your model,
scorer, method and budget.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dask.distributed import Client
from dask_jobqueue.slurm import SLURMRunner
from sklearn.linear_model import LogisticRegression

import daskval as dv


def make_valuation(data: dv.Dataset, budget: int, seed: int) -> dv.ShapleyValuation:
    """The valuation to run: Shapley values of logistic regression's accuracy."""
    utility = dv.ModelUtility(LogisticRegression(), data, scoring="accuracy")
    return dv.ShapleyValuation(
        utility,
        sampler=dv.PermutationSampler(),
        stop=dv.MaxSamples(budget),
        seed=seed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", help="npz with x_train, y_train, x_test, y_test")
    parser.add_argument("output", help="where the values go (ValuationResult.save)")
    parser.add_argument("--budget", type=int, default=1000, help="samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    job = os.environ.get("SLURM_JOB_ID", "local")
    scratch = os.environ.get("TMPDIR", "/tmp")
    with (
        SLURMRunner(
            scheduler_file=f"daskval-scheduler-{job}.json",
            scheduler_options={"dashboard_address": ":0"},
            worker_options={"nthreads": 1, "local_directory": scratch},
        ) as runner,
        Client(runner) as client,
    ):
        # only the client task gets here; the others serve until it is done
        client.wait_for_workers(runner.n_workers)
        data = dv.Dataset.from_npz(args.data)
        valuation = make_valuation(data, args.budget, args.seed)
        checkpoint = Path(f"{args.output}.checkpoint.npz")
        valuation.fit(
            client=client,
            checkpoint=checkpoint,
            resume=checkpoint if checkpoint.exists() else None,
            progress=False,
        )
        valuation.result_.save(args.output)
        print(
            f"daskval: {valuation.result_.n_samples} samples, values in {args.output}"
        )


if __name__ == "__main__":
    main()
