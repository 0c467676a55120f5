"""Broadcast: put a utility on every worker once, late joiners included.

``Client.scatter(broadcast=True)`` does not hold on current distributed: the
Active Memory Manager trims the replicas back to one within seconds, and
scattered data is lost for good with its worker. A registered worker plugin
is kept by the scheduler and set up on every worker that joins or restarts.

A run holds its utility's broadcast from :func:`ensure_broadcast` to
:func:`release_broadcast`. A broadcast no run holds stays registered while
it is among the :data:`IDLE_BROADCASTS` most recently released ones (a
notebook refitting one utility does not ship it again), and is unregistered
beyond that, so that a session trying many utilities keeps the workers'
plugins, and their memory, bounded. Memo entries of an unregistered utility
stay in the memo until its byte bound evicts them.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import Counter, OrderedDict

from distributed import Client

from daskval.engine.faults import check_fits_in_memory
from daskval.engine.tasks import UtilityPlugin
from daskval.utility import Utility

__all__ = ["IDLE_BROADCASTS", "ensure_broadcast", "plugin_name", "release_broadcast"]

# broadcasts no run holds that stay registered, per client (most recent kept)
IDLE_BROADCASTS = 4

_lock = threading.Lock()
# held while registering: a second run of the same utility started meanwhile
# (concurrent submits) must wait, since an idempotent registration of a name
# the scheduler already knows returns before the workers have set it up
_registering = threading.Lock()
# names already registered, per client (the scheduler keeps them while it lives)
_registered: weakref.WeakKeyDictionary[Client, set[str]] = weakref.WeakKeyDictionary()
# runs holding each name, and the names no run holds (oldest first), per client
_holders: weakref.WeakKeyDictionary[Client, Counter[str]] = weakref.WeakKeyDictionary()
_idle: weakref.WeakKeyDictionary[Client, OrderedDict[str, None]] = (
    weakref.WeakKeyDictionary()
)


def plugin_name(utility: Utility) -> str:
    """The plugin name of a utility: equal utilities share one broadcast.

    Keyed by ``identity()``, not ``fingerprint()``: a warm-starting utility
    computes the same cold u(S) as its cold twin (one memo) but must not
    share its worker copy, whose chains would then fit cold.
    """
    return f"daskval-utility-{utility.identity()[:24]}"


def ensure_broadcast(client: Client, utility: Utility) -> str:
    """Register ``utility`` on the cluster of ``client`` unless already there,
    and hold it for a run until :func:`release_broadcast`."""
    name = plugin_name(utility)
    with _lock:
        _holders.setdefault(client, Counter())[name] += 1
        _idle.setdefault(client, OrderedDict()).pop(name, None)
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


def release_broadcast(client: Client, name: str) -> None:
    """A run no longer needs broadcast ``name``: unregister the idle
    broadcasts beyond the :data:`IDLE_BROADCASTS` most recently released."""
    with _lock:
        holders = _holders.setdefault(client, Counter())
        holders[name] -= 1
        if holders[name] > 0:
            return
        del holders[name]
        idle = _idle.setdefault(client, OrderedDict())
        idle[name] = None
        stale = []
        while len(idle) > IDLE_BROADCASTS:
            stale.append(idle.popitem(last=False)[0])
    for old in stale:
        _unregister(client, old)


def _unregister(client: Client, name: str) -> None:
    """Remove broadcast ``name`` from the scheduler and every worker (a run
    starting it again meanwhile registers it anew)."""
    with _registering:
        with _lock:
            if _holders.get(client, Counter())[name] > 0:
                return  # held again since it went idle
            _registered.get(client, set()).discard(name)
        with contextlib.suppress(Exception):  # a closed client: nothing to free
            client.unregister_worker_plugin(name)
