"""A small valuation that every cluster path runs, and the check that two
runs of it agree."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

import daskval as dv

N_SAMPLES = 24


def small_data() -> dv.Dataset:
    """20 training points (two noisy classes), 60 scoring points."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.8, size=80) > 0).astype(int)
    return dv.Dataset(x[:20], y[:20], x[20:], y[20:])


def small_valuation(data: dv.Dataset | None = None) -> dv.ShapleyValuation:
    """Logistic regression, 24 permutations, seed 7: a few seconds."""
    utility = dv.ModelUtility(
        LogisticRegression(), small_data() if data is None else data, scoring="accuracy"
    )
    return dv.ShapleyValuation(
        utility,
        sampler=dv.PermutationSampler(),
        stop=dv.MaxSamples(N_SAMPLES),
        seed=7,
    )


def assert_same_values(
    result: dv.ValuationResult, reference: dv.ValuationResult
) -> None:
    """Same seed and budget: the same values, to 1e-12, and the same counts."""
    assert result.status == "completed"
    assert result.n_samples == reference.n_samples == N_SAMPLES
    np.testing.assert_allclose(result.values, reference.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.stderr, reference.stderr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.counts, reference.counts)
