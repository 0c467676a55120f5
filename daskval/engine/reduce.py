"""The reduction: finished ranges are combined on the workers in a fixed
tree of sample ranges, and a short chain appends whole groups to the prefix.

Every task of a run covers one *slot*: a range of sample indices, numbered
in the order the ranges were handed out. The run's state is the merged
statistics of exactly the first K samples (the *prefix*). It is reduced in
a tree whose shape depends on slot numbers only:

* ``FANIN`` consecutive slots make a *unit*, combined on the workers as soon
  as all of them have finished (Dask runs the combine where most of its
  inputs are, so most bytes never move);
* ``FANIN`` consecutive units make a *group*, combined the same way;
* a chain of merge tasks appends whole groups to the prefix, in order.

The chain's worker receives one state per group, a ``1 / FANIN**2`` share of
the leaves' bytes, whatever the number of workers; the client's work per
leaf is a few dictionary operations. Because the shape is fixed by slot
numbers and every merge folds its inputs in sample order, the values are
bitwise the same for the same slots (the same seed, budget and task sizes)
whatever finished first and on however many workers. Between checks the
client fetches a *view*: the prefix followed by the finished units and
slots of the group the chain has not reached. A view is never fed back into
the chain; the run's last state is one (see :class:`Layout`).

Count budgets stay exact. With a constant cost per sample the run's sample
count is known up front, and the last slot ends at it. When the cost varies
(truncated permutations under an evaluation budget), only units that end at
or before :attr:`SlotGrid.safe_stop` are combined: no sample before it can
pass the budget even at the plan's largest cost per sample. The budget ends
the run inside a group's plain slots, where the merge task cuts it at
exactly the right sample.

Nothing here imports Dask: the grid takes a function that submits combine
tasks, so its bookkeeping is tested without a cluster.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FANIN", "Layout", "Slot", "SlotGrid"]

#: slots per unit and units per group: 16 slots per link of the chain
FANIN = 4


@dataclass(frozen=True)
class Layout:
    """How the parts of a chain link, or of a view, fold into the prefix.

    Attributes
    ----------
    whole : bool
        The parts are one full group: its value (the fold of its units'
        values) is appended. Otherwise the parts are the start of a group:
        each full unit's value is appended, then the slots of a partial one
        one by one.
    sizes : tuple of int
        Per unit, in order: 0 for a combined unit (one part), else its
        number of slots (that many parts). Empty: the group, combined (one
        part).
    """

    whole: bool
    sizes: tuple[int, ...]


@dataclass
class Slot:
    """One task's range, and what is known of its state.

    Attributes
    ----------
    start, stop : int
        The sample range.
    pieces : dict of int to (int, Any)
        Finished parts of the range by start (several when the task was
        split to isolate a sample that kills its workers).
    value : Any
        The future of the slot's state once all pieces are in (None before,
        and once its unit holds it).
    absorbed : bool
        Its unit was combined: the slot's own state is no longer held.
    """

    start: int
    stop: int
    pieces: dict[int, tuple[int, Any]] = field(default_factory=dict)
    value: Any = None
    absorbed: bool = False

    @property
    def done(self) -> bool:
        return self.value is not None or self.absorbed


class SlotGrid:
    """The client's ledger of slots, combined units and groups.

    Parameters
    ----------
    combine : callable
        ``combine(futures, label) -> future``: submit a task folding the
        states of ``futures`` (adjacent ranges, in order) into one; ``label``
        names the range for the task's key.

    start : int
        The first sample of the first slot (after a resumed state).
    """

    def __init__(
        self, combine: Callable[[list[Any], str], Any], start: int = 0
    ) -> None:
        self._combine = combine
        self._next_start = start  # where the next slot must start
        self._chain_stop = start  # where the chain's next link starts
        self._slots: dict[int, Slot] = {}
        self._starts: list[int] = []  # slot starts, increasing (slot i at i)
        self._base = 0  # slots before this are in the base state
        self._chain = 0  # the next slot the chain appends (a group's first)
        self._units: dict[int, Any] = {}  # unit number -> future
        self._groups: dict[int, Any] = {}  # group number -> future
        self._done_in_unit: dict[int, int] = {}
        self._formed: set[int] = set()  # units combined (alone or in a group)
        # combine tasks not yet finished, by key: a callback reports errors
        self.pending: dict[str, str] = {}
        #: units ending after this sample are not combined (None: all are)
        self.safe_stop: int | None = None
        #: the number of slots, once the last one is handed out
        self.final: int | None = None
        self.combines = 0

    # -- slots ----------------------------------------------------------------
    def add_slot(self, start: int, stop: int) -> int:
        """A new task's range (after every earlier one): its slot number."""
        if start != self._next_start or stop <= start:
            raise ValueError(
                f"slot [{start}, {stop}) does not follow the last one "
                f"(ending at {self._next_start})"
            )
        self._next_start = stop
        index = len(self._starts)
        self._starts.append(start)
        self._slots[index] = Slot(start, stop)
        return index

    def slot_of(self, sample: int) -> int:
        """The slot holding sample ``sample``."""
        index = bisect.bisect_right(self._starts, sample) - 1
        if index < 0 or index not in self._slots:
            raise KeyError(f"no slot holds sample {sample}")
        return index

    @property
    def n_slots(self) -> int:
        """Slots handed out so far."""
        return len(self._starts)

    def slot(self, index: int) -> Slot:
        return self._slots[index]

    @property
    def chain_stop(self) -> int:
        """The sample where the chain's next link starts."""
        return self._chain_stop

    def piece_done(self, start: int, stop: int, future: Any) -> None:
        """A finished task over ``[start, stop)`` (a whole slot or a piece)."""
        index = self.slot_of(start)
        slot = self._slots[index]
        if slot.done:
            raise ValueError(f"slot [{slot.start}, {slot.stop}) is already done")
        slot.pieces[start] = (stop, future)
        position, ordered = slot.start, []
        while position in slot.pieces:
            end, part = slot.pieces[position]
            ordered.append(part)
            position = end
        if position != slot.stop:
            return  # pieces still missing
        slot.value = (
            ordered[0]
            if len(ordered) == 1
            else self._submit(ordered, f"{slot.start}-{slot.stop}-pieces")
        )
        slot.pieces.clear()
        if index >= self._base:
            self._slot_finished(index)

    # -- combining ------------------------------------------------------------
    def set_safe_stop(self, safe_stop: int | None) -> None:
        """Move the bound past which units are not combined; units it now
        covers are combined at once."""
        raised = safe_stop is None or (
            self.safe_stop is not None and safe_stop > self.safe_stop
        )
        self.safe_stop = safe_stop
        if raised:
            for unit, count in list(self._done_in_unit.items()):
                if count == FANIN and unit not in self._formed:
                    self._try_unit(unit)

    def _slot_finished(self, index: int) -> None:
        unit = (index - self._base) // FANIN
        self._done_in_unit[unit] = self._done_in_unit.get(unit, 0) + 1
        if self._done_in_unit[unit] == FANIN:
            self._try_unit(unit)

    def _try_unit(self, unit: int) -> None:
        first = self._base + unit * FANIN
        last = self._slots[first + FANIN - 1]
        if self.safe_stop is not None and last.stop > self.safe_stop:
            return
        slots = [self._slots[first + j] for j in range(FANIN)]
        self._formed.add(unit)
        self._units[unit] = self._submit(
            [s.value for s in slots], f"{slots[0].start}-{last.stop}-unit"
        )
        for s in slots:
            s.value, s.absorbed = None, True
        group = unit // FANIN
        members = range(group * FANIN, (group + 1) * FANIN)
        if all(u in self._units for u in members):
            begin = self._slots[self._base + group * FANIN**2].start
            self._groups[group] = self._submit(
                [self._units.pop(u) for u in members], f"{begin}-{last.stop}-group"
            )

    def _submit(self, futures: list[Any], label: str) -> Any:
        future = self._combine(futures, label)
        self.combines += 1
        self.pending[_key(future)] = label
        return future

    def finished(self, key: str) -> bool:
        """A combine task finished or erred: True if it was one of ours."""
        return self.pending.pop(key, None) is not None

    # -- the chain and views --------------------------------------------------
    def next_link(self) -> tuple[Layout, list[Any], int] | None:
        """The next group, if all its slots are in: (layout, parts, end);
        the chain moves past it."""
        first = self._chain
        count = self._group_size(first)
        if not self._handed_out(first, count) or not all(
            self._slots[first + j].done for j in range(count)
        ):
            return None
        group = (first - self._base) // FANIN**2
        end = self._slots[first + count - 1].stop
        if group in self._groups:
            layout, parts = Layout(True, ()), [self._groups.pop(group)]
        else:
            layout, parts = self._parts(first, count, whole=count == FANIN**2)
        # the slots stay until a fetched state covers them (forget_before):
        # a restart from an older state needs them again
        for unit in range(group * FANIN, (group + 1) * FANIN):
            self._units.pop(unit, None)
            self._done_in_unit.pop(unit, None)
            self._formed.discard(unit)
        self._chain = first + count
        self._chain_stop = end
        return layout, parts, end

    def view(self) -> tuple[Layout, list[Any], int] | None:
        """What follows the chain's last link without a gap: (layout, parts,
        end), None if nothing does."""
        first = self._chain
        count = 0
        while first + count in self._slots and self._slots[first + count].done:
            count += 1
        count = min(count, self._group_size(first))
        if count == 0:
            return None
        layout, parts = self._parts(first, count, whole=False)
        return layout, parts, self._slots[first + count - 1].stop

    def _group_size(self, first: int) -> int:
        """The slots of the group starting at slot ``first``: a full group's,
        fewer only for the last group of a run whose last slot is known."""
        full = FANIN**2
        return full if self.final is None else max(0, min(full, self.final - first))

    def _handed_out(self, first: int, count: int) -> bool:
        """Whether the ``count`` slots from ``first`` exist (all handed out)."""
        return count > 0 and first + count <= len(self._starts)

    def _parts(self, first: int, count: int, whole: bool) -> tuple[Layout, list[Any]]:
        """The finished slots ``first .. first+count-1`` as units and slots."""
        sizes: list[int] = []
        parts: list[Any] = []
        for offset in range(0, count, FANIN):
            unit = (first + offset - self._base) // FANIN
            if unit in self._units:
                sizes.append(0)
                parts.append(self._units[unit])
                continue
            slots = [
                self._slots[first + j]
                for j in range(offset, min(offset + FANIN, count))
            ]
            sizes.append(len(slots))
            parts.extend(s.value for s in slots)
        return Layout(whole, tuple(sizes)), parts

    def forget_before(self, stop: int) -> None:
        """Drop the slots a fetched state of the first ``stop`` samples covers."""
        for index in [i for i, slot in self._slots.items() if slot.stop <= stop]:
            if index < self._chain:
                del self._slots[index]

    # -- restarts -------------------------------------------------------------
    def rebase(self, stop: int, alive: Callable[[Any], bool]) -> list[Slot]:
        """Start the tree again after a state of the first ``stop`` samples
        (a slot boundary; a restart of the chain): every unit and group is
        dropped, and the slots after ``stop`` form a new grid.

        Returns the slots to run again: those whose state is no longer held
        (absorbed into a dropped unit) or not ``alive`` (their task erred).
        Report them again with :meth:`piece_done`.
        """
        first = bisect.bisect_left(self._starts, stop)
        if first < len(self._starts) and self._starts[first] != stop:
            raise ValueError(f"sample {stop} is not the start of a slot")
        for index in [i for i in self._slots if i < first]:
            del self._slots[index]
        self._base = self._chain = first
        self._chain_stop = stop
        self._units.clear()
        self._groups.clear()
        self._done_in_unit.clear()
        self._formed.clear()
        self.pending.clear()
        lost = []
        for index in sorted(self._slots):
            slot = self._slots[index]
            if slot.absorbed or (slot.value is not None and not alive(slot.value)):
                slot.absorbed, slot.value = False, None
                slot.pieces.clear()
                lost.append(slot)
            elif slot.value is not None:
                self._slot_finished(index)
        return lost


def _key(future: Any) -> str:
    return str(getattr(future, "key", id(future)))
