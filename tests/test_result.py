"""ValuationResult: lookup, sorting, pandas, and npz + json persistence."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import daskval as dv
import daskval.result


def _result() -> dv.ValuationResult:
    return dv.ValuationResult(
        values=np.array([0.3, -0.1, 0.7, 0.0]),
        stderr=np.array([0.01, np.inf, 0.02, 0.0]),
        counts=np.array([10, 1, 12, 9]),
        names=np.array(["alpha", "beta", "gamma", "dé"], dtype=object),
        n_samples=12,
        n_evaluations=40,
        n_failed=2,
        status="cancelled",
        metadata={
            "method": "shapley",
            "seed": np.int64(7),
            "budget": np.float64(1.5),
            "plan": {"n": 4, "sampler": {"class": "PermutationSampler"}},
            "warnings": {"ConvergenceWarning: lbfgs failed": 38},
            "shape": (2, 3),
            "array": np.arange(3),
            "first_failure": None,
        },
    )


def _json_normalised(metadata: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(metadata, default=daskval.result._json_default)))


def _assert_same(a: dv.ValuationResult, b: dv.ValuationResult) -> None:
    for attr in ("values", "stderr", "counts", "indices"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert list(a.names) == list(b.names)
    assert (a.n_samples, a.n_evaluations, a.n_failed, a.status) == (
        b.n_samples,
        b.n_evaluations,
        b.n_failed,
        b.status,
    )


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    result = _result()
    path = result.save(tmp_path / "values.npz")
    loaded = dv.ValuationResult.load(path)
    _assert_same(result, loaded)
    assert loaded.metadata == _json_normalised(result.metadata)
    assert loaded.metadata["seed"] == 7 and loaded.metadata["shape"] == [2, 3]
    assert loaded.names.dtype == object and isinstance(loaded.names[3], str)


def test_the_file_is_plain_npz_and_json_never_pickle(tmp_path: Path) -> None:
    path = _result().save(tmp_path / "values.npz")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}  # would raise on an object array
    assert set(arrays) == {"values", "stderr", "counts", "indices", "names", "header"}
    assert all(a.dtype != object for a in arrays.values())
    header = json.loads(str(arrays["header"]))
    assert header["format"] == "daskval.ValuationResult/1"
    assert header["n_failed"] == 2 and header["status"] == "cancelled"


def test_a_sorted_result_round_trips_with_its_indices(tmp_path: Path) -> None:
    result = _result().sort(descending=True)
    loaded = dv.ValuationResult.load(result.save(tmp_path / "sorted.npz"))
    _assert_same(result, loaded)
    assert list(loaded.indices) == [2, 0, 3, 1]


def test_save_adds_the_suffix_and_load_finds_it(tmp_path: Path) -> None:
    path = _result().save(tmp_path / "run-1")
    assert path == tmp_path / "run-1.npz" and path.exists()
    _assert_same(_result(), dv.ValuationResult.load(tmp_path / "run-1"))
    _assert_same(_result(), dv.ValuationResult.load(str(path)))


def test_loading_a_foreign_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, values=np.zeros(3), header=np.array(json.dumps({"x": 1})))
    with pytest.raises(ValueError, match="not a daskval result file"):
        dv.ValuationResult.load(path)


class WriteFailed(Exception):
    pass


def _failing_savez(file: Any, **arrays: Any) -> None:
    file.write(b"PK\x03\x04 half an archive")
    raise WriteFailed("disk full")


def test_a_failed_write_leaves_the_old_file_and_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "values.npz"
    old = _result()
    old.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(daskval.result.np, "savez", _failing_savez)
    with pytest.raises(WriteFailed):
        old.sort().save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["values.npz"]
    monkeypatch.undo()
    _assert_same(old, dv.ValuationResult.load(path))


def test_a_failed_first_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daskval.result.np, "savez", _failing_savez)
    with pytest.raises(WriteFailed):
        _result().save(tmp_path / "sub" / "values.npz")
    assert list((tmp_path / "sub").iterdir()) == []


def test_sort_by_each_key_returns_a_reordered_copy() -> None:
    result = _result()
    assert list(result.sort().names) == ["beta", "dé", "alpha", "gamma"]
    assert list(result.sort(descending=True).values) == [0.7, 0.3, 0.0, -0.1]
    assert list(result.sort("stderr").names) == ["dé", "alpha", "gamma", "beta"]
    assert list(result.sort("name").names) == ["alpha", "beta", "dé", "gamma"]
    by_value = result.sort()
    assert list(by_value.sort("index").indices) == [0, 1, 2, 3]
    # arrays stay aligned, and the original is untouched
    assert by_value.get("gamma") == result.get("gamma")
    assert list(result.names) == ["alpha", "beta", "gamma", "dé"]
    with pytest.raises(ValueError, match="by must be one of"):
        result.sort("count")


def test_lookup_by_name() -> None:
    result = _result()
    assert result["gamma"] == 0.7
    assert result.get("beta") == {
        "name": "beta",
        "index": 1,
        "value": -0.1,
        "stderr": np.inf,
        "count": 1,
    }
    assert result.sort(descending=True).position("gamma") == 0
    with pytest.raises(KeyError, match="delta"):
        result["delta"]


def test_names_default_to_indices_and_lookups_use_them() -> None:
    result = dv.ValuationResult(np.array([1.0, 2.0]), np.zeros(2), np.ones(2))
    assert list(result.names) == ["0", "1"]
    assert result["1"] == 2.0 and len(result) == 2


def test_to_pandas() -> None:
    frame = _result().to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert frame.index.name == "name"
    assert list(frame.index) == ["alpha", "beta", "gamma", "dé"]
    assert list(frame.columns) == ["value", "stderr", "count", "index"]
    assert frame.loc["gamma", "value"] == 0.7
    assert frame["count"].dtype == np.int64 and frame["value"].dtype == float


def test_misaligned_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="stderr has 2 entries, values has 3"):
        dv.ValuationResult(np.zeros(3), np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="names has 1 entries"):
        dv.ValuationResult(np.zeros(2), np.zeros(2), np.zeros(2), names=["a"])


def test_repr_names_the_method_and_status() -> None:
    text = repr(_result())
    assert "shapley" in text and "cancelled" in text and "4 players" in text


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_output_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    """Saved results, HTML reports and tables get 0666 & ~umask, as open()
    would give them (the temporary file behind each atomic write was 0600)."""
    from daskval.cli import write_csv

    result = _result()
    old = os.umask(umask)
    try:
        paths = [
            result.save(tmp_path / "values.npz"),
            result.report(tmp_path / "report.html"),
        ]
        write_csv(result, tmp_path / "values.csv")
        paths.append(tmp_path / "values.csv")
    finally:
        os.umask(old)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name
