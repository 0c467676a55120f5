"""CoalitionSums: samples kept as coalitions merge to the dense sums, in any
grouping to rounding and in one grouping to the bit, and survive a checkpoint."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from daskval.accumulate import CoalitionSums, Partial, Sums
from daskval.checkpoint import Checkpoint, load_checkpoint, save_checkpoint


def _samples(rows: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.random((rows, n)) < 0.5,
        rng.normal(size=(rows, 5)),
        rng.normal(size=(rows, 5)),
    )


def _dense(inside: np.ndarray, w_in: np.ndarray, w_out: np.ndarray) -> Sums:
    z = inside.astype(float)
    return Sums({"in": z.T @ w_in, "out": (1 - z).T @ w_out})


def _chunks(
    inside: np.ndarray, w_in: np.ndarray, w_out: np.ndarray, bounds: list[int]
) -> list[CoalitionSums]:
    return [
        CoalitionSums.from_samples(inside[a:b], w_in[a:b], w_out[a:b])
        for a, b in itertools.pairwise(bounds)
    ]


@pytest.mark.parametrize("n", [1, 13, 200])
def test_merged_coalitions_equal_the_dense_sums(n: int) -> None:
    samples = _samples(300, n, seed=n)
    bounds = [0, *np.cumsum(np.random.default_rng(0).integers(1, 9, 60)).tolist()]
    bounds = [b for b in bounds if b < 300] + [300]
    state = CoalitionSums.empty(n, 5)
    for chunk in _chunks(*samples, bounds):
        state = state.merge(chunk)
    expected = _dense(*samples)
    for side in ("in", "out"):
        np.testing.assert_allclose(
            state.sums()[side], expected[side], rtol=1e-12, atol=1e-12
        )


def test_small_states_stay_coalitions_and_large_ones_dense() -> None:
    n = 100_000
    leaf = CoalitionSums.from_samples(*_samples(2, n, seed=1))
    # two samples: 2 x (12,500 + 80) bytes, not the 8 MB of the sums
    assert leaf.dense is None
    assert leaf.nbytes < 30_000
    assert leaf.max_pending == (2 * 8 * n * 5) // (4 * (12_500 + 80))
    state = leaf
    while state.dense is None:
        state = state.merge(leaf)
    # expanded once past the bound, and nothing left pending
    assert len(state.bits) == 0
    assert state.dense.nbytes == 2 * 8 * n * 5


def test_one_grouping_gives_the_same_bits_and_others_agree_to_rounding() -> None:
    n = 37
    samples = _samples(400, n, seed=5)
    chunks = _chunks(*samples, list(range(0, 401, 4)))

    def tree(parts: list[CoalitionSums], fanin: int) -> CoalitionSums:
        while len(parts) > 1:
            merged = []
            for i in range(0, len(parts), fanin):
                node = parts[i]
                for part in parts[i + 1 : i + fanin]:
                    node = node.merge(part)
                merged.append(node)
            parts = merged
        return parts[0]

    first, again = tree(list(chunks), 4).sums(), tree(list(chunks), 4).sums()
    other = tree(list(chunks), 3).sums()
    for side in ("in", "out"):
        assert first[side].tobytes() == again[side].tobytes()
        np.testing.assert_allclose(first[side], other[side], rtol=1e-12, atol=1e-12)


def test_pending_coalitions_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    samples = _samples(3, 21, seed=2)
    pending = CoalitionSums.from_samples(*samples)
    assert pending.dense is None
    state = Partial(0, 3, {"msr": pending})
    saved = save_checkpoint(
        tmp_path / "c.npz", Checkpoint({"method": {}}, state, np.zeros(0), 0, 1.0)
    )
    restored = load_checkpoint(saved).state.moments["msr"]
    assert isinstance(restored, CoalitionSums)
    expected = _dense(*samples)
    for side in ("in", "out"):
        np.testing.assert_allclose(restored.sums()[side], expected[side], rtol=1e-13)
    # and it goes on merging like any other state
    more = CoalitionSums.from_samples(*_samples(2, 21, seed=3))
    assert restored.merge(more).sums()["in"].shape == (21, 5)
