"""What each semivalue estimator costs as the number of players grows.

For n = 10^2 .. 10^5 players and every sampler, this measures in one process
(no cluster: the figures are the estimator's own cost per sample, which a
cluster divides among its workers):

- the utility calls per sample (a real run multiplies them by the fit time);
- the wall time per sample with a nearly free utility (an additive game), i.e.
  daskval's own overhead: drawing coalitions, building index arrays,
  weighting and accumulating;
- the bytes of one accumulator (what a worker merges and the client fetches).

Usage::

    python benchmarks/scaling.py [--max-n 100000] [--seconds 2] [-o table.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import daskval as dv
from daskval.games import AdditiveGame
from daskval.plan import evaluate_range


def _shapley(utility: dv.Utility, sampler: Any) -> Any:
    return dv.ShapleyValuation(utility, sampler=sampler, stop=dv.MaxSamples(1))


def _banzhaf(utility: dv.Utility, sampler: Any) -> Any:
    return dv.BanzhafValuation(utility, sampler=sampler, stop=dv.MaxSamples(1))


def _three_semivalues(utility: dv.Utility, sampler: Any) -> Any:
    semivalues = [dv.Shapley(), dv.Banzhaf(), dv.Beta(16, 1)]
    return dv.SemivalueValuation(
        utility, semivalues, sampler=sampler, stop=dv.MaxSamples(1)
    )


ESTIMATORS: list[tuple[str, Callable[[], Any], Callable[[dv.Utility, Any], Any]]] = [
    ("permutation", dv.PermutationSampler, _shapley),
    (
        "permutation, antithetic",
        lambda: dv.PermutationSampler(antithetic=True),
        _shapley,
    ),
    ("uniform (flips)", dv.UniformSampler, _banzhaf),
    ("stratified (flips)", dv.StratifiedSampler, _shapley),
    ("owen (flips)", dv.OwenSampler, _shapley),
    ("msr", dv.MSRSampler, _banzhaf),
    ("msr, 3 semivalues", lambda: dv.MSRSampler(None), _three_semivalues),
    ("kernel shap (regression)", dv.RegressionSampler, _shapley),
]


def measure(
    name: str,
    make_sampler: Callable[[], Any],
    make_valuation: Callable[..., Any],
    n: int,
    seconds: float,
) -> dict[str, Any]:
    utility = AdditiveGame(np.linspace(0.0, 1.0, n))
    row: dict[str, Any] = {"estimator": name, "n": n}
    try:
        valuation = make_valuation(utility, make_sampler())
        plan = valuation.make_plan()
    except ValueError as exc:
        row["refused"] = str(exc).split(";")[0][:90]
        return row
    if plan.anchors():
        plan.bind_anchors([utility.evaluate(a, dv.EvalStats()) for a in plan.anchors()])
    row["accumulator_bytes"] = sum(s.nbytes for s in plan.empty_statistics().values())
    row["evaluations_per_sample"] = plan.max_evaluations_per_sample()
    samples, elapsed = 0, 0.0
    while elapsed < seconds:
        batch = max(1, samples)  # doubling batches until the time is spent
        begin = time.perf_counter()
        evaluate_range(plan, utility, samples, samples + batch)
        elapsed += time.perf_counter() - begin
        samples += batch
    row["seconds_per_sample"] = elapsed / samples
    row["samples_timed"] = samples
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| estimator | n | calls / sample | overhead / sample | accumulator |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "refused" in r:
            lines.append(
                f"| {r['estimator']} | {r['n']:,} | refused: {r['refused']} | | |"
            )
            continue
        lines.append(
            f"| {r['estimator']} | {r['n']:,} | {r['evaluations_per_sample']:,} | "
            f"{_seconds(r['seconds_per_sample'])} | {_bytes(r['accumulator_bytes'])} |"
        )
    return "\n".join(lines)


def _seconds(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.1f} s"


def _bytes(b: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-n", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per cell")
    parser.add_argument("-o", "--output", help="write the markdown table here")
    args = parser.parse_args(argv)
    sizes = [n for n in (100, 1_000, 10_000, 100_000) if n <= args.max_n]
    rows = []
    for name, make_sampler, make_valuation in ESTIMATORS:
        for n in sizes:
            rows.append(measure(name, make_sampler, make_valuation, n, args.seconds))
            print(rows[-1], file=sys.stderr, flush=True)
    table = markdown(rows)
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
