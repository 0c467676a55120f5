"""Writing output files atomically, with the permissions the user's umask gives.

Every file daskval writes (results, CSV and parquet tables, HTML pages and
reports, checkpoints) goes through :func:`replacing`: a temporary file in the
target's directory, renamed over the target once complete, so that a crash
leaves the old file or the new one, never a torn one. ``tempfile.mkstemp``
creates its file 0600; :func:`replacing` gives it ``0666 & ~umask`` instead,
the mode ``open()`` would have given, so outputs can be shared as the user's
other files are.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["replacing", "umask_mode"]

_umask_lock = threading.Lock()


def umask_mode() -> int:
    """``0o666 & ~umask``: the mode a new file gets from ``open()``."""
    with _umask_lock:  # reading the umask means setting it
        mask = os.umask(0o077)
        os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed over ``path`` on success.

    Parameters
    ----------
    path : Path
        The file to write; its directory must exist.

    Yields
    ------
    Path
        Where to write the content. On an exception it is removed and
        ``path`` is left as it was.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode())
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
