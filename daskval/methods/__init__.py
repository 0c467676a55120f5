"""Valuation methods, one module per family."""

from daskval.methods.base import Valuation
from daskval.methods.core import LeastCoreValuation
from daskval.methods.group_testing import GroupTestingShapleyValuation
from daskval.methods.knn import (
    KNNRegressionShapleyValuation,
    KNNShapleyValuation,
    PrecomputedKNNShapleyValuation,
    SoftLabelKNNShapleyValuation,
    ThresholdKNNShapleyValuation,
)
from daskval.methods.loo import LOOValuation
from daskval.methods.oob import DataOOBValuation
from daskval.methods.semivalue import (
    BanzhafValuation,
    BetaShapleyValuation,
    SemivalueValuation,
    WeightedBanzhafValuation,
)
from daskval.methods.shapley import ShapleyValuation

__all__ = [
    "BanzhafValuation",
    "BetaShapleyValuation",
    "DataOOBValuation",
    "GroupTestingShapleyValuation",
    "KNNRegressionShapleyValuation",
    "KNNShapleyValuation",
    "LOOValuation",
    "LeastCoreValuation",
    "PrecomputedKNNShapleyValuation",
    "SemivalueValuation",
    "ShapleyValuation",
    "SoftLabelKNNShapleyValuation",
    "ThresholdKNNShapleyValuation",
    "Valuation",
    "WeightedBanzhafValuation",
]
