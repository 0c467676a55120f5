"""Bokeh plots: the numbers in their data sources, HTML files, PNG via Chromium.

PNG output needs Playwright and Debian's chromium (as the dashboard tests);
without them the PNG test skips, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bokeh.layouts import row

from daskval import plot as dp
from daskval.evaluate import Curve
from daskval.result import ValuationResult

IN_CI = bool(os.environ.get("CI"))


def source(plot: object, name: str) -> dict:
    model = plot.select_one({"name": name})  # type: ignore[attr-defined]
    assert model is not None, name
    return dict(model.data)


def curves() -> list[Curve]:
    fractions = np.linspace(0, 0.5, 6)
    return [
        Curve("banzhaf", "removal", "high", fractions, np.arange(6), 0.9 - fractions),
        Curve(
            "random", "removal", "high", fractions, np.arange(6), 0.9 - fractions / 9
        ),
    ]


def test_distribution_stacks_clean_and_corrupted_points() -> None:
    values = np.array([0.0, 0.1, 0.5, 0.9, 1.0, 1.0])
    fig = dp.plot_distribution(values, corrupted=[0, 1], bins=2)
    data = source(fig, "daskval-distribution")
    np.testing.assert_array_equal(data["clean"], [0, 4])
    np.testing.assert_array_equal(data["top"], [2, 4])


def test_values_vs_quality_boolean_and_continuous() -> None:
    values = np.array([0.1, 0.2, 0.3])
    fig = dp.plot_values_vs_quality(values, np.array([True, False, False]))
    data = source(fig, "daskval-quality")
    np.testing.assert_array_equal(data["value"], values)
    assert np.abs(data["quality"] - [1, 0, 0]).max() <= 0.15
    fig = dp.plot_values_vs_quality(values, [3.0, 2.0, 1.0], quality_label="noise")
    np.testing.assert_array_equal(source(fig, "daskval-quality")["quality"], [3, 2, 1])
    with pytest.raises(ValueError, match="one entry per player"):
        dp.plot_values_vs_quality(values, [1.0])


def test_curves_one_line_per_method() -> None:
    fig = dp.plot_curves(curves())
    data = source(fig, "daskval-curve-banzhaf-high")
    np.testing.assert_allclose(data["score"], curves()[0].scores)
    assert "removed" in fig.xaxis[0].axis_label
    with pytest.raises(TypeError, match="Curve objects"):
        dp.plot_curves([])


def test_convergence_reads_the_trace() -> None:
    trace = {"n_evaluations": [10, 20, 40], "stderr_median": [None, 0.2, 0.1]}
    result = ValuationResult(
        np.zeros(3), np.ones(3), np.ones(3, int), metadata={"trace": trace}
    )
    fig = dp.plot_convergence(
        {"tmc": result, "loo": ValuationResult(*[np.ones(3)] * 3)}
    )
    data = source(fig, "daskval-convergence-tmc")
    np.testing.assert_array_equal(data["n_evaluations"], [20, 40])
    assert fig.select_one({"name": "daskval-convergence-loo"}) is None


def test_detection_bars_and_bad_table() -> None:
    table = pd.DataFrame(
        {"f1": [0.7, 0.3], "auroc": [0.95, 0.5]},
        index=pd.Index(["data-oob", "random"], name="method"),
    )
    data = source(dp.plot_detection(table), "daskval-detection")
    assert list(data["method"]) == ["data-oob", "random"]
    with pytest.raises(ValueError, match="'f1' and 'auroc'"):
        dp.plot_detection(pd.DataFrame({"x": [1]}))


def test_save_html_is_standalone(tmp_path: Path) -> None:
    path = dp.save_html(dp.plot_curves(curves()), tmp_path / "curves.html")
    text = path.read_text()
    assert "daskval-curve-banzhaf-high" in text
    assert "cdn.bokeh.org" not in text  # BokehJS inlined: opens offline
    with pytest.raises(ValueError, match="directory does not exist"):
        dp.save_html(dp.plot_curves(curves()), tmp_path / "no" / "x.html")
    with pytest.raises(ValueError, match="is a directory"):
        dp.save_html(dp.plot_curves(curves()), tmp_path)


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_save_png_renders_in_headless_chromium(tmp_path: Path) -> None:
    reason = dp.png_unavailable()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI needs PNG output: {reason}")
        pytest.skip(reason)
    layout = row(dp.plot_curves(curves()), dp.plot_distribution(np.arange(10.0)))
    path = dp.save_png(layout, tmp_path / "plots.png", scale=1)
    # the two figures side by side, cropped to them
    assert png_size(path) == (2 * dp.WIDTH, dp.HEIGHT)
    pixels = path.stat().st_size
    assert pixels > 20_000  # drawn, not blank
