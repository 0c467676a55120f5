"""Batch systems through dask-jobqueue (the ``hpc`` extra).

dask-jobqueue does the work: its ``SLURMCluster`` and ``PBSCluster`` submit
jobs whose scripts start ``dask worker`` processes. What this module adds is
walltime handling. A job killed at its walltime takes its workers with it
mid-task; a worker given a ``--lifetime`` shorter than the walltime instead
retires gracefully (its results move to other workers, its running tasks
are rescheduled), and with ``cluster.adapt(...)`` a new job replaces it.
``--lifetime-stagger`` spreads the retirements so that not every job ends at
once. :func:`lifetime_args` turns a walltime into those flags, and
:func:`jobqueue_cluster` starts a cluster with them.

A valuation loses nothing when workers retire: its ranges of samples are
recomputed where needed and count once (see ``engine.run``).
"""

from __future__ import annotations

import re
from typing import Any

import dask
from dask.utils import format_time, parse_timedelta

__all__ = ["SYSTEMS", "jobqueue_cluster", "lifetime_args", "parse_walltime"]

# system name -> dask-jobqueue cluster class (and its config section)
SYSTEMS = {
    "slurm": ("dask_jobqueue", "SLURMCluster"),
    "pbs": ("dask_jobqueue", "PBSCluster"),
    # jobqueue's own test path: the same job scripts run as local processes
    "local": ("dask_jobqueue.local", "LocalCluster"),
}


def _import_keeping_sigint(module_name: str) -> Any:
    """Import a dask-jobqueue module without losing the SIGINT handler.

    ``dask_jobqueue.runner`` (imported by the package) sets SIGINT's handler
    to ``sys.exit`` for its batch-job runners; in a user's process that
    turns Ctrl-C during ``fit()`` into a SystemExit instead of the
    KeyboardInterrupt that stops the run and keeps its samples.
    """
    import importlib
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return importlib.import_module(module_name)
    before = signal.getsignal(signal.SIGINT)
    try:
        return importlib.import_module(module_name)
    finally:
        if before is not None and signal.getsignal(signal.SIGINT) is not before:
            signal.signal(signal.SIGINT, before)


_CLOCK = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_walltime(walltime: Any) -> float:
    """Seconds of a batch walltime.

    Accepts the batch systems' clock formats (``"HH:MM:SS"``, ``"MM:SS"``,
    ``"D-HH:MM:SS"``, ``"D-HH"``, and SLURM's bare minutes ``"90"``) and
    Dask's durations (``"2h"``, ``"90m"``), or a number of seconds.

    Raises
    ------
    ValueError
        When ``walltime`` is none of these, or not positive.
    """
    seconds: float
    if isinstance(walltime, (int, float)) and not isinstance(walltime, bool):
        seconds = float(walltime)
    elif isinstance(walltime, str) and (match := _CLOCK.match(walltime.strip())):
        days, *parts = match.groups()
        numbers = [int(p) for p in parts if p is not None]
        if days is not None:  # D-HH[:MM[:SS]]
            numbers += [0] * (3 - len(numbers))
            hours, minutes, secs = numbers
            seconds = int(days) * 86400 + hours * 3600 + minutes * 60 + secs
        elif len(numbers) == 1:  # SLURM: bare minutes
            seconds = numbers[0] * 60
        elif len(numbers) == 2:  # MM:SS
            seconds = numbers[0] * 60 + numbers[1]
        else:  # HH:MM:SS
            seconds = numbers[0] * 3600 + numbers[1] * 60 + numbers[2]
    else:
        try:
            seconds = float(parse_timedelta(walltime))
        except Exception as exc:
            raise ValueError(
                f"walltime must be a batch walltime such as '02:00:00' or "
                f"'1-00:00:00', or a duration such as '2h', got {walltime!r}"
            ) from exc
    if seconds <= 0:
        raise ValueError(f"walltime must be positive, got {walltime!r}")
    return seconds


def lifetime_args(
    walltime: Any, *, margin: Any = "5m", stagger: Any = None
) -> list[str]:
    """``dask worker`` flags that retire workers before their job's walltime.

    A worker lives ``lifetime`` plus or minus a random ``stagger``; the
    lifetime is chosen so that even the longest-lived worker retires
    ``margin`` before the walltime, leaving it time to hand over its results.

    Parameters
    ----------
    walltime : str or float
        The job's walltime (see :func:`parse_walltime`).
    margin : str or float
        Time kept free at the end of the job (default 5 minutes).
    stagger : str or float, optional
        The spread of the retirements (default: 5% of the walltime, at most
        5 minutes).

    Returns
    -------
    list of str
        ``["--lifetime", "<s>s", "--lifetime-stagger", "<s>s"]``.

    Raises
    ------
    ValueError
        When the walltime is too short for the margin and the stagger.
    """
    total = parse_walltime(walltime)
    keep = _duration(margin, "margin")
    spread = (
        min(0.05 * total, 300.0) if stagger is None else _duration(stagger, "stagger")
    )
    lifetime = total - keep - spread
    if lifetime - spread <= 0:
        raise ValueError(
            f"walltime={walltime!r} ({format_time(total)}) is too short for "
            f"margin={margin!r} and a stagger of {format_time(spread)}: workers "
            "would retire before they start; lower margin= or stagger="
        )
    return ["--lifetime", f"{int(lifetime)}s", "--lifetime-stagger", f"{int(spread)}s"]


def _duration(value: Any, name: str) -> float:
    try:
        seconds = float(parse_timedelta(value))
    except Exception as exc:
        raise ValueError(
            f"{name} must be a duration such as '5m', got {value!r}"
        ) from exc
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return seconds


def _without_lifetime(args: list[str]) -> list[str]:
    """``args`` without ``--lifetime``/``--lifetime-stagger`` flags (either
    form: ``--flag value`` or ``--flag=value``)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in ("--lifetime", "--lifetime-stagger"):
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


def jobqueue_cluster(
    system: str = "slurm",
    *,
    walltime: Any = None,
    margin: Any = "5m",
    stagger: Any = None,
    **kwargs: Any,
) -> Any:
    """A dask-jobqueue cluster whose workers retire before the walltime.

    Parameters
    ----------
    system : {"slurm", "pbs", "local"}
        The batch system: ``SLURMCluster``, ``PBSCluster``, or jobqueue's
        ``LocalCluster``, which runs the same job scripts as local processes
        (for trying a configuration without a batch system).
    walltime : str, optional
        The jobs' walltime; defaults to the ``jobqueue.<system>.walltime``
        setting (``deploy/jobqueue.yaml``). Without one (and always for
        ``"local"``), no lifetime is set.
    margin, stagger
        As for :func:`lifetime_args`; they replace any ``--lifetime`` flags
        of the configuration.
    **kwargs
        Passed to the cluster class (``cores``, ``memory``, ``processes``,
        ``queue``, ``account``, ``job_extra_directives``, ...); the rest comes
        from the Dask configuration.

    Returns
    -------
    dask_jobqueue.JobQueueCluster
        Not yet scaled: call ``cluster.scale(jobs=k)`` or
        ``cluster.adapt(minimum_jobs=..., maximum_jobs=...)`` (``adapt``
        replaces jobs whose workers retired), then ``Client(cluster)``.
    """
    if system not in SYSTEMS:
        raise ValueError(f"system must be one of {sorted(SYSTEMS)}, got {system!r}")
    module_name, class_name = SYSTEMS[system]
    try:
        cluster_class = getattr(_import_keeping_sigint(module_name), class_name)
    except ImportError as exc:
        raise ImportError(
            'jobqueue_cluster needs dask-jobqueue: pip install "daskval[hpc]"'
        ) from exc
    section = f"jobqueue.{system}"
    if walltime is None and system != "local":
        walltime = dask.config.get(f"{section}.walltime", default=None)
    if walltime is not None:
        lifetime = lifetime_args(walltime, margin=margin, stagger=stagger)
        extra = kwargs.get("worker_extra_args")
        if extra is None:
            extra = dask.config.get(f"{section}.worker-extra-args", default=None) or []
        kwargs["worker_extra_args"] = [*_without_lifetime(list(extra)), *lifetime]
        if system != "local":
            kwargs["walltime"] = walltime
    return cluster_class(**kwargs)
