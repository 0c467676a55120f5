"""Peak memory of this process and all its descendants over a stretch of time.

A background thread sums the resident set size (RSS) of the process tree every
``interval`` seconds (descendants rescanned each time, so worker pools started
meanwhile are seen) and keeps the largest sum. Shared pages (libraries mapped
by every worker) count once per process in RSS, as the notes' "peak RSS, all
processes" figures did; the proportional set size (PSS) splits them among
their processes, so its sum is what the tree really occupies, and is reported
too. Linux only (reads ``/proc``), standard library only, so every runner's
environment can use it; a peak shorter than the interval can be missed.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from cpumeter import descendants

__all__ = ["RssMeter", "pss_bytes_of", "rss_bytes_of"]


def _field_bytes(path: str, field: bytes) -> int:
    """A ``Name:  123 kB`` field of a /proc file in bytes (0 if unreadable)."""
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_bytes_of(pid: int) -> int:
    """Resident bytes of process ``pid`` (0 if it is gone)."""
    return _field_bytes(f"/proc/{pid}/status", b"VmRSS:")


def pss_bytes_of(pid: int) -> int:
    """Proportional set size of process ``pid`` (0 if gone or unreadable)."""
    return _field_bytes(f"/proc/{pid}/smaps_rollup", b"Pss:")


class RssMeter:
    """The peak over time of the summed RSS of this process tree.

    Examples
    --------
    >>> meter = RssMeter().start()
    >>> ...  # doctest: +SKIP
    >>> meter.stop()["peak_rss_bytes"]  # doctest: +SKIP
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.root = os.getpid()
        self.peak = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def sample(self) -> int:
        """Sum the tree's RSS now, update the peak; the sum."""
        pids = {self.root} | descendants(self.root)
        total = sum(rss_bytes_of(pid) for pid in pids)
        if total > self.peak:
            self.peak, self.peak_processes = total, len(pids)
        self.peak_pss = max(self.peak_pss, sum(pss_bytes_of(pid) for pid in pids))
        return total

    def start(self) -> RssMeter:
        self.sample()
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the peak summed RSS (and how many processes it
        summed) and the peak summed PSS."""
        self._stop.set()
        self._thread.join()
        self.sample()
        return {
            "peak_rss_bytes": self.peak,
            "peak_pss_bytes": self.peak_pss,
            "peak_processes": self.peak_processes,
        }
