"""Shared fixtures: real LocalClusters with worker processes, bound to 127.0.0.1."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from distributed import Client, LocalCluster

IN_CI = bool(os.environ.get("CI"))
# as on the embedded cluster: one BLAS thread per single-threaded worker
BLAS_ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def _cluster(n_workers: int) -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
            env=dict(BLAS_ONE_THREAD),
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    """A two-worker cluster (one thread each), shared by the whole session."""
    yield from _cluster(2)


@pytest.fixture(scope="session")
def client1() -> Iterator[Client]:
    """A one-worker cluster, for comparing against ``client``."""
    yield from _cluster(1)
