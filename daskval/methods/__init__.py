"""Valuation methods, one module per family."""

from daskval.methods.base import Valuation
from daskval.methods.loo import LOOValuation
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
    "LOOValuation",
    "SemivalueValuation",
    "ShapleyValuation",
    "Valuation",
    "WeightedBanzhafValuation",
]
