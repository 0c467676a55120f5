"""Datasets on storage the workers read: npz, Parquet and memory-mapped arrays.

What travels to the cluster is measured where it arrives (the plugin bytes
the scheduler keeps, the graphs the client sends); the workers' copies are
checked to be their own maps of the files.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from helpers.reference import assert_same_values, small_data, small_valuation
from sklearn.dummy import DummyClassifier
from test_engine import graph_bytes

import daskval as dv
from daskval.engine.broadcast import plugin_name

IN_CI = bool(os.environ.get("CI"))


def save_npz(data: dv.Dataset, path: Path, **extra: Any) -> Path:
    np.savez(
        path,
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
        **extra,
    )
    return path


def fit(valuation: dv.Valuation, client: Client) -> dv.ValuationResult:
    return valuation.fit(client=client, progress=False, dashboard=False).result_


def test_npz_dataset_gives_the_in_memory_values(client: Client, tmp_path: Path) -> None:
    data = small_data()
    on_disk = dv.Dataset.from_npz(save_npz(data, tmp_path / "data.npz"))
    assert on_disk.file_backed == ("x_train", "y_train", "x_test", "y_test")
    # the same data has the same fingerprint (and shares the workers' memo)
    assert on_disk.fingerprint() == data.fingerprint()
    assert_same_values(
        fit(small_valuation(on_disk), client), fit(small_valuation(data), client)
    )


def test_parquet_dataset_gives_the_in_memory_values(
    client: Client, tmp_path: Path
) -> None:
    if not IN_CI:
        pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (extra parquet)")
    data = small_data()
    columns = [f"f{i}" for i in range(data.x_train.shape[1])]
    frames = {}
    for split in ("train", "test"):
        frame = pd.DataFrame(getattr(data, f"x_{split}"), columns=columns)
        frame["label"] = getattr(data, f"y_{split}")
        frame.to_parquet(tmp_path / f"{split}.parquet")
        frames[split] = frame
    on_disk = dv.Dataset.from_parquet(
        tmp_path / "train.parquet", tmp_path / "test.parquet", target="label"
    )
    in_memory = dv.Dataset(
        frames["train"][columns],
        frames["train"]["label"],
        frames["test"][columns],
        frames["test"]["label"],
    )
    assert list(on_disk.x_train.columns) == columns
    assert on_disk.fingerprint() == in_memory.fingerprint()
    assert_same_values(
        fit(small_valuation(on_disk), client), fit(small_valuation(in_memory), client)
    )


def _worker_copy(name: str, dask_worker: Any = None) -> tuple[str | None, bool]:
    """The file behind a worker's training features, and whether they are a map."""
    x = dask_worker.plugins[name].utility.data.x_train
    base = x if isinstance(x, np.memmap) else x.base
    return getattr(base, "filename", None), isinstance(base, np.memmap)


def _plugin_bytes(dask_scheduler: Any = None) -> dict[str, int]:
    return {name: len(blob) for name, blob in dask_scheduler.worker_plugins.items()}


def test_memory_mapped_dataset_is_never_shipped(client: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n_rows, n_features = 16_000, 128  # 16 MB of features
    np.save(tmp_path / "x.npy", rng.normal(size=(n_rows, n_features)))
    np.save(tmp_path / "y.npy", (rng.random(n_rows) > 0.5).astype(np.int64))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    y = np.load(tmp_path / "y.npy", mmap_mode="r")
    groups = np.arange(n_rows) % 6
    data = dv.Dataset(x, y, x[:200].copy(), y[:200].copy(), groups=groups)
    assert data.file_backed == ("x_train", "y_train")
    assert data.x_train.nbytes == n_rows * n_features * 8
    in_memory = dv.Dataset(np.array(x), np.array(y), x[:200], y[:200], groups=groups)
    assert data.fingerprint() == in_memory.fingerprint()

    utility = dv.ModelUtility(DummyClassifier(), data)
    valuation = dv.ShapleyValuation(utility, stop=dv.MaxSamples(4), seed=0)
    with graph_bytes(client) as graphs:
        result = fit(valuation, client)
    assert result.n_samples == 4
    name = plugin_name(utility)
    shipped = client.run_on_scheduler(_plugin_bytes)[name]
    # the group labels and rows (one per training row) and the 200-row scoring
    # split travel; the 16 MB of training features do not
    assert shipped < 600_000, shipped
    assert max(size for _, size in graphs) < 50_000
    # every worker maps the file itself
    copies = client.run(_worker_copy, name)
    assert set(copies.values()) == {(str(tmp_path / "x.npy"), True)}


def test_changed_files_are_refused_where_they_load(tmp_path: Path) -> None:
    data = small_data()
    path = save_npz(data, tmp_path / "data.npz")
    blob = pickle.dumps(dv.Dataset.from_npz(path))
    assert len(blob) < data.x_train.nbytes + data.x_test.nbytes  # paths, not data
    assert pickle.loads(blob).fingerprint() == data.fingerprint()
    x_changed = data.x_train.copy()
    x_changed[0, 0] += 1.0
    np.savez(
        path,
        x_train=x_changed,
        y_train=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
    )
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        pickle.loads(blob)
    path.unlink()
    with pytest.raises(OSError, match="same path on every worker"):
        pickle.loads(blob)


def test_bad_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"path='missing\.npz'"):
        dv.Dataset.from_npz("missing.npz")
    with pytest.raises(TypeError, match="path must be a file path"):
        dv.Dataset.from_npz(3)  # type: ignore[arg-type]
    np.savez(tmp_path / "partial.npz", x_train=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"lacks the array\(s\)"):
        dv.Dataset.from_npz(tmp_path / "partial.npz")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"must be a \.parquet or \.pq file"):
        dv.Dataset.from_parquet(
            tmp_path / "table.csv", tmp_path / "table.csv", target="b"
        )
