"""daskval: data valuation on Dask.

Value training points (or groups of them) with Shapley, leave-one-out and
related methods; the same call runs on an embedded LocalCluster, a remote
scheduler, or an HPC batch system.
"""

from __future__ import annotations

import logging

from daskval.data import Dataset
from daskval.exceptions import DaskvalWarning, ScriptGuardError, ValuationError
from daskval.methods import LOOValuation, ShapleyValuation, Valuation
from daskval.result import ValuationResult
from daskval.samplers import ExactSampler, PermutationSampler, RelativeTruncation
from daskval.stopping import (
    MaxEvaluations,
    MaxSamples,
    MaxStderr,
    MaxTime,
    RankStable,
    StoppingCriterion,
)
from daskval.utility import EvalStats, FunctionUtility, ModelUtility, Utility

__version__ = "0.1.0.dev0"

logging.getLogger("daskval").addHandler(logging.NullHandler())

__all__ = [
    "DaskvalWarning",
    "Dataset",
    "EvalStats",
    "ExactSampler",
    "FunctionUtility",
    "LOOValuation",
    "MaxEvaluations",
    "MaxSamples",
    "MaxStderr",
    "MaxTime",
    "ModelUtility",
    "PermutationSampler",
    "RankStable",
    "RelativeTruncation",
    "ScriptGuardError",
    "ShapleyValuation",
    "StoppingCriterion",
    "Utility",
    "Valuation",
    "ValuationError",
    "ValuationResult",
    "__version__",
]
