"""Shared fixtures: real LocalClusters with worker processes, bound to 127.0.0.1."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from distributed import Client
from helpers.processes import loopback_cluster

IN_CI = bool(os.environ.get("CI"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Give SIGINT back to Python: test modules import dask_jobqueue
    (``importorskip``), whose runner module sets the handler to ``sys.exit``
    at import, and the Ctrl-C tests need KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _cluster(n_workers: int) -> Iterator[Client]:
    with loopback_cluster(n_workers) as (_, client):
        yield client


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    """A two-worker cluster (one thread each), shared by the whole session."""
    yield from _cluster(2)


@pytest.fixture(scope="session")
def client1() -> Iterator[Client]:
    """A one-worker cluster, for comparing against ``client``."""
    yield from _cluster(1)
