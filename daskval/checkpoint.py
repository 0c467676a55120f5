"""Checkpoints of a running valuation: write them atomically, read them safely.

A checkpoint holds what a run needs to continue where it stopped: the merged
state of the first K samples (every statistic's arrays, the evaluation
counters, compute seconds), the utilities of the anchor coalitions (so a
resumed run neither re-evaluates nor double-counts them), and the identity of
the run (method, seed, stopping criterion, sampler, plan, utility fingerprint,
daskval version), against which a resumed run is checked.

File format (``daskval.Checkpoint/1``): a ``.npz`` archive, never pickled,
with

- ``meta``: the JSON metadata as UTF-8 bytes (a uint8 array);
- ``anchors``: the anchor utilities (float64, in ``plan.anchors()`` order);
- ``s<i>_count``, ``s<i>_total``, ``s<i>_m2`` for a :class:`Moments`
  statistic ``i`` and ``s<i>_a<j>`` for the arrays of a :class:`Sums`,
  :class:`Rows` or :class:`CoalitionSums` statistic (names, kinds and array
  names are listed in the metadata; rows keep their dtypes; coalition sums
  are written expanded, as their ``in`` and ``out`` sums);
- ``sha256``: the hex SHA-256 (ASCII, uint8) over the metadata and every
  other array's name, dtype, shape and bytes.

The digest detects truncated, corrupted or edited files; it is a checksum,
not a signature (whoever can write the file can recompute it). Loading uses
``allow_pickle=False`` and JSON, so it never executes code: a file holding an
object array is refused.

Writes go to a temporary file in the target's directory, which is flushed,
fsynced and renamed over the target (then the directory is fsynced): a crash
while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from daskval.accumulate import (
    CoalitionSums,
    Moments,
    Partial,
    Rows,
    Statistic,
    Sums,
)
from daskval.result import write_npz_atomically
from daskval.utility import EvalStats

if TYPE_CHECKING:
    from daskval.plan import Plan, RunSpec

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DEFAULT_DIRECTORY",
    "check_identity",
    "check_structure",
    "default_checkpoint_path",
    "load_checkpoint",
    "run_identity",
    "save_checkpoint",
]

FORMAT = "daskval.Checkpoint/1"
# where checkpoint=True writes, relative to the working directory at submit()
DEFAULT_DIRECTORY = "daskval-checkpoints"
# numeric kinds only: bool, signed and unsigned integers, floats
_SAFE_KINDS = frozenset("biuf")
_FIXED_ARRAYS = ("meta", "anchors", "sha256")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, or belongs to another run."""


@dataclass
class Checkpoint:
    """The saved state of a run.

    Attributes
    ----------
    identity : dict
        What the run computes (see :func:`run_identity`); a resumed run must
        have the same.
    state : Partial
        The merged state of samples ``state.start .. state.stop - 1``,
        counting the anchors' evaluations.
    anchors : np.ndarray of float64
        The utilities of the plan's anchor coalitions, in order.
    anchor_evaluations : int
        The utility calls the anchors took (included in ``state``).
    elapsed_seconds : float
        Wall time the run had taken when this was written (time budgets
        continue from it).
    status : str
        The run's status then: ``"running"``, ``"completed"``,
        ``"interrupted"``, ``"cancelled"`` or ``"failed"``.
    run_id : str
        The id of the run that wrote it.
    failed_samples : dict of int to str
        Samples recorded as failed because they killed their workers, with
        the reason (result metadata of the resumed run lists them too).
    path : Path or None
        Where it was read from.
    """

    identity: dict[str, Any]
    state: Partial
    anchors: np.ndarray
    anchor_evaluations: int = 0
    elapsed_seconds: float = 0.0
    status: str = "running"
    run_id: str = ""
    failed_samples: dict[int, str] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    @property
    def n_samples(self) -> int:
        """The samples the checkpoint holds."""
        return self.state.stop

    @property
    def n_evaluations(self) -> int:
        """The utility calls the checkpoint holds, anchors included."""
        return self.state.n_evaluations


# -- identity -------------------------------------------------------------------


def run_identity(spec: RunSpec, plan: Plan) -> dict[str, Any]:
    """What a run computes, as JSON-able data (compared on resume).

    Parameters
    ----------
    spec : RunSpec
        The run (method name, seed, stopping criterion, sampler and
        semivalues, via its ``describe()``).
    plan : Plan
        The run's plan (``describe()`` covers n, seed, sampler, semivalues).

    Returns
    -------
    dict
        Normalised through JSON, so that a loaded identity compares equal.
    """
    from daskval._version import __version__
    from daskval.plan import EnumerationPlan

    utility = spec.utility
    method = spec.describe()
    if isinstance(plan, EnumerationPlan):
        # enumerations draw nothing at random: any seed continues them
        method.pop("seed", None)
    identity = {
        "method": method,
        "plan": plan.describe(),
        "utility_fingerprint": utility.fingerprint(),
        "utility": utility.describe(),
        "n_players": plan.n,
        "daskval_version": __version__,
    }
    normalised: dict[str, Any] = json.loads(_dumps(identity))
    return normalised


def check_identity(checkpoint: Checkpoint, identity: dict[str, Any]) -> None:
    """Refuse ``checkpoint`` unless it is of the run described by ``identity``.

    Raises
    ------
    CheckpointError
        Naming every difference (seed, stop, sampler, method, utility, ...).
    """
    differences = _differences(checkpoint.identity, identity)
    if differences:
        raise CheckpointError(
            f"the checkpoint {checkpoint.path} is of another run and cannot be "
            "resumed by this one; what differs (checkpoint vs this run): "
            + "; ".join(differences)
        )


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Readable differences, most specific first; the plan only if nothing else."""
    found: list[str] = []
    saved_method, method = saved.get("method", {}), current.get("method", {})
    for key in sorted(set(saved_method) | set(method)):
        if saved_method.get(key) != method.get(key):
            found.append(
                f"{key}: {_short(saved_method.get(key))} vs {_short(method.get(key))}"
                + (
                    f" (pass seed={saved_method.get(key)} to continue it)"
                    if key == "seed"
                    else ""
                )
            )
    if saved.get("utility_fingerprint") != current.get("utility_fingerprint"):
        found.append(
            "utility (fingerprint "
            f"{str(saved.get('utility_fingerprint'))[:12]} "
            f"{_short(saved.get('utility'))} vs "
            f"{str(current.get('utility_fingerprint'))[:12]} "
            f"{_short(current.get('utility'))})"
        )
    for key in ("n_players", "daskval_version"):
        if saved.get(key) != current.get(key):
            found.append(
                f"{key}: {_short(saved.get(key))} vs {_short(current.get(key))}"
            )
    if not found and saved.get("plan") != current.get("plan"):
        found.append(
            f"plan: {_short(saved.get('plan'))} vs {_short(current.get('plan'))}"
        )
    return found


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- paths ----------------------------------------------------------------------


def default_checkpoint_path(spec: RunSpec) -> Path:
    """``./daskval-checkpoints/<method>-<seed>-<fingerprint12>.npz``, absolute.

    The name depends on the method, the seed and the utility, so runs of
    different methods or data do not overwrite each other's checkpoints.
    """
    name = f"{spec.method_name}-{spec.seed}-{spec.utility.fingerprint()[:12]}.npz"
    return (Path.cwd() / DEFAULT_DIRECTORY / name).resolve()


# -- writing --------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (no pickle).

    Parameters
    ----------
    path : str or PathLike
        The target file; its directory is created if needed.
    checkpoint : Checkpoint
        What to write.

    Returns
    -------
    Path
        The file written.
    """
    target = Path(path)
    arrays = _to_arrays(checkpoint)
    write_npz_atomically(target, arrays)
    return target


# the kind each statistic is written as (Moments have their own arrays)
_KINDS: dict[type, str] = {Sums: "sums", Rows: "rows", CoalitionSums: "coalition-sums"}


def _to_arrays(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    state = checkpoint.state
    arrays: dict[str, np.ndarray] = {
        "anchors": np.asarray(checkpoint.anchors, dtype=np.float64).reshape(-1)
    }
    described: list[dict[str, Any]] = []
    for i, (name, statistic) in enumerate(state.moments.items()):
        if isinstance(statistic, Moments):
            described.append({"name": name, "kind": "moments"})
            arrays[f"s{i}_count"] = np.asarray(statistic.count)
            arrays[f"s{i}_total"] = np.asarray(statistic.total)
            arrays[f"s{i}_m2"] = np.asarray(statistic.m2)
        else:
            kind = _KINDS[type(statistic)]
            # pending coalitions are written expanded: the same numbers
            named = (
                statistic.sums().arrays
                if isinstance(statistic, CoalitionSums)
                else statistic.arrays
            )
            keys = list(named)
            described.append({"name": name, "kind": kind, "arrays": keys})
            for j, key in enumerate(keys):
                arrays[f"s{i}_a{j}"] = np.asarray(named[key])
    stats = state.eval_stats
    meta = {
        "format": FORMAT,
        "identity": checkpoint.identity,
        "run_id": checkpoint.run_id,
        "status": checkpoint.status,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "start": state.start,
        "stop": state.stop,
        "exhausted": state.exhausted,
        "compute_seconds": state.compute_seconds,
        "eval_stats": {
            "n_evaluations": stats.n_evaluations,
            "n_failed": stats.n_failed,
            "first_failure": stats.first_failure,
            "warnings": dict(stats.warnings),
            "failures": dict(stats.failures),
            "memo_hits": stats.memo_hits,
            "memo_misses": stats.memo_misses,
        },
        "anchor_evaluations": checkpoint.anchor_evaluations,
        "elapsed_seconds": checkpoint.elapsed_seconds,
        "failed_samples": {str(k): v for k, v in checkpoint.failed_samples.items()},
        "statistics": described,
    }
    for key, array in arrays.items():
        if array.dtype.kind not in _SAFE_KINDS:
            raise TypeError(
                f"checkpoint array {key} has dtype {array.dtype}; only numbers "
                "are written"
            )
    arrays["meta"] = np.frombuffer(_dumps(meta).encode("utf-8"), dtype=np.uint8)
    arrays["sha256"] = np.frombuffer(_digest(arrays).encode("ascii"), dtype=np.uint8)
    return arrays


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the metadata and every array but the digest itself."""
    h = hashlib.sha256(FORMAT.encode() + b"\0")
    for key in sorted(k for k in arrays if k != "sha256"):
        array = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{array.dtype.str}|{array.shape}\0".encode())
        h.update(array.tobytes())
    return h.hexdigest()


# -- reading --------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Never unpickles anything and never executes code.

    Raises
    ------
    CheckpointError
        When the file is missing, truncated, corrupt, edited (the SHA-256
        does not match), holds non-numeric arrays, or is no daskval
        checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    arrays = _read_arrays(path)
    missing = [k for k in _FIXED_ARRAYS if k not in arrays]
    if missing:
        raise CheckpointError(
            f"{path} is not a daskval checkpoint (it lacks {', '.join(missing)})"
        )
    expected = bytes(arrays["sha256"].astype(np.uint8)).decode("ascii", "replace")
    if _digest(arrays) != expected:
        raise CheckpointError(
            f"the checkpoint {path} is corrupt: its SHA-256 does not match its "
            "contents (was it truncated or edited?); refusing to resume from it"
        )
    try:
        meta = json.loads(bytes(arrays["meta"].astype(np.uint8)).decode("utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{path} has unreadable metadata: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (format {found!r})")
    try:
        return _from_arrays(meta, arrays, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a consistent daskval checkpoint: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive, numeric only (allow_pickle=False)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path} is not an npz archive")
            arrays = {key: archive[key] for key in archive.files}
    except CheckpointError:
        raise
    except ValueError as exc:
        # numpy's refusal of object arrays (pickled data) lands here
        raise CheckpointError(
            f"refusing {path}: {exc} (a checkpoint holds numbers only; it is "
            "never unpickled)"
        ) from exc
    except Exception as exc:  # zipfile and numpy raise many kinds on bad bytes
        raise CheckpointError(
            f"cannot read the checkpoint {path} (truncated or corrupt?): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for key, array in arrays.items():
        if array.dtype.kind not in _SAFE_KINDS:
            raise CheckpointError(
                f"refusing {path}: array {key} has dtype {array.dtype}; a "
                "checkpoint holds numbers only"
            )
    return arrays


def _from_arrays(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path
) -> Checkpoint:
    moments: dict[str, Statistic] = {}
    names = set(_FIXED_ARRAYS)
    for i, entry in enumerate(meta["statistics"]):
        if entry["kind"] == "moments":
            keys = [f"s{i}_count", f"s{i}_total", f"s{i}_m2"]
            count, total, m2 = (arrays[k] for k in keys)
            if not count.shape == total.shape == m2.shape:
                raise ValueError(f"statistic {entry['name']!r} has mismatched shapes")
            moments[entry["name"]] = Moments(
                count.astype(np.int64), total.astype(np.float64), m2.astype(np.float64)
            )
        elif entry["kind"] in ("sums", "rows", "coalition-sums"):
            keys = [f"s{i}_a{j}" for j in range(len(entry["arrays"]))]
            named = {
                name: arrays[k] for name, k in zip(entry["arrays"], keys, strict=True)
            }
            if entry["kind"] == "sums":
                moments[entry["name"]] = Sums(named)
            elif entry["kind"] == "coalition-sums":
                moments[entry["name"]] = _coalition_sums(entry["name"], named)
            else:
                if len({len(a) for a in named.values()}) > 1:
                    raise ValueError(
                        f"statistic {entry['name']!r} has arrays of different lengths"
                    )
                moments[entry["name"]] = Rows(named)
        else:
            raise ValueError(f"unknown statistic kind {entry['kind']!r}")
        names.update(keys)
    extra = sorted(set(arrays) - names)
    if extra:
        raise ValueError(f"unexpected arrays {extra}")
    counters = meta["eval_stats"]
    stats = EvalStats(
        n_evaluations=int(counters["n_evaluations"]),
        n_failed=int(counters["n_failed"]),
        first_failure=counters["first_failure"],
        warnings={str(k): int(v) for k, v in counters["warnings"].items()},
        failures={str(k): int(v) for k, v in counters["failures"].items()},
        memo_hits=int(counters["memo_hits"]),
        memo_misses=int(counters["memo_misses"]),
    )
    start, stop = int(meta["start"]), int(meta["stop"])
    if not 0 <= start <= stop:
        raise ValueError(f"bad sample range [{start}, {stop})")
    state = Partial(
        start,
        stop,
        moments,
        stats,
        None,
        float(meta["compute_seconds"]),
        bool(meta["exhausted"]),
    )
    return Checkpoint(
        identity=meta["identity"],
        state=state,
        anchors=arrays["anchors"].astype(np.float64),
        anchor_evaluations=int(meta["anchor_evaluations"]),
        elapsed_seconds=float(meta["elapsed_seconds"]),
        status=str(meta["status"]),
        run_id=str(meta["run_id"]),
        failed_samples={
            int(k): str(v) for k, v in meta.get("failed_samples", {}).items()
        },
        path=path,
    )


def check_structure(checkpoint: Checkpoint, plan: Plan) -> None:
    """Refuse a checkpoint whose statistics or anchors do not fit ``plan``.

    The identity already matches when this is called; this guards against a
    checkpoint written by code whose statistics had another layout.
    """
    empty = plan.empty_statistics()
    saved = checkpoint.state.moments
    if list(saved) != list(empty):
        raise CheckpointError(
            f"the checkpoint {checkpoint.path} holds statistics {list(saved)}, "
            f"this run accumulates {list(empty)}"
        )
    for name, statistic in empty.items():
        if _shapes(saved[name]) != _shapes(statistic):
            raise CheckpointError(
                f"the checkpoint {checkpoint.path} has statistic {name!r} of "
                f"shapes {_shapes(saved[name])}, this run {_shapes(statistic)}"
            )
    if len(checkpoint.anchors) != len(plan.anchors()):
        raise CheckpointError(
            f"the checkpoint {checkpoint.path} has {len(checkpoint.anchors)} "
            f"anchor utilities, this run needs {len(plan.anchors())}"
        )


def _coalition_sums(name: str, named: dict[str, np.ndarray]) -> CoalitionSums:
    inside, outside = named.get("in"), named.get("out")
    if (
        set(named) != {"in", "out"}
        or inside is None
        or outside is None
        or inside.ndim != 2
        or inside.shape != outside.shape
    ):
        raise ValueError(f"statistic {name!r} is not a pair of equal n x m sums")
    return CoalitionSums.from_sums(
        Sums({"in": inside.astype(np.float64), "out": outside.astype(np.float64)})
    )


def _shapes(statistic: Statistic) -> dict[str, tuple[Any, ...]]:
    if isinstance(statistic, Moments):
        return {"moments": statistic.total.shape}
    if isinstance(statistic, CoalitionSums):
        return {side: (statistic.n, statistic.width) for side in ("in", "out")}
    if isinstance(statistic, Rows):
        # any number of rows; the shape of one row and its dtype must match
        return {k: (*a.shape[1:], a.dtype.str) for k, a in statistic.arrays.items()}
    return {k: a.shape for k, a in statistic.arrays.items()}
