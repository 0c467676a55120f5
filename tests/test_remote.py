"""A valuation through separately started ``dask scheduler``/``dask worker``
processes on 127.0.0.1 (real ports), against a LocalCluster's values.

The scheduler runs in an environment where daskval cannot be imported: the
workers need daskval, the scheduler only for the ``/daskval`` page (the run
falls back to a server in the client's process).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client
from helpers.processes import remote_cluster
from helpers.reference import assert_same_values, small_valuation
from sklearn.datasets import make_classification

import daskval as dv
from daskval.engine.cluster import connect_scheduler

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def local_values(client: Client) -> dv.ValuationResult:
    """The same valuation on the suite's two-worker LocalCluster."""
    return small_valuation().fit(client=client, progress=False, dashboard=False).result_


def test_remote_scheduler_without_daskval_gives_the_local_values(
    tmp_path: Path, local_values: dv.ValuationResult, client: Client
) -> None:
    local_client = client  # the suite's LocalCluster (`client` is reused below)
    with remote_cluster(tmp_path, scheduler_without_daskval=True) as cluster:
        try:
            client = connect_scheduler(cluster.address, worker_timeout=90)
        except Exception as exc:
            raise AssertionError(f"no cluster: {exc}\n{cluster.logs()}") from exc
        with client:
            client.wait_for_workers(2, timeout=90)
            names = sorted(
                w["name"] for w in client.scheduler_info()["workers"].values()
            )
            assert names == ["remote-0", "remote-1"]
            # the scheduler really lacks daskval
            with pytest.raises(ModuleNotFoundError, match="daskval"):
                client.run_on_scheduler(importlib.import_module, "daskval")
            handle = small_valuation().submit(client=client, dashboard=True)
            result = handle.result(timeout=180)
            # no /daskval on that scheduler: the page is served by this process
            link = handle.dashboard_link
            assert link is not None and f":{cluster.dashboard_port}/" not in link
            workers = result.metadata["n_workers"]
            # KNN-Shapley sharded over the workers: its shard tasks are opaque too
            chunked = _knn(train_chunk_size=16).fit(client=client).result_
    assert workers == 2
    assert_same_values(result, local_values)
    broadcast = _knn().fit(client=local_client).result_
    np.testing.assert_allclose(chunked.values, broadcast.values, rtol=0, atol=1e-12)


def _knn(**options: Any) -> dv.KNNShapleyValuation:
    x, y = make_classification(60, 4, random_state=0)
    data = dv.Dataset(x[:40], y[:40], x[40:], y[40:])
    return dv.KNNShapleyValuation(data, 3, **options)
