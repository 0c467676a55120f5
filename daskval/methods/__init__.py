"""Valuation methods, one module per family."""

from daskval.methods.base import Valuation
from daskval.methods.loo import LOOValuation
from daskval.methods.shapley import ShapleyValuation

__all__ = ["LOOValuation", "ShapleyValuation", "Valuation"]
