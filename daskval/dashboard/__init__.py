"""Progress of running valuations: events, the ``/daskval`` page, the console bar.

A run publishes a progress event (:mod:`daskval.dashboard.events`) about once
a second with Dask's public ``Client.log_event``. Two servers render them as
the same Bokeh page (:mod:`daskval.dashboard.page`): a scheduler plugin adds
``/daskval`` to the scheduler's own dashboard
(:mod:`daskval.dashboard.scheduler`, the only module using distributed
internals, detected at run time), and, when the scheduler cannot, a Bokeh
server in the client process fed through ``Client.subscribe_topic``
(:mod:`daskval.dashboard.fallback`). :mod:`daskval.dashboard.console` draws
the progress bar; :mod:`daskval.dashboard.report` writes a result's static
HTML report.
"""

from __future__ import annotations

from daskval.dashboard.console import PROGRESS_ENV, ProgressBar
from daskval.dashboard.events import TOPIC
from daskval.dashboard.fallback import ADDRESS_ENV

__all__ = ["ADDRESS_ENV", "PROGRESS_ENV", "TOPIC", "ProgressBar"]
