"""Broadcast: put a utility on every worker once, late joiners included.

``Client.scatter(broadcast=True)`` does not hold on current distributed: the
Active Memory Manager trims the replicas back to one within seconds, and
scattered data is lost for good with its worker. A registered worker plugin
is kept by the scheduler and set up on every worker that joins or restarts.
"""

from __future__ import annotations

import threading
import weakref

from distributed import Client

from daskval.engine.faults import check_fits_in_memory
from daskval.engine.tasks import UtilityPlugin
from daskval.utility import Utility

__all__ = ["ensure_broadcast", "plugin_name"]

_lock = threading.Lock()
# held while registering: a second run of the same utility started meanwhile
# (concurrent submits) must wait, since an idempotent registration of a name
# the scheduler already knows returns before the workers have set it up
_registering = threading.Lock()
# names already registered, per client (the scheduler keeps them while it lives)
_registered: weakref.WeakKeyDictionary[Client, set[str]] = weakref.WeakKeyDictionary()


def plugin_name(utility: Utility) -> str:
    """The plugin name of a utility: equal utilities share one broadcast.

    Keyed by ``identity()``, not ``fingerprint()``: a warm-starting utility
    computes the same cold u(S) as its cold twin (one memo) but must not
    share its worker copy, whose chains would then fit cold.
    """
    return f"daskval-utility-{utility.identity()[:24]}"


def ensure_broadcast(client: Client, utility: Utility) -> str:
    """Register ``utility`` on the cluster of ``client`` unless already there."""
    name = plugin_name(utility)
    with _lock:
        known = _registered.setdefault(client, set())
        if name in known:
            return name
    with _registering:
        with _lock:
            if name in known:
                return name
        # refuse a dataset the workers cannot hold before sending it anywhere
        check_fits_in_memory(client, utility)
        # idempotent: a second client registering the same name is a no-op
        client.register_plugin(UtilityPlugin(utility, name), name=name)
        with _lock:
            known.add(name)
    return name
