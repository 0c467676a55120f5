"""daskval: data valuation on Dask.

Value training points (or groups of them) with Shapley, leave-one-out and
related methods; the same call runs on an embedded LocalCluster, a remote
scheduler, or an HPC batch system.
"""

from __future__ import annotations

import logging
from typing import Any

from daskval.checkpoint import CheckpointError
from daskval.data import Dataset
from daskval.exceptions import DaskvalWarning, ScriptGuardError, ValuationError
from daskval.methods import (
    BanzhafValuation,
    BetaShapleyValuation,
    LOOValuation,
    SemivalueValuation,
    ShapleyValuation,
    Valuation,
    WeightedBanzhafValuation,
)
from daskval.methods.regression import RegressionSampler
from daskval.result import ValuationResult
from daskval.samplers import (
    AntitheticSampler,
    ExactSampler,
    MSRSampler,
    OwenSampler,
    PermutationSampler,
    RelativeTruncation,
    StratifiedSampler,
    UniformSampler,
)
from daskval.semivalues import Banzhaf, Beta, Semivalue, Shapley, WeightedBanzhaf
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
    "AntitheticSampler",
    "Banzhaf",
    "BanzhafValuation",
    "Beta",
    "BetaShapleyValuation",
    "CheckpointError",
    "DaskvalWarning",
    "Dataset",
    "EvalStats",
    "ExactSampler",
    "FunctionUtility",
    "LOOValuation",
    "MSRSampler",
    "MaxEvaluations",
    "MaxSamples",
    "MaxStderr",
    "MaxTime",
    "ModelUtility",
    "OwenSampler",
    "PermutationSampler",
    "RankStable",
    "RegressionSampler",
    "RelativeTruncation",
    "ScriptGuardError",
    "Semivalue",
    "SemivalueValuation",
    "Shapley",
    "ShapleyValuation",
    "StoppingCriterion",
    "StratifiedSampler",
    "UniformSampler",
    "Utility",
    "Valuation",
    "ValuationError",
    "ValuationResult",
    "WeightedBanzhaf",
    "WeightedBanzhafValuation",
    "__version__",
    # the workers' memo, loaded on first use (it imports distributed)
    "MemoConfig",
    "clear_memo",
    "memo_stats",
]

_LAZY_MEMO = ("MemoConfig", "clear_memo", "memo_stats")


def __getattr__(name: str) -> Any:
    # ``import daskval`` does not import distributed; the memo's API does
    if name in _LAZY_MEMO:
        from daskval.engine import memo

        return getattr(memo, name)
    raise AttributeError(f"module 'daskval' has no attribute {name!r}")
