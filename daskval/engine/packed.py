"""Tasks whose function and arguments the scheduler never unpickles.

Since dask 2024.12 a client sends the scheduler its graph as pickled task
objects, and the scheduler unpickles them (``Scheduler.update_graph``): a task
``leaf_task(plugin, plan, start, stop)`` makes the scheduler import
``daskval.engine.tasks`` and ``daskval.plan``, and a scheduler started in an
environment without daskval fails the run with "Error during deserialization
of the task graph". Worker plugins (``register_plugin``) and ``Client.run``
travel as bytes and are never unpickled there.

:func:`submit_packed` therefore submits ``call_packed(packed, *futures)``:
the daskval function and its arguments travel as one ``bytes`` object that
only the worker unpickles, and the futures among the arguments stay visible
to the scheduler as the task's dependencies. ``call_packed`` itself is
pickled by value, so the scheduler rebuilds it with cloudpickle alone (see the end of
this module). Workers still need
daskval; the scheduler needs it only for the ``/daskval`` dashboard page.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import cloudpickle
from distributed import Client, Future

__all__ = ["call_packed", "pack_call", "submit_packed"]


def call_packed(packed: bytes, *dependencies: Any) -> Any:
    """Run on a worker: unpack the call and run it with the dependencies'
    results put back in their argument slots.

    Nothing here may refer to daskval (or to this module's other globals):
    the scheduler unpickles this function by value.
    """
    import pickle

    func, args, slots, kwargs = pickle.loads(packed)
    filled = list(args)
    for slot, value in zip(slots, dependencies, strict=True):
        filled[slot] = value
    return func(*filled, **kwargs)


def pack_call(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bytes, list[Future]]:
    """``func(*args, **kwargs)`` as bytes, and the futures among ``args``.

    Futures may only be positional arguments at the top level (their results
    are filled in on the worker); a future anywhere else would be pickled as
    a reference the worker cannot resolve, so it is refused.
    """
    slots = [i for i, arg in enumerate(args) if isinstance(arg, Future)]
    futures: list[Future] = [args[i] for i in slots]
    if any(isinstance(value, Future) for value in kwargs.values()):
        raise TypeError("submit_packed takes futures as positional arguments only")
    template = tuple(None if i in slots else arg for i, arg in enumerate(args))
    return cloudpickle.dumps((func, template, slots, kwargs)), futures


def submit_packed(
    client: Client,
    func: Callable[..., Any],
    *args: Any,
    key: str | None = None,
    submit_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Future:
    """``client.submit(func, *args, **kwargs)`` that the scheduler cannot read.

    Parameters
    ----------
    client : distributed.Client
        The client to submit through.
    func : callable
        The function to run on a worker; it and ``args``/``kwargs`` are
        pickled on the client and unpickled only on the worker.
    *args
        Its positional arguments; futures among them are the task's
        dependencies and are replaced by their results.
    key : str, optional
        The task's key (default: the function's name and a random suffix).
    submit_kwargs : dict, optional
        Further ``Client.submit`` options (``workers``, ``retries``, ...).
    **kwargs
        Keyword arguments of ``func`` (no futures).

    Returns
    -------
    distributed.Future
        Never pure: every call is a new task unless ``key`` repeats.
    """
    packed, futures = pack_call(func, args, kwargs)
    if key is None:
        key = f"{getattr(func, '__name__', 'call')}-{uuid.uuid4().hex}"
    return client.submit(
        call_packed, packed, *futures, key=key, pure=False, **(submit_kwargs or {})
    )


# The scheduler must get call_packed's code, not a reference to this module.
# distributed pickles a graph with plain pickle first and falls back to
# cloudpickle when that fails; cloudpickle ships functions of ``__main__`` by
# value (as it does for functions defined in a user's script). Naming
# ``__main__`` as the module makes plain pickle fail (no such attribute there)
# and cloudpickle copy the code, which refers to nothing but the stdlib.
call_packed.__module__ = "__main__"
