"""Shapley values: permutation sampling (optionally truncated), exact
enumeration, and every sampler of the semivalue family."""

from __future__ import annotations

from daskval.methods.semivalue import AnySampler, _SingleSemivalue
from daskval.samplers import PermutationSampler
from daskval.semivalues import Shapley
from daskval.stopping import StoppingCriterion
from daskval.utility import Utility

__all__ = ["ShapleyValuation"]


class ShapleyValuation(_SingleSemivalue):
    """Shapley values of the players of a utility.

    Parameters
    ----------
    utility : Utility
        The game, e.g. a :class:`~daskval.ModelUtility`.
    sampler : Sampler, optional
        Defaults to ``PermutationSampler()`` (Monte Carlo over permutations;
        add ``truncation=RelativeTruncation()`` for TMC-Shapley).
        ``ExactSampler()`` enumerates all 2^n subsets (n <= 25). Any sampler
        of :class:`~daskval.SemivalueValuation` works too (e.g.
        ``StratifiedSampler()``, whose marginal coalitions are exactly
        Shapley-distributed).
    stop : StoppingCriterion, optional
        When to stop a Monte Carlo run; required unless the sampler is exact
        (which always runs to the end and takes no criterion).
    seed : int, optional
        Root seed; the same seed and budget give the same values on any
        cluster. Drawn at random (and recorded) when None.

    Examples
    --------
    >>> v = ShapleyValuation(u, stop=MaxSamples(100), seed=0).fit()  # doctest: +SKIP
    >>> v.result_.to_pandas()  # doctest: +SKIP
    """

    method_name = "shapley"

    def __init__(
        self,
        utility: Utility,
        *,
        sampler: AnySampler | None = None,
        stop: StoppingCriterion | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(utility, Shapley(), sampler=sampler, stop=stop, seed=seed)

    def _default_sampler(self) -> AnySampler:
        return PermutationSampler()
