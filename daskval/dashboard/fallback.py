"""The client-side dashboard: the ``/daskval`` page served from this process.

Used when the scheduler cannot serve the page itself (it cannot import
daskval, has no dashboard, or its distributed lacks an internal the page
needs; see :mod:`daskval.dashboard.scheduler`). A Bokeh server runs on a
thread of its own with its own event loop, bound to 127.0.0.1 unless
``DASKVAL_DASHBOARD_ADDRESS`` says otherwise, and is fed by the same progress
events, received with ``Client.subscribe_topic``; so it shows the runs of
every client of that scheduler, not only this one's. One server per process,
started on first use and stopped at exit.

Only public Bokeh and Dask APIs are used here.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import os
import threading
from typing import Any

from daskval.dashboard.events import TOPIC
from daskval.dashboard.store import RunStore

__all__ = [
    "ADDRESS_ENV",
    "DEFAULT_ADDRESS",
    "FallbackServer",
    "fallback_server",
    "parse_address",
    "stop_fallback_server",
]

logger = logging.getLogger("daskval")

#: Environment variable with the fallback server's ``host:port``.
ADDRESS_ENV = "DASKVAL_DASHBOARD_ADDRESS"
#: Loopback only, any free port: nothing is exposed unless the user asks.
DEFAULT_ADDRESS = "127.0.0.1:0"
_START_TIMEOUT = 30.0

_lock = threading.Lock()
_server: FallbackServer | None = None


def parse_address(text: str, name: str = ADDRESS_ENV) -> tuple[str, int]:
    """``host:port`` (port 0: any free port) as a (host, port) pair.

    Raises
    ------
    ValueError
        Naming ``name`` when ``text`` is not of that form.
    """
    host, sep, port_text = str(text).strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(
            f"{name}={text!r}: expected host:port, e.g. 127.0.0.1:8790 "
            "(port 0 picks a free port)"
        )
    return host, int(port_text)


def configured_address() -> tuple[str, int]:
    """The fallback server's address: ``DASKVAL_DASHBOARD_ADDRESS`` or loopback."""
    return parse_address(os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS)


class FallbackServer:
    """A Bokeh server of the ``/daskval`` page on its own thread.

    Parameters
    ----------
    host, port : str, int
        Where to listen; port 0 picks a free port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.store = RunStore()
        self.port = port
        self._subscribed: set[str] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread = threading.Thread(
            target=self._serve, name="daskval-dashboard", daemon=True
        )

    @property
    def link(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/daskval"

    def start(self) -> FallbackServer:
        """Start serving; returns once the port is bound (or raises why not)."""
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise TimeoutError("the daskval dashboard server did not start")
        if self._error is not None:
            raise self._error
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._server = self._make_server()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _make_server(self) -> Any:
        """The Bokeh server, bound and started on this thread's loop."""
        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.server.server import BaseServer
        from bokeh.server.tornado import BokehTornado
        from bokeh.server.util import bind_sockets
        from tornado.httpserver import HTTPServer
        from tornado.ioloop import IOLoop

        sockets, self.port = bind_sockets(self.host, self.port)
        host = f"[{self.host}]" if ":" in self.host else self.host
        # browsers send the page's own host:port as the websocket's origin
        origins = [f"{host}:{self.port}", f"localhost:{self.port}"]
        app = BokehTornado(
            {"/daskval": Application(FunctionHandler(self._document))},
            extra_websocket_origins=origins,
        )
        http = HTTPServer(app)
        http.add_sockets(sockets)
        server = BaseServer(IOLoop.current(), app, http)
        server.start()
        return server

    def _document(self, doc: Any) -> None:
        from daskval.dashboard.page import make_document  # Bokeh: only when served

        make_document(self.store, doc)

    def follow(self, client: Any) -> None:
        """Receive ``client``'s scheduler's progress events (once per client)."""
        if client.id in self._subscribed:
            return
        client.subscribe_topic(TOPIC, functools.partial(_receive, self.store))
        self._subscribed.add(client.id)

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or loop.is_closed():
            return

        def _stop() -> None:
            if server is not None:
                server.stop()
            loop.stop()

        loop.call_soon_threadsafe(_stop)
        self._thread.join(timeout=10)


def _receive(store: RunStore, event: tuple[float, Any]) -> None:
    """A ``subscribe_topic`` handler: ``event`` is (timestamp, message)."""
    store.add(event[1])


def fallback_server() -> FallbackServer:
    """The process's fallback server, started on first use.

    Raises
    ------
    ValueError
        When ``DASKVAL_DASHBOARD_ADDRESS`` is malformed.
    OSError
        When the address cannot be bound.
    """
    global _server
    with _lock:
        if _server is None:
            host, port = configured_address()
            _server = FallbackServer(host, port).start()
            atexit.register(stop_fallback_server)
            logger.info("daskval dashboard (client side) at %s", _server.link)
        return _server


def stop_fallback_server() -> None:
    """Stop the process's fallback server, if one runs."""
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        server.stop()
