"""The console progress bar of ``fit()``: completion, evaluations/s and ETA.

On by default where someone watches (a terminal, or a Jupyter notebook),
silent elsewhere (test logs, cron jobs, batch scripts): see
:func:`progress_wanted`. In a terminal or notebook the bar redraws one line
with a carriage return; forced on (``progress=True``) into a file or pipe it
writes a full line every few seconds instead.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, TextIO

__all__ = [
    "PROGRESS_ENV",
    "ProgressBar",
    "check_progress",
    "format_duration",
    "progress_wanted",
]

#: Environment variable that turns the bar on (1) or off (0) by default.
PROGRESS_ENV = "DASKVAL_PROGRESS"
_WIDTH = 24
# seconds between redraws (terminal) and between lines (pipe or file)
_REDRAW = 0.25
_LINE_EVERY = 10.0
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def check_progress(progress: Any) -> bool | None:
    """Validate ``fit(progress=...)``: True, False or None (automatic)."""
    if progress is None or isinstance(progress, bool):
        return progress
    raise TypeError(
        "progress must be True (always show the bar), False (never) or None "
        f"(in terminals and notebooks), got {type(progress).__name__}"
    )


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (its streams are not TTYs but render \\r)."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    if get_ipython is None:
        return False
    ip = get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _interactive(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty()) or _in_notebook()
    except ValueError:  # a closed stream
        return False


def progress_wanted(progress: bool | None, stream: TextIO | None = None) -> bool:
    """Whether to show the bar: the argument, else ``DASKVAL_PROGRESS``, else
    only when ``stream`` (stderr) is a terminal or a notebook's output.

    Raises
    ------
    ValueError
        When ``DASKVAL_PROGRESS`` is set to something other than 0/1.
    """
    if progress is not None:
        return progress
    env = os.environ.get(PROGRESS_ENV)
    if env is not None:
        text = env.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{PROGRESS_ENV}={env!r}: expected 1 or 0")
    return _interactive(stream or sys.stderr)


def format_duration(seconds: float | None) -> str:
    """A span of time with its units, ``"12 min 35 s"``: never ``"12:35"``,
    which reads as a clock time next to an ETA. ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def format_bar(event: dict[str, Any], width: int = _WIDTH) -> str:
    """One line from a progress event (see :mod:`daskval.dashboard.events`)."""
    completion = float(event.get("completion") or 0.0)
    filled = round(width * completion)
    parts = [
        f"daskval [{'#' * filled}{'.' * (width - filled)}] {100 * completion:5.1f}%",
        f"{event.get('n_evaluations', 0):,} evals",
        f"{event.get('evaluations_per_second', 0.0):,.0f} evals/s",
        f"elapsed {format_duration(event.get('elapsed'))}",
    ]
    if event.get("status") == "running":
        parts.append(f"ETA {format_duration(event.get('eta'))}")
    else:
        parts.append(str(event.get("status")))
    if event.get("n_failed"):
        parts.append(f"{event['n_failed']:,} failed")
    return " | ".join(parts)


class ProgressBar:
    """Draws progress events on ``stream`` (stderr by default).

    Parameters
    ----------
    stream : file-like, optional
        Where to draw; ``sys.stderr`` when None.
    interactive : bool, optional
        Redraw one line (True) or write a line every 10 s (False); detected
        from ``stream`` when None.
    """

    def __init__(
        self, stream: TextIO | None = None, *, interactive: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.interactive = (
            _interactive(self.stream) if interactive is None else interactive
        )
        self._last_draw = -float("inf")
        self._last_line = ""
        self._closed = False

    def message(self, text: str) -> None:
        """Print a line of its own (e.g. the dashboard link) above the bar."""
        if self._last_line and self.interactive:
            self.stream.write("\r" + " " * len(self._last_line) + "\r")
        self.stream.write(text + "\n")
        if self._last_line and self.interactive:
            self.stream.write(self._last_line)
        self.stream.flush()

    def update(self, event: dict[str, Any], *, force: bool = False) -> None:
        """Draw ``event`` (at most every 0.25 s, or 10 s when not interactive)."""
        if self._closed:
            return
        now = time.monotonic()
        every = _REDRAW if self.interactive else _LINE_EVERY
        if not force and now - self._last_draw < every:
            return
        self._last_draw = now
        line = format_bar(event)
        if self.interactive:
            # pad over a longer previous line
            pad = max(0, len(self._last_line) - len(line))
            self.stream.write("\r" + line + " " * pad)
        else:
            self.stream.write(line + "\n")
        self._last_line = line
        self.stream.flush()

    def close(self, event: dict[str, Any] | None = None) -> None:
        """Draw the final state (if given) and end the line."""
        if self._closed:
            return
        if event is not None:
            self.update(event, force=True)
        if self.interactive and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
        self._closed = True
