"""The reduction's bookkeeping (engine.reduce) and its folds (engine.tasks),
without a cluster: combine tasks are replaced by records of what they would
merge, resolved afterwards with the real worker-side functions."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from daskval.accumulate import Moments, Partial
from daskval.engine.reduce import FANIN, Layout, SlotGrid
from daskval.engine.tasks import combine_task, merge_task

GROUP = FANIN**2


@dataclass(frozen=True)
class Fake:
    """A future: a leaf's range, or a combine of other fakes."""

    key: str
    parts: tuple[Any, ...] = ()
    status: str = "finished"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], str]] = []

    def __call__(self, futures: list[Any], label: str) -> Fake:
        self.calls.append((list(futures), label))
        return Fake(f"combine-{len(self.calls)}-{label}", tuple(futures))


def leaf(start: int, stop: int) -> Fake:
    return Fake(f"leaf-{start}-{stop}")


def grid_of(n_slots: int, size: int = 1) -> tuple[SlotGrid, Recorder]:
    combine = Recorder()
    grid = SlotGrid(combine)
    for i in range(n_slots):
        grid.add_slot(i * size, (i + 1) * size)
    return grid, combine


def finish(grid: SlotGrid, slots: list[int], size: int = 1) -> None:
    for i in slots:
        grid.piece_done(i * size, (i + 1) * size, leaf(i * size, (i + 1) * size))


def test_units_and_groups_combine_once_their_slots_are_in() -> None:
    grid, combine = grid_of(GROUP + 3)
    order = np.random.default_rng(0).permutation(GROUP)
    finish(grid, [int(i) for i in order[:-1]])
    # every unit but the one missing a slot is combined; no group yet
    assert len(combine.calls) == FANIN - 1
    assert grid.next_link() is None
    finish(grid, [int(order[-1])])
    # the last unit, then the group of all units
    assert len(combine.calls) == FANIN + 1
    units, label = combine.calls[-1]
    assert label == f"0-{GROUP}-group" and len(units) == FANIN
    link = grid.next_link()
    assert link is not None
    layout, parts, end = link
    assert layout == Layout(True, ()) and end == GROUP
    assert parts == [Fake(f"combine-{FANIN + 1}-0-{GROUP}-group", tuple(units))]
    assert grid.chain_stop == GROUP and grid.next_link() is None


def test_a_view_is_what_follows_the_chain_without_a_gap() -> None:
    grid, combine = grid_of(GROUP)
    finish(grid, [*range(FANIN), FANIN, FANIN + 1, FANIN + 3])
    view = grid.view()
    assert view is not None
    layout, parts, end = view
    # the first unit combined, then the two slots before the gap
    assert layout == Layout(False, (0, 2)) and end == FANIN + 2
    assert len(parts) == 3 and parts[1:] == [
        leaf(FANIN, FANIN + 1),
        leaf(FANIN + 1, FANIN + 2),
    ]
    assert grid.next_link() is None  # the group is not complete
    assert len(combine.calls) == 1


def test_the_last_group_of_a_run_may_be_short() -> None:
    grid, _ = grid_of(FANIN + 2)
    finish(grid, list(range(FANIN + 2)))
    assert grid.next_link() is None  # more slots may come
    grid.final = FANIN + 2
    link = grid.next_link()
    assert link is not None
    layout, parts, end = link
    assert layout == Layout(False, (0, 2)) and end == FANIN + 2 and len(parts) == 3


def test_units_past_the_safe_stop_are_not_combined() -> None:
    grid, combine = grid_of(3 * FANIN)
    grid.set_safe_stop(FANIN + 1)
    finish(grid, list(range(3 * FANIN)))
    assert [label for _, label in combine.calls] == [f"0-{FANIN}-unit"]
    view = grid.view()
    assert view is not None and view[0] == Layout(False, (0, FANIN, FANIN))
    grid.set_safe_stop(None)  # raising it combines what it now covers
    assert len(combine.calls) == 3


def test_a_split_slot_is_combined_from_its_pieces() -> None:
    grid, combine = grid_of(2, size=10)
    grid.piece_done(0, 5, leaf(0, 5))
    grid.piece_done(7, 10, leaf(7, 10))
    assert not grid.slot(0).done
    grid.piece_done(5, 7, leaf(5, 7))
    assert grid.slot(0).done
    assert combine.calls[-1] == ([leaf(0, 5), leaf(5, 7), leaf(7, 10)], "0-10-pieces")
    with pytest.raises(ValueError, match="already done"):
        grid.piece_done(0, 10, leaf(0, 10))
    with pytest.raises(ValueError, match="does not follow"):
        grid.add_slot(30, 40)


def test_rebase_runs_again_what_dropped_units_held() -> None:
    grid, combine = grid_of(2 * FANIN + 2)
    finish(grid, list(range(2 * FANIN + 1)))
    assert len(combine.calls) == 2
    erred = Fake("leaf-x", status="error")
    grid.piece_done(2 * FANIN + 1, 2 * FANIN + 2, erred)
    # a fetched state of the first 2 slots: the rest forms a new grid
    lost = grid.rebase(2, alive=lambda f: f.status != "error")
    assert [(s.start, s.stop) for s in lost] == [
        *[(i, i + 1) for i in range(2, 2 * FANIN)],
        (2 * FANIN + 1, 2 * FANIN + 2),
    ]
    assert grid.chain_stop == 2
    finish(grid, list(range(2, 2 + FANIN)))
    assert combine.calls[-1][1] == f"2-{2 + FANIN}-unit"


# --------------------------------------------------------------------------
# the values: any completion order gives the same bits


def _partials(bounds: list[int], n: int) -> dict[tuple[int, int], Partial]:
    rng = np.random.default_rng(1)
    return {
        (a, b): Partial(a, b, {"m": Moments.from_samples(rng.normal(size=(b - a, n)))})
        for a, b in itertools.pairwise(bounds)
    }


def _resolve(
    future: Any, leaves: dict[str, Partial], memo: dict[str, Partial]
) -> Partial:
    if future.key in leaves:
        return leaves[future.key]
    if future.key not in memo:
        parts = [_resolve(p, leaves, memo) for p in future.parts]
        memo[future.key] = combine_task(False, *parts)
    return memo[future.key]


def _run(order: np.ndarray, bounds: list[int], n: int, view_every: int) -> Partial:
    partials = _partials(bounds, n)
    ranges = list(partials)
    leaves = {leaf(*r).key: partials[r] for r in ranges}
    combine = Recorder()
    grid = SlotGrid(combine)
    for r in ranges:
        grid.add_slot(*r)
    grid.final = len(ranges)
    memo: dict[str, Partial] = {}
    state = Partial(0, 0, {"m": Moments.zeros(n)})
    for i, k in enumerate(order):
        grid.piece_done(*ranges[k], leaf(*ranges[k]))
        while (link := grid.next_link()) is not None:
            layout, parts, _ = link
            resolved = [_resolve(p, leaves, memo) for p in parts]
            state = merge_task(state, None, "unused", None, layout, *resolved)  # type: ignore[arg-type]
        if i % view_every == 0 and (view := grid.view()) is not None:
            layout, parts, end = view
            resolved = [_resolve(p, leaves, memo) for p in parts]
            seen = merge_task(state, None, "unused", None, layout, *resolved)  # type: ignore[arg-type]
            assert seen.stop == end
    return state


@pytest.mark.parametrize("view_every", [1, 7])
def test_any_completion_order_gives_bitwise_the_same_state(view_every: int) -> None:
    n = 5
    sizes = np.random.default_rng(3).integers(1, 4, size=GROUP + 2 * FANIN + 3)
    bounds = [0, *np.cumsum(sizes).tolist()]
    states = [
        _run(np.random.default_rng(seed).permutation(len(sizes)), bounds, n, view_every)
        for seed in range(4)
    ]
    first = states[0].moments["m"]
    assert isinstance(first, Moments)
    assert states[0].stop == bounds[-1]
    for state in states[1:]:
        m = state.moments["m"]
        assert isinstance(m, Moments)
        assert m.total.tobytes() == first.total.tobytes()
        assert m.m2.tobytes() == first.m2.tobytes()
        np.testing.assert_array_equal(m.count, first.count)
    # and equal to a plain left fold of the leaves, to rounding
    reference = Partial(0, 0, {"m": Moments.zeros(n)})
    for part in _partials(bounds, n).values():
        reference = reference.merge(part)
    ref = reference.moments["m"]
    assert isinstance(ref, Moments)
    np.testing.assert_allclose(first.total, ref.total, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(first.m2, ref.m2, rtol=1e-12, atol=1e-12)


def test_a_unit_in_a_group_is_not_combined_again_when_the_bound_moves() -> None:
    grid, combine = grid_of(2 * GROUP)
    finish(grid, list(range(GROUP, 2 * GROUP)))  # a whole group ahead of the chain
    assert len(combine.calls) == FANIN + 1
    grid.set_safe_stop(None)  # what every fetch does without a count budget
    grid.set_safe_stop(None)
    assert len(combine.calls) == FANIN + 1
    assert all(None not in futures for futures, _ in combine.calls)
