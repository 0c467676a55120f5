"""ValuationResult: the values, their standard errors, and how they were made."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daskval._files import replacing

__all__ = ["ValuationResult"]

_FORMAT = "daskval.ValuationResult/1"


class ValuationResult:
    """The outcome of a valuation.

    Arrays are aligned: entry ``i`` belongs to player ``indices[i]`` (player
    order until :meth:`sort` reorders them).

    Attributes
    ----------
    values, stderr : np.ndarray of float
        Estimated values and their standard errors (0 for exact methods,
        inf for a player with fewer than two contributions).
    counts : np.ndarray of int
        Contributions each player received.
    indices : np.ndarray of int
        Player indices.
    names : np.ndarray of str
        Player names.
    n_samples, n_evaluations, n_failed : int
        Samples merged, utility calls made, and calls that failed.
    status : str
        ``"completed"`` (criterion met or sampler exhausted), ``"cancelled"``
        or ``"interrupted"``.
    metadata : dict
        Method, sampler, seed, stopping criterion, utility fingerprint,
        package versions, number of workers, warnings summary, ...
    """

    def __init__(
        self,
        values: np.ndarray,
        stderr: np.ndarray,
        counts: np.ndarray,
        *,
        names: np.ndarray | None = None,
        indices: np.ndarray | None = None,
        n_samples: int = 0,
        n_evaluations: int = 0,
        n_failed: int = 0,
        status: str = "completed",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.values = np.asarray(values, dtype=float)
        n = len(self.values)
        self.stderr = np.asarray(stderr, dtype=float)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.indices = (
            np.arange(n) if indices is None else np.asarray(indices, np.int64)
        )
        self.names = (
            np.array([str(i) for i in self.indices], dtype=object)
            if names is None
            else np.asarray(names, dtype=object)
        )
        for attr in ("stderr", "counts", "indices", "names"):
            if len(getattr(self, attr)) != n:
                raise ValueError(
                    f"{attr} has {len(getattr(self, attr))} entries, values has {n}"
                )
        self.n_samples = int(n_samples)
        self.n_evaluations = int(n_evaluations)
        self.n_failed = int(n_failed)
        self.status = status
        self.metadata = dict(metadata or {})

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        method = self.metadata.get("method", "?")
        return (
            f"ValuationResult({method}, {len(self)} players, status={self.status!r}, "
            f"n_samples={self.n_samples}, n_evaluations={self.n_evaluations})"
        )

    # -- lookup and ordering -------------------------------------------------
    def position(self, name: str) -> int:
        """The position of the player called ``name`` in this result's arrays."""
        hits = np.flatnonzero(self.names == str(name))
        if len(hits) == 0:
            raise KeyError(f"no player named {name!r}")
        return int(hits[0])

    def __getitem__(self, name: str) -> float:
        """The value of the player called ``name``."""
        return float(self.values[self.position(name)])

    def get(self, name: str) -> dict[str, Any]:
        """Value, stderr, count and index of the player called ``name``."""
        i = self.position(name)
        return {
            "name": str(self.names[i]),
            "index": int(self.indices[i]),
            "value": float(self.values[i]),
            "stderr": float(self.stderr[i]),
            "count": int(self.counts[i]),
        }

    def sort(self, by: str = "value", *, descending: bool = False) -> ValuationResult:
        """A copy ordered by ``"value"``, ``"stderr"``, ``"index"`` or ``"name"``."""
        keys = {
            "value": self.values,
            "stderr": self.stderr,
            "index": self.indices,
            "name": self.names.astype(str),
        }
        if by not in keys:
            raise ValueError(f"by must be one of {sorted(keys)}, got {by!r}")
        order = np.argsort(keys[by], kind="stable")
        if descending:
            order = order[::-1]
        return self._take(order)

    def _take(self, order: np.ndarray) -> ValuationResult:
        return ValuationResult(
            self.values[order],
            self.stderr[order],
            self.counts[order],
            names=self.names[order],
            indices=self.indices[order],
            n_samples=self.n_samples,
            n_evaluations=self.n_evaluations,
            n_failed=self.n_failed,
            status=self.status,
            metadata=self.metadata,
        )

    def to_pandas(self) -> pd.DataFrame:
        """A DataFrame indexed by player name: value, stderr, count, index."""
        return pd.DataFrame(
            {
                "value": self.values,
                "stderr": self.stderr,
                "count": self.counts,
                "index": self.indices,
            },
            index=pd.Index(self.names.astype(str), name="name"),
        )

    # -- persistence ------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to ``path`` (npz with a JSON header), atomically; never pickled.

        The file is written to a temporary name in the same directory, flushed
        to disk and renamed, so a crash leaves either the old file or the new.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz")
        header = {
            "format": _FORMAT,
            "n_samples": self.n_samples,
            "n_evaluations": self.n_evaluations,
            "n_failed": self.n_failed,
            "status": self.status,
            "metadata": self.metadata,
        }
        arrays = {
            "values": self.values,
            "stderr": self.stderr,
            "counts": self.counts,
            "indices": self.indices,
            "names": self.names.astype(str),
            "header": np.array(json.dumps(header, default=_json_default)),
        }
        write_npz_atomically(path, arrays)
        return path

    def report(
        self,
        path: str | os.PathLike[str],
        *,
        top: int = 10,
        title: str | None = None,
    ) -> Path:
        """Write a standalone HTML report of these values (Bokeh, no network needed).

        It shows the run's summary, the distribution of the values, the
        ``top`` highest- and lowest-valued points with their stderr, and the
        convergence trace (stderr and value change against evaluations)
        recorded by the run.

        Parameters
        ----------
        path : str or PathLike
            The HTML file to write (replaced atomically).
        top : int
            How many of the highest and of the lowest points to list.
        title : str, optional
            The page's title.

        Returns
        -------
        Path
            The file written.
        """
        from daskval.dashboard.report import write_report

        return write_report(self, path, top=top, title=title)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ValuationResult:
        """Read a result written by :meth:`save` (no pickle is ever loaded).

        ``path`` may omit the ``.npz`` suffix that :meth:`save` adds.
        """
        path = Path(path)
        if not path.exists() and path.with_suffix(path.suffix + ".npz").exists():
            path = path.with_suffix(path.suffix + ".npz")
        with np.load(path, allow_pickle=False) as f:
            header = json.loads(str(f["header"]))
            if header.get("format") != _FORMAT:
                raise ValueError(
                    f"{path} is not a daskval result file "
                    f"(format {header.get('format')!r})"
                )
            return cls(
                f["values"],
                f["stderr"],
                f["counts"],
                names=f["names"].astype(object),
                indices=f["indices"],
                n_samples=header["n_samples"],
                n_evaluations=header["n_evaluations"],
                n_failed=header["n_failed"],
                status=header["status"],
                metadata=header["metadata"],
            )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path``: a temporary file in the same directory,
    fsync, rename over ``path``, fsync the directory. A crash at any point
    leaves either the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories
    finally:
        os.close(fd)
