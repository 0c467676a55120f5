"""Everything that touches Dask: broadcast, task planning, merging, the cluster.

Only this package (and later the memo and the dashboard) imports
``distributed``; methods describe their work as a :class:`daskval.plan.Plan`.
"""

from daskval.engine.cluster import resolve_client, shutdown_embedded
from daskval.engine.run import RunSettings, ValuationHandle, start_run

__all__ = [
    "RunSettings",
    "ValuationHandle",
    "resolve_client",
    "shutdown_embedded",
    "start_run",
]
