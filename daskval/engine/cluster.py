"""Which cluster a valuation runs on: the caller's client, or an embedded one.

The embedded LocalCluster has one single-threaded worker process per core
(scikit-learn fits hold the GIL much of the time) with BLAS pinned to one
thread, binds to 127.0.0.1, is started once per Python process, is never made
the user's default client, and is closed at exit.
"""

from __future__ import annotations

import ast
import atexit
import importlib
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask
from distributed import Client, LocalCluster

from daskval.exceptions import ScriptGuardError

__all__ = [
    "connect_scheduler",
    "embedded_client",
    "local_cluster",
    "resolve_client",
    "shutdown_embedded",
]

logger = logging.getLogger("daskval")

_BLAS_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}

# imported by every worker of a cluster daskval starts, before the first task
_WORKER_MODULES = ("daskval.engine.tasks", "sklearn.base", "sklearn.metrics")

_lock = threading.Lock()
_embedded: tuple[LocalCluster, Client] | None = None


def resolve_client(client: Any = None) -> Client:
    """``client`` if given, else the active Dask client, else the embedded one."""
    if client is not None:
        if not isinstance(client, Client):
            raise TypeError(
                f"client must be a distributed.Client, got {type(client).__name__}"
            )
        if client.status not in ("running", "connecting", "newly-created"):
            raise ValueError(f"client is not connected (status {client.status!r})")
        return client
    try:
        return Client.current(allow_global=True)
    except ValueError:
        pass  # outside the except block, so errors are not chained to this one
    return embedded_client()


def _start_local_cluster(n_workers: int, dashboard_address: str) -> LocalCluster:
    """Single-threaded worker processes, BLAS pinned, on 127.0.0.1, no profiler.

    Dask's statistical profiler samples every worker thread's stack every
    10 ms; on long scikit-learn fits it cost 8-10% of the run here (W4 of
    benchmarks/, two A/B pairs). Nannies pass the config they were built
    under to their workers, restarted ones included.
    """
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dashboard_address,
            env=dict(_BLAS_ENV),
            silence_logs=logging.ERROR,
        )


def _import_worker_modules() -> None:
    for name in _WORKER_MODULES:
        importlib.import_module(name)


def _warm_up(client: Client) -> None:
    """Import what tasks need on every worker now, not inside the first fit."""
    client.run(_import_worker_modules)


@contextmanager
def local_cluster(n_workers: int) -> Iterator[Client]:
    """A LocalCluster of ``n_workers`` set up like the embedded one, and its client.

    Unlike the embedded cluster it lives only as long as the ``with`` block.
    """
    check_main_guard()
    _forget_unimportable_main_file()
    with (
        _start_local_cluster(n_workers, "127.0.0.1:0") as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        _warm_up(client)
        yield client


def connect_scheduler(
    address: str,
    *,
    timeout: float = 10.0,
    worker_timeout: float = 60.0,
    security: Any = None,
) -> Client:
    """A client of the running scheduler at ``address``, once it has a worker.

    ``security`` (a ``distributed.security.Security``) is needed for a
    ``tls://`` scheduler: the CA file and this client's certificate and key.

    Raises
    ------
    OSError, TimeoutError
        When the scheduler cannot be reached within ``timeout`` seconds, or no
        worker joins within ``worker_timeout`` seconds.
    """
    client = Client(
        address, timeout=f"{timeout}s", security=security, set_as_default=False
    )
    try:
        if not client.nthreads():
            client.wait_for_workers(1, timeout=worker_timeout)
    except BaseException:
        client.close()
        raise
    return client


def embedded_client() -> Client:
    """The process-wide embedded LocalCluster's client, started on first use."""
    global _embedded
    with _lock:
        if _embedded is not None and _embedded[1].status == "running":
            return _embedded[1]
        check_main_guard()
        _forget_unimportable_main_file()
        from dask.system import CPU_COUNT

        cluster = _start_local_cluster(max(1, CPU_COUNT), "127.0.0.1:8787")
        client = Client(cluster, set_as_default=False)
        _warm_up(client)
        _embedded = (cluster, client)
        atexit.register(shutdown_embedded)
        logger.info(
            "daskval started a LocalCluster with %d workers; dashboard at %s",
            len(cluster.workers),
            client.dashboard_link,
        )
        return client


def shutdown_embedded() -> None:
    """Close the embedded cluster, if one was started."""
    global _embedded
    with _lock:
        if _embedded is None:
            return
        cluster, client = _embedded
        _embedded = None
    try:
        client.close()
        cluster.close()
    except Exception:  # interpreter shutdown: best effort
        pass


_GUARD_HELP = (
    "daskval starts worker processes, which re-import your script ({path}). Your "
    "script starts the valuation at import time (line {line}), so every worker "
    "would start another cluster. Put the code that runs the valuation under\n\n"
    '    if __name__ == "__main__":\n        ...\n\n'
    "or run the cluster outside this script (`dask scheduler` and `dask worker "
    "ADDRESS` in shells: their workers do not import your script) and pass "
    "fit(client=Client(ADDRESS)). A LocalCluster started at import time would "
    "fail the same way."
)


def _inside_main_guard(tree: ast.Module, line: int) -> bool:
    for node in tree.body:
        if not isinstance(node, ast.If):
            continue
        test = node.test
        is_guard = (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
            and len(test.comparators) == 1
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__"
        )
        end = node.end_lineno or node.lineno
        if is_guard and node.lineno <= line <= end:
            return True
    return False


def _forget_unimportable_main_file() -> None:
    """Let workers start when ``__main__`` claims a file that does not exist.

    A script piped into ``python -`` has ``__file__ == "<stdin>"``; spawned
    worker processes would try to run a file of that name and fail ("Nanny
    failed to start"). Without ``__file__`` they start clean, as they do for
    ``python -c``; functions defined in such a script reach the workers by
    value (cloudpickle), so nothing else changes.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if (
        main is not None
        and path is not None
        and spec is None
        and not os.path.isfile(path)
    ):
        del main.__file__


def check_main_guard() -> None:
    """Refuse to start worker processes from an unguarded script's top level.

    Worker processes start with ``spawn`` and re-import the ``__main__``
    module; a script that runs a valuation at import time would recurse (or
    hang). This looks for the call site in ``__main__``'s top-level code and,
    when it is not under ``if __name__ == "__main__":``, raises
    :class:`ScriptGuardError` with the fix.
    """
    if multiprocessing.parent_process() is not None:
        # we are a spawned process re-importing the script: never recurse
        main = sys.modules.get("__main__")
        raise ScriptGuardError(
            _GUARD_HELP.format(path=getattr(main, "__file__", "?"), line="?")
        )
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or not os.path.isfile(path):
        return  # interactive session, notebook, or `python -c`: nothing re-imports
    frame = sys._getframe()
    while frame is not None:
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            try:
                with open(path, encoding="utf-8") as fh:
                    tree = ast.parse(fh.read())
            except (OSError, SyntaxError):
                return
            if not _inside_main_guard(tree, frame.f_lineno):
                raise ScriptGuardError(
                    _GUARD_HELP.format(path=path, line=frame.f_lineno)
                )
            return
        frame = frame.f_back  # type: ignore[assignment]
