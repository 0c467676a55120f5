"""Every notebook in notebooks/ executes without error, with small budgets.

The notebooks end in assertion cells that check their results (flipped
labels valued low, methods above the random baseline, budgets kept), so a
notebook that runs but shows nonsense fails here. They run in a fresh
kernel, in a temporary directory, against the session's LocalCluster
(``DASKVAL_SCHEDULER``), except the HPC notebook, which starts
dask-jobqueue's LocalCluster itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from distributed import Client

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300


def test_the_four_notebooks_are_there() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names == [
        "01-quickstart",
        "02-noisy-labels",
        "03-scaling-out-and-dashboard",
        "04-hpc-dask-jobqueue",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(
    path: Path, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat", reason="pip install -e .[test]")
    nbclient = pytest.importorskip("nbclient", reason="pip install -e .[test]")
    notebook = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in notebook.cells if "outputs" in c), (
        f"{path.name} is committed with outputs; clear them"
    )
    assert any(
        c.cell_type == "code" and "assert " in c.source for c in notebook.cells
    ), f"{path.name} has no assertion cell"
    # the kernel inherits the environment
    monkeypatch.setenv("DASKVAL_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("DASKVAL_SCHEDULER", client.scheduler.address)
    monkeypatch.setenv("DASKVAL_PROGRESS", "0")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
    runner = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        runner.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}")
