"""Leave-one-out values: u(N) - u(N minus i) for every player i."""

from __future__ import annotations

from typing import Any

import numpy as np

from daskval.accumulate import Moments, Statistic
from daskval.methods.base import Valuation
from daskval.plan import EnumerationPlan, Plan
from daskval.utility import EvalStats, Utility

__all__ = ["LOOValuation"]


class LOOPlan(EnumerationPlan):
    """Sample ``j`` is the coalition of everyone but player ``j``."""

    def __init__(self, n: int) -> None:
        self.n, self.seed = n, 0
        self.u_full = float("nan")

    def anchors(self) -> list[np.ndarray]:
        return [np.arange(self.n)]

    def bind_anchors(self, values: list[float]) -> None:
        (self.u_full,) = values

    def sample_limit(self) -> int | None:
        return self.n

    def run(
        self, utility: Utility, start: int, stop: int, stats: EvalStats
    ) -> tuple[dict[str, Statistic], np.ndarray]:
        values = np.zeros((stop - start, self.n))
        present = np.zeros((stop - start, self.n), dtype=bool)
        everyone = np.arange(self.n)
        for row, player in enumerate(range(start, stop)):
            without = np.delete(everyone, player)
            values[row, player] = self.u_full - utility.evaluate(without, stats)
            present[row, player] = True
        return (
            {"marginals": Moments.from_samples(values, present)},
            np.ones(stop - start, dtype=np.int32),
        )

    def describe(self) -> dict[str, Any]:
        return {"plan": "loo", "n": self.n}


class LOOValuation(Valuation):
    """Leave-one-out: the value of player i is u(N) - u(N \\ {i}).

    Costs n + 1 utility evaluations, spread over the cluster.

    Parameters
    ----------
    utility : Utility
        The game.
    """

    method_name = "loo"

    def __init__(self, utility: Utility) -> None:
        super().__init__(utility, stop=None, seed=0)

    def make_plan(self) -> Plan:
        return LOOPlan(self.utility.n)
