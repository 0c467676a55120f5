"""daskval: data valuation on Dask.

Value training points (or groups of them) with Shapley, leave-one-out and
related methods (semivalues, KNN-Shapley, Data-OOB, least core, group
testing); the same call runs on an embedded LocalCluster, a remote
scheduler, or an HPC batch system.
"""

from __future__ import annotations

import logging
from typing import Any

from daskval._version import __version__
from daskval.checkpoint import CheckpointError
from daskval.data import Dataset
from daskval.exceptions import DaskvalWarning, ScriptGuardError, ValuationError
from daskval.methods import (
    BanzhafValuation,
    BetaShapleyValuation,
    DataOOBValuation,
    GroupTestingShapleyValuation,
    KNNRegressionShapleyValuation,
    KNNShapleyValuation,
    LeastCoreValuation,
    LOOValuation,
    PrecomputedKNNShapleyValuation,
    SemivalueValuation,
    ShapleyValuation,
    SoftLabelKNNShapleyValuation,
    ThresholdKNNShapleyValuation,
    Valuation,
    WeightedBanzhafValuation,
)
from daskval.methods.core import solve_least_core
from daskval.methods.group_testing import group_testing_sample_size
from daskval.methods.knn import KNNUtility, ThresholdKNNUtility
from daskval.methods.oob import OOBUtility
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

logging.getLogger("daskval").addHandler(logging.NullHandler())

__all__ = [
    "AntitheticSampler",
    "Banzhaf",
    "BanzhafValuation",
    "Beta",
    "BetaShapleyValuation",
    "CheckpointError",
    "DaskvalWarning",
    "DataOOBValuation",
    "Dataset",
    "EvalStats",
    "ExactSampler",
    "FunctionUtility",
    "GroupTestingShapleyValuation",
    "KNNRegressionShapleyValuation",
    "KNNShapleyValuation",
    "KNNUtility",
    "LOOValuation",
    "LeastCoreValuation",
    "MSRSampler",
    "MaxEvaluations",
    "MaxSamples",
    "MaxStderr",
    "MaxTime",
    "ModelUtility",
    "OOBUtility",
    "OwenSampler",
    "PermutationSampler",
    "PrecomputedKNNShapleyValuation",
    "RankStable",
    "RegressionSampler",
    "RelativeTruncation",
    "ScriptGuardError",
    "Semivalue",
    "SemivalueValuation",
    "Shapley",
    "ShapleyValuation",
    "SoftLabelKNNShapleyValuation",
    "ThresholdKNNShapleyValuation",
    "ThresholdKNNUtility",
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
    "datasets",
    "evaluate",
    "group_testing_sample_size",
    "plot",
    "solve_least_core",
    # loaded on first use (the engine's import distributed)
    "MemoConfig",
    "clear_memo",
    "connect_scheduler",
    "jobqueue_cluster",
    "lifetime_args",
    "memo_stats",
]

# submodules for users, imported on first use (workers never need them)
_SUBMODULES = ("datasets", "evaluate", "plot")
# name -> the engine module that defines it
_LAZY = {
    "MemoConfig": "daskval.engine.memo",
    "clear_memo": "daskval.engine.memo",
    "memo_stats": "daskval.engine.memo",
    "connect_scheduler": "daskval.engine.cluster",
    "jobqueue_cluster": "daskval.engine.hpc",
    "lifetime_args": "daskval.engine.hpc",
}


def __getattr__(name: str) -> Any:
    # ``import daskval`` does not import distributed; the engine's API does
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"daskval.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'daskval' has no attribute {name!r}")
