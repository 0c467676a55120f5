"""Shared fixtures: real LocalClusters with worker processes, bound to 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from distributed import Client
from helpers.processes import loopback_cluster

IN_CI = bool(os.environ.get("CI"))


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
