"""Exceptions and warnings raised by daskval."""

from __future__ import annotations

__all__ = ["DaskvalWarning", "ScriptGuardError", "ValuationError"]


class DaskvalWarning(UserWarning):
    """A warning issued by daskval itself (tests turn these into errors)."""


class ValuationError(RuntimeError):
    """A valuation could not run to completion."""


class ScriptGuardError(RuntimeError):
    """A script starts a cluster without an ``if __name__ == "__main__":`` guard."""
