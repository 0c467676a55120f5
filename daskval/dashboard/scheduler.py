"""The ``/daskval`` page on the scheduler's own dashboard.

This is the one module of daskval that uses distributed internals, and the
only one that needs to: distributed has no supported API for extension pages
(the maintainers' answer in distributed#2790 and #3503 is "add a Bokeh
application from a plugin"). What it uses:

- ``distributed.dashboard.core.BokehApplication(applications, server,
  prefix)``, which wraps Bokeh apps the way the built-in pages are;
- ``Scheduler.http_application.add_application(app)`` and
  ``Scheduler.http_server``, the dashboard's tornado routing;
- a running Bokeh dashboard on the scheduler (a ``BokehTornado`` among
  ``http_application.applications``).

:func:`missing_internals` checks all of them on the scheduler at run time
(a library cannot pin distributed: client, scheduler and workers must match),
and :func:`attach_page` refuses with the reason when any is missing, or when
the scheduler cannot import daskval; the caller then falls back to the
client-side server (:mod:`daskval.dashboard.fallback`). Everything else,
events included, goes through public APIs (``log_event``, ``SchedulerPlugin``,
``Client.register_plugin``, ``run_on_scheduler``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from distributed.diagnostics.plugin import SchedulerPlugin

from daskval.dashboard.events import TOPIC
from daskval.dashboard.page import make_document
from daskval.dashboard.store import RunStore

__all__ = [
    "PLUGIN_NAME",
    "ROUTE",
    "DaskvalPagePlugin",
    "PageUnavailable",
    "attach_page",
    "missing_internals",
]

logger = logging.getLogger("daskval")

PLUGIN_NAME = "daskval-dashboard"
ROUTE = "/daskval"


class PageUnavailable(RuntimeError):
    """The scheduler cannot serve the ``/daskval`` page; the message says why."""


def missing_internals(scheduler: Any) -> str | None:
    """Why ``scheduler`` cannot serve the page, or None when it can.

    Runs on the scheduler (through ``run_on_scheduler``, and again when the
    plugin starts).
    """
    try:
        from bokeh.server.tornado import BokehTornado
        from distributed.dashboard.core import BokehApplication
    except Exception as exc:  # ImportError, or bokeh refused by distributed
        return f"distributed's Bokeh dashboard cannot be imported ({exc})"
    if not callable(BokehApplication):
        return "distributed.dashboard.core.BokehApplication is not callable"
    http = getattr(scheduler, "http_application", None)
    if not callable(getattr(http, "add_application", None)):
        return "the scheduler has no http_application.add_application"
    if getattr(scheduler, "http_server", None) is None:
        return "the scheduler has no http_server"
    applications = getattr(http, "applications", None)
    if not isinstance(applications, list) or not any(
        isinstance(app, BokehTornado) for app in applications
    ):
        return "the scheduler's dashboard is off (no Bokeh application is served)"
    return None


def _scheduler_check(dask_scheduler: Any) -> dict[str, Any]:
    """Run on the scheduler: daskval's version there, and what is missing."""
    from daskval._version import __version__

    return {
        "version": __version__,
        "missing": missing_internals(dask_scheduler),
    }


def _page_document(store: RunStore, scheduler: Any, extra: Any, doc: Any) -> None:
    # BokehApplication calls application functions as f(scheduler, extra, doc)
    make_document(store, doc)


class DaskvalPagePlugin(SchedulerPlugin):
    """Serves ``/daskval`` on the scheduler's dashboard from progress events.

    Parameters
    ----------
    prefix : str
        The dashboard's URL prefix (``"/"`` unless the scheduler was started
        with ``--dashboard-prefix``).
    """

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self, prefix: str = "/") -> None:
        self.prefix = prefix
        self.store = RunStore()
        self.app: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"prefix": self.prefix}  # the store and app live on the scheduler

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["prefix"])  # type: ignore[misc]

    async def start(self, scheduler: Any) -> None:
        # events logged before the plugin arrived (the scheduler keeps ~1000)
        for _, msg in scheduler.get_events(TOPIC):
            self.store.add(msg)
        reason = missing_internals(scheduler)
        if reason is not None:
            logger.warning("daskval: no /daskval page on this scheduler: %s", reason)
            return
        from distributed.dashboard.core import BokehApplication
        from tornado.ioloop import IOLoop

        app = BokehApplication(
            {ROUTE: functools.partial(_page_document, self.store)},
            scheduler,
            prefix=self.prefix,
        )
        scheduler.http_application.add_application(app)
        app.initialize(IOLoop.current())
        app.start()
        self.app = app

    async def close(self) -> None:
        if self.app is not None:
            self.app.stop()
            self.app = None

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == TOPIC:
            self.store.add(msg)


def page_link(dashboard_link: str) -> tuple[str, str]:
    """The ``/daskval`` address next to the Dask dashboard's ``/status``, and
    the dashboard's URL prefix."""
    parts = urlsplit(dashboard_link)
    path = parts.path
    base = path[: -len("status")] if path.endswith("/status") else path
    base = base if base.endswith("/") else base + "/"
    link = urlunsplit((parts.scheme, parts.netloc, base + ROUTE.lstrip("/"), "", ""))
    return link, base


def attach_page(client: Any) -> str:
    """Serve ``/daskval`` on ``client``'s scheduler; returns the page's address.

    Raises
    ------
    PageUnavailable
        When the scheduler has no dashboard, cannot import daskval (or runs
        another version of it), or lacks an internal the page needs.
    """
    dashboard_link = client.dashboard_link
    if not dashboard_link:
        raise PageUnavailable("the scheduler has no dashboard")
    try:
        check = client.run_on_scheduler(_scheduler_check)
    except Exception as exc:
        raise PageUnavailable(
            f"the scheduler cannot run daskval ({type(exc).__name__}: {exc})"
        ) from exc
    from daskval._version import __version__

    if check.get("version") != __version__:
        raise PageUnavailable(
            f"the scheduler has daskval {check.get('version')}, this client "
            f"{__version__}"
        )
    if check.get("missing"):
        raise PageUnavailable(str(check["missing"]))
    link, prefix = page_link(dashboard_link)
    client.register_plugin(DaskvalPagePlugin(prefix), name=PLUGIN_NAME)
    return link
