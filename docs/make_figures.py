"""Make the README's removal-curve picture: docs/images/removal-curves.png.

Flip 20% of the training labels of scikit-learn's breast_cancer data, value
the training points with several methods (and a random valuation), remove
the highest-valued points first in steps of 5%, retrain a logistic
regression on what is left, and score it on the held-out test split that the
valuations never saw. Good values make the score fall fast. Every retraining
runs on the Dask cluster.

Run from the repository's root (a few minutes on two cores)::

    python docs/make_figures.py [--budget 3000] [--output PATH.png]

It needs the headless browser of ``daskval.plot.save_png`` (playwright and
Debian's chromium). The numbers are deterministic for a given budget and
seed (any number of workers).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from daskval import datasets, evaluate, plot

METHODS = ["data-oob", "knn-shapley", "banzhaf", "tmc-shapley", "loo"]
HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--train-size", type=int, default=200)
    parser.add_argument(
        "--output", type=Path, default=HERE / "images" / "removal-curves.png"
    )
    args = parser.parse_args()

    data = datasets.load(
        "breast_cancer", train_size=args.train_size, valid_size=100, test_size=200
    )
    data = datasets.add_label_noise(data, 0.2, random_state=0)
    comparison = evaluate.compare_methods(
        data,
        METHODS,
        budget=args.budget,
        curves=True,
        curve_fractions=np.round(np.arange(0.0, 0.51, 0.05), 2),
        on_method=lambda name, seconds: print(f"{name}: {seconds:.1f} s"),
    )
    print(comparison.table.round(3).to_string())
    print(
        evaluate.curves_frame(comparison.curves)
        .pivot(index="fraction", columns="method", values="score")
        .round(3)
        .to_string()
    )
    fig = plot.plot_curves(
        comparison.curves,
        title=(
            f"breast_cancer, {len(data.corrupted)} of {data.n_train} labels "
            "flipped: removing the highest-valued points first"
        ),
        y_label="accuracy on the held-out test split",
    )
    fig.toolbar_location = None
    fig.width, fig.height = 760, 440
    args.output.parent.mkdir(parents=True, exist_ok=True)
    print("wrote", plot.save_png(fig, args.output))


if __name__ == "__main__":
    main()
