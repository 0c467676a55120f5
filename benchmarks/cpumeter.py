"""CPU seconds used by this process and all its descendants over a stretch of time.

On a shared machine wall time says as much about the neighbours as about the
contender: a process waiting for a core is not working. CPU time (user +
system) counts only the time spent on a core, so it measures the work a
contender does, not how much of the machine it got. It does not see idle time
(latency, a worker waiting for a task): wall time does, on a quiet machine.

Linux only (reads ``/proc``); standard library only, so that every runner's
environment can use it. Descendants are found by their parent pid and polled,
so workers that a contender starts and kills during the stretch (joblib's
loky pool) are counted up to their last poll.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

__all__ = ["CpuMeter", "cpu_seconds_of"]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds_of(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    # after "pid (comm) ": state ppid ... utime is field 14, stime 15 (1-based)
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _parent_of(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def descendants(root: int) -> set[int]:
    """Pids of every living descendant of ``root``."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            parent = _parent_of(name)
            if parent is not None:
                children.setdefault(parent, []).append(int(name))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


class CpuMeter:
    """Measure CPU seconds of this process and its descendants, start to stop.

    A background thread reads the descendants' CPU times every ``interval``
    seconds (and looks for new descendants every ``rescan`` seconds); its own
    CPU time is subtracted from this process's.

    Examples
    --------
    >>> meter = CpuMeter().start()
    >>> ...  # doctest: +SKIP
    >>> meter.stop()["cpu_seconds"]  # doctest: +SKIP
    """

    def __init__(self, interval: float = 0.1, rescan: float = 1.0) -> None:
        self.interval, self.rescan = interval, rescan
        self.root = os.getpid()
        self.baseline: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.known: set[int] = set()
        self._own_start = 0.0
        self._thread_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> CpuMeter:
        """Take the baseline and start polling."""
        self.known = descendants(self.root)
        for pid in self.known:
            cpu = cpu_seconds_of(pid)
            if cpu is not None:
                self.baseline[pid] = self.last[pid] = cpu
        self._own_start = time.process_time()
        self._thread.start()
        return self

    def _sample(self, rescan: bool) -> None:
        if rescan:
            self.known |= descendants(self.root)
        for pid in self.known:
            cpu = cpu_seconds_of(pid)
            if cpu is not None:
                self.last[pid] = cpu

    def _poll(self) -> None:
        begin = time.thread_time()
        next_scan = time.monotonic() + self.rescan
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            self._sample(rescan=now >= next_scan)
            if now >= next_scan:
                next_scan = now + self.rescan
        self._thread_cpu = time.thread_time() - begin

    def stop(self) -> dict[str, Any]:
        """Stop polling; CPU seconds of this process, of its descendants, in all."""
        own = time.process_time() - self._own_start
        self._stop.set()
        self._thread.join()
        self._sample(rescan=True)
        own -= self._thread_cpu
        children = sum(
            cpu - self.baseline.get(pid, 0.0) for pid, cpu in self.last.items()
        )
        return {
            "cpu_seconds": own + children,
            "cpu_own_seconds": own,
            "cpu_children_seconds": children,
            "processes": 1 + len(self.last),
        }
