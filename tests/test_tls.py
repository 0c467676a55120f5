"""The remote path over TLS: ``tls://`` addresses and certificates made by
the test (a throw-away CA with ``openssl``), against a LocalCluster's values.

Here the scheduler has daskval, so the run's page is on its dashboard.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from distributed import Client
from distributed.security import Security
from helpers.processes import TlsFiles, make_certificates, remote_cluster
from helpers.reference import assert_same_values, small_valuation

import daskval as dv
from daskval.engine.cluster import connect_scheduler

pytestmark = pytest.mark.timeout(240)
IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="module")
def local_values(client: Client) -> dv.ValuationResult:
    return small_valuation().fit(client=client, progress=False, dashboard=False).result_


def security_of(tls: TlsFiles) -> Security:
    """What a client passes: the CA that signed the cluster, its own pair."""
    return Security(
        tls_ca_file=str(tls.ca),
        tls_client_cert=str(tls.cert),
        tls_client_key=str(tls.key),
        require_encryption=True,
    )


def test_tls_cluster_gives_the_local_values(
    tmp_path: Path, local_values: dv.ValuationResult
) -> None:
    if shutil.which("openssl") is None and not IN_CI:
        pytest.skip("the test makes its certificates with the openssl command")
    tls = make_certificates(tmp_path / "certs")
    security = security_of(tls)
    with remote_cluster(tmp_path / "cluster", tls=tls) as cluster:
        assert cluster.address.startswith("tls://")
        # a client whose certificate another CA signed is refused
        with pytest.raises((OSError, TimeoutError)):
            Client(
                cluster.address,
                security=security_of(make_certificates(tmp_path / "other")),
                timeout="3s",
                set_as_default=False,
            )
        try:
            client = connect_scheduler(
                cluster.address, security=security, worker_timeout=90
            )
        except Exception as exc:
            raise AssertionError(f"no cluster: {exc}\n{cluster.logs()}") from exc
        with client:
            client.wait_for_workers(2, timeout=90)
            workers = client.scheduler_info()["workers"]
            assert all(address.startswith("tls://") for address in workers)
            handle = small_valuation().submit(client=client, dashboard=True)
            result = handle.result(timeout=180)
            # this scheduler imports daskval: the page is on its dashboard
            link = handle.dashboard_link
            assert link is not None and f":{cluster.dashboard_port}/" in link
    assert_same_values(result, local_values)
