"""What a run does with its progress: publish events, draw the bar, link the page.

The engine's run loop owns one :class:`RunMonitor` per run and calls
:meth:`RunMonitor.update` at every fetch of the merged state. The monitor
turns that into a progress event (:mod:`daskval.dashboard.events`), publishes
it with ``Client.log_event`` (the scheduler's ``/daskval`` page and the
fallback server both read those events), and draws the console bar.

Nothing here may break a run: a failure to publish is logged once and the
run goes on.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from daskval.dashboard.console import ProgressBar, check_progress, progress_wanted
from daskval.dashboard.events import TOPIC, RateTracker, RunDescription, progress_event
from daskval.dashboard.fallback import configured_address
from daskval.exceptions import ValuationError

__all__ = [
    "RunMonitor",
    "announce",
    "check_dashboard",
    "check_progress",
    "connect_dashboard",
    "make_monitor",
    "utility_title",
]

logger = logging.getLogger("daskval")

_MODES = {True: "auto", False: "off", "scheduler": "scheduler", "client": "client"}
# the page's address per client (None: the scheduler cannot serve it, and why)
_links: dict[str, tuple[str | None, str | None]] = {}
_links_lock = threading.Lock()
# links already printed by this process (each is printed once when not drawing)
_printed: set[str] = set()


def check_dashboard(dashboard: Any) -> str:
    """Validate ``fit(dashboard=...)``; the mode: auto, scheduler, client or off.

    ``True`` (default): the scheduler's ``/daskval`` page, or the client-side
    server when the scheduler cannot serve it; ``"scheduler"``: that page or
    an error; ``"client"``: always the client-side server; ``False``: no
    dashboard and no progress events.
    """
    if isinstance(dashboard, (bool, str)) and dashboard in _MODES:
        mode = _MODES[dashboard]
        if mode in ("auto", "client"):
            configured_address()  # a bad DASKVAL_DASHBOARD_ADDRESS fails now
        return mode
    raise ValueError(
        "dashboard must be True (the scheduler's /daskval page, else a "
        "client-side server), 'scheduler', 'client' or False, got "
        f"{dashboard!r}"
    )


def _scheduler_page(client: Any) -> tuple[str | None, str | None]:
    """(link, None) when the scheduler serves the page, else (None, why not);
    asked once per client."""
    from daskval.dashboard.scheduler import PageUnavailable, attach_page

    with _links_lock:
        known = _links.get(client.id)
        if known is None:
            try:
                known = (attach_page(client), None)
            except PageUnavailable as exc:
                known = (None, str(exc))
            _links[client.id] = known
        return known


def connect_dashboard(client: Any, mode: str) -> str | None:
    """Make the ``/daskval`` page available for ``client``'s runs; its address.

    Raises
    ------
    ValuationError
        With ``mode="scheduler"``, when the scheduler cannot serve the page.
    """
    if mode == "off":
        return None
    if mode in ("auto", "scheduler"):
        link, why = _scheduler_page(client)
        if link is not None:
            return link
        if mode == "scheduler":
            raise ValuationError(
                f"dashboard='scheduler': the scheduler cannot serve /daskval: {why}; "
                "pass dashboard=True to fall back to a client-side server"
            )
        logger.info("daskval: %s; serving /daskval from this process instead", why)
    from daskval.dashboard.fallback import fallback_server

    server = fallback_server()
    server.follow(client)
    return server.link


class RunMonitor:
    """Progress of one run: events to the scheduler, the bar to the console.

    Parameters
    ----------
    client : distributed.Client
        The run's client.
    description : RunDescription
        The run.
    names : sequence of str
        Player names.
    link : str or None
        The ``/daskval`` page's address (None: no dashboard, no events).
    progress : bool
        Draw the console bar (and print the link above it).
    """

    def __init__(
        self,
        client: Any,
        description: RunDescription,
        names: Sequence[str],
        link: str | None,
        progress: bool,
    ) -> None:
        self.client = client
        self.description = description
        self.names = names
        self.link = link
        self.rates = RateTracker()
        self.latest: dict[str, Any] | None = None
        self.bar = ProgressBar() if progress else None
        self._pending: list[tuple[Any, int]] = []
        self._failed_once = False
        if link is not None and self.bar is not None:
            self.bar.message(f"daskval dashboard: {link}")

    @property
    def active(self) -> bool:
        """Whether anyone listens (events or bar); the loop skips work if not."""
        return self.link is not None or self.bar is not None

    def leaf_done(self, future: Any, n_samples: int) -> None:
        """A finished leaf: attributed to its worker at the next update."""
        if self.link is not None:
            self._pending.append((future, n_samples))

    def _attribute_leaves(self, elapsed: float) -> None:
        """Which worker ran the leaves finished since the last update (one
        ``who_has`` call a second, not one per task)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        where = self.client.who_has([f for f, _ in pending])
        for future, n in pending:
            workers = where.get(future.key) or ()
            if workers:
                self.rates.observe_worker(elapsed, str(workers[0]), n)

    def update(
        self,
        *,
        status: str,
        elapsed: float,
        n_samples: int,
        n_evaluations: int,
        completion: float,
        values: np.ndarray,
        stderr: np.ndarray,
        eval_stats: Any,
        final: bool = False,
    ) -> None:
        """Publish the run's state (never raises: a run outlives its watchers)."""
        if not self.active:
            return
        try:
            self.rates.observe(elapsed, n_evaluations, completion)
            if self.link is not None and not final:
                self._attribute_leaves(elapsed)
            event = progress_event(
                self.description,
                status=status,
                elapsed=elapsed,
                n_samples=n_samples,
                n_evaluations=n_evaluations,
                n_failed=eval_stats.n_failed,
                completion=completion,
                memo_hits=eval_stats.memo_hits,
                memo_misses=eval_stats.memo_misses,
                values=values,
                stderr=stderr,
                names=self.names,
                rates=self.rates,
                failures=eval_stats.failures,
            )
            self.latest = event
            if self.link is not None:
                self.client.log_event(TOPIC, event)
            if self.bar is not None:
                if final:
                    self.bar.close(event)
                else:
                    self.bar.update(event)
        except Exception as exc:
            if not self._failed_once:
                self._failed_once = True
                logger.warning(
                    "daskval: could not publish progress (%s: %s); the run goes on",
                    type(exc).__name__,
                    exc,
                )

    def close(self) -> None:
        """End the bar's line (a run that failed before its final update)."""
        if self.bar is not None:
            self.bar.close()


def announce(link: str | None, progress: bool, stream: Any = None) -> None:
    """Print the page's address once per process when no bar prints it."""
    if link is None or progress or link in _printed:
        return
    _printed.add(link)
    print(f"daskval dashboard: {link}", file=stream or sys.stderr, flush=True)


def utility_title(utility: dict[str, Any]) -> str:
    """The utility as the page's heading names it, from its ``describe()``:
    ``"ModelUtility Pipeline(StandardScaler, LogisticRegression), accuracy"``
    (the model's short name, never a cut-off repr)."""
    text = str(utility.get("class", "utility"))
    model = utility.get("model_name")
    if model is None and "model" in utility:  # a description without the name
        model = str(utility["model"]).split("(", 1)[0].rsplit(".", 1)[-1]
    if model:
        text += f" {model}"
    scoring = utility.get("scoring")
    if isinstance(scoring, str) and len(scoring) <= 40:
        text += f", {scoring}"
    return text


def make_monitor(
    client: Any,
    *,
    run_id: str,
    method: str,
    utility: dict[str, Any],
    stop: str,
    names: Sequence[str],
    dashboard: str,
    progress: bool | None,
    quiet: bool,
) -> RunMonitor:
    """The monitor of a new run: connects the dashboard, decides on the bar.

    ``quiet`` (``progress=False`` given explicitly) prints nothing at all.
    """
    show_bar = progress_wanted(progress)
    link = connect_dashboard(client, dashboard)
    if not quiet:
        announce(link, show_bar)
    description = RunDescription(
        run_id=run_id,
        method=method,
        n_players=len(names),
        utility=utility_title(utility),
        stop=stop,
    )
    return RunMonitor(client, description, names, link, show_bar)
