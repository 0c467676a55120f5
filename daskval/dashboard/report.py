"""A result's static report: one standalone HTML file (Bokeh, inlined).

``ValuationResult.report(path)`` calls :func:`write_report`. The file holds
everything it shows (BokehJS inlined, no network needed to open it):

- a summary of the run (method, status, samples, evaluations, failures);
- the distribution of the values (histogram);
- the highest- and lowest-valued points with their stderr (tables, and a
  dot plot with 95% intervals);
- the convergence trace, when the result has one (runs record it in
  ``metadata["trace"]``): median and largest stderr, and the mean change of
  the values between fetches, against utility evaluations.

Its data sources are named like the live page's (``daskval-values`` holds
every player's name, value, stderr and count), so a browser, or a test, can
read the numbers back.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from daskval._files import replacing


class ValuationResult(Protocol):
    """What the report reads of a :class:`daskval.ValuationResult` (a
    protocol, so that this module, which the result calls, does not import
    the result's module back)."""

    values: np.ndarray
    stderr: np.ndarray
    counts: np.ndarray
    names: Any
    status: str
    n_samples: int
    n_evaluations: int
    n_failed: int
    metadata: dict[str, Any]

    def __len__(self) -> int: ...


__all__ = ["write_report"]


def _values_source(result: ValuationResult) -> Any:
    from bokeh.models import ColumnDataSource

    return ColumnDataSource(
        {
            "name": [str(n) for n in result.names],
            "value": np.asarray(result.values, dtype=float),
            "stderr": np.where(np.isfinite(result.stderr), result.stderr, np.nan),
            "count": np.asarray(result.counts, dtype=float),
        },
        name="daskval-values",
    )


def _histogram(result: ValuationResult) -> Any:
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    finite = result.values[np.isfinite(result.values)]
    bins = int(min(50, max(5, np.sqrt(max(len(finite), 1)))))
    counts, edges = (
        np.histogram(finite, bins=bins) if finite.size else (np.array([]), [0.0])
    )
    source = ColumnDataSource(
        {"left": edges[:-1], "right": edges[1:], "count": counts.astype(float)},
        name="daskval-histogram",
    )
    fig = figure(
        title="distribution of the values",
        x_axis_label="value",
        y_axis_label="players",
        height=300,
        width=520,
    )
    fig.quad(left="left", right="right", top="count", bottom=0, source=source)
    return fig


def _extremes(result: ValuationResult, k: int) -> tuple[Any, Any, Any]:
    """Tables of the k highest and k lowest, and a dot plot of both with 95% bars."""
    from bokeh.models import ColumnDataSource, FactorRange
    from bokeh.plotting import figure

    from daskval.dashboard.page import extremes_table

    order = np.argsort(result.values, kind="stable")
    k = min(k, len(order))
    stderr = np.where(np.isfinite(result.stderr), result.stderr, np.nan)

    def source(positions: np.ndarray, name: str) -> Any:
        return ColumnDataSource(
            {
                "rank": np.arange(1, len(positions) + 1),
                "name": [str(result.names[i]) for i in positions],
                "value": result.values[positions],
                "stderr": stderr[positions],
                "low": result.values[positions] - 1.96 * stderr[positions],
                "high": result.values[positions] + 1.96 * stderr[positions],
            },
            name=name,
        )

    top = source(order[::-1][:k], "daskval-top")
    bottom = source(order[:k], "daskval-bottom")
    labels = [f"top {n}" for n in top.data["name"]] + [
        f"bottom {n}" for n in bottom.data["name"]
    ]
    dots = figure(
        title="highest and lowest values (95% intervals)",
        y_range=FactorRange(factors=labels[::-1]),
        x_axis_label="value",
        height=max(250, 22 * len(labels) + 60),
        width=520,
    )
    for src, color, prefix in ((top, "green", "top"), (bottom, "firebrick", "bottom")):
        src.data["label"] = [f"{prefix} {n}" for n in src.data["name"]]
        dots.segment("low", "label", "high", "label", source=src, color=color)
        dots.scatter("value", "label", source=src, color=color, size=7)
    height = min(600, 30 + 26 * k)
    return (
        extremes_table(top, "highest", height=height),
        extremes_table(bottom, "lowest", height=height),
        dots,
    )


def _convergence(trace: dict[str, Any]) -> Any:
    """Stderr and value change against evaluations, or None without a trace."""
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    columns = (
        "n_evaluations",
        "n_samples",
        "stderr_median",
        "stderr_max",
        "mean_abs_change",
    )
    if not trace or not trace.get("n_evaluations"):
        return None
    data = {
        name: np.array(
            [np.nan if v is None else float(v) for v in trace.get(name, [])], float
        )
        for name in columns
    }
    source = ColumnDataSource(data, name="daskval-trace")
    fig = figure(
        title="convergence",
        x_axis_label="utility evaluations",
        y_axis_label="stderr / change",
        height=300,
        width=520,
    )
    fig.line("n_evaluations", "stderr_median", source=source, legend_label="median")
    fig.line(
        "n_evaluations",
        "stderr_max",
        source=source,
        color="firebrick",
        legend_label="largest stderr",
    )
    fig.line(
        "n_evaluations",
        "mean_abs_change",
        source=source,
        color="orange",
        legend_label="mean |change| per fetch",
    )
    fig.legend.location = "top_right"
    return fig


def _summary(result: ValuationResult, title: str) -> Any:
    from bokeh.models.widgets import Div

    meta = result.metadata
    rows = [
        ("method", meta.get("method", "?")),
        ("players", f"{len(result):,}"),
        ("status", result.status),
        ("samples", f"{result.n_samples:,}"),
        ("utility evaluations", f"{result.n_evaluations:,}"),
        ("failed evaluations", f"{result.n_failed:,}"),
        ("stopping criterion", meta.get("stop")),
        ("seed", meta.get("seed")),
        ("elapsed", f"{meta.get('elapsed_seconds', float('nan')):.1f} s"),
        ("run", meta.get("run_id")),
    ]
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td>{html.escape(str(v))}</td></tr>"
        for k, v in rows
        if v is not None
    )
    div = Div(text=f"<h2>{html.escape(title)}</h2><table>{cells}</table>")
    div.name = "daskval-summary"
    return div


def _write_atomically(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_report(
    result: ValuationResult,
    path: str | os.PathLike[str],
    *,
    top: int = 10,
    title: str | None = None,
) -> Path:
    """Write ``result``'s report to ``path`` as standalone HTML; returns the path.

    Parameters
    ----------
    result : ValuationResult
        The values to report.
    path : str or PathLike
        The HTML file to write (replaced atomically).
    top : int
        How many of the highest- and of the lowest-valued points to list.
    title : str, optional
        The page's title; by default the method and the number of players.
    """
    from bokeh.embed import file_html
    from bokeh.layouts import column, row
    from bokeh.resources import INLINE

    from daskval._validation import check_positive_int

    top = check_positive_int(top, "top")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a string, got {type(title).__name__}")
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise ValueError(f"path={str(path)!r} is a directory; name a file")
    if not target.parent.is_dir():
        raise ValueError(f"path={str(path)!r}: the directory does not exist")
    title = title or (
        f"daskval report: {result.metadata.get('method', 'valuation')} of "
        f"{len(result):,} players"
    )
    values = _values_source(result)
    high, low, dots = _extremes(result, top)
    convergence = _convergence(result.metadata.get("trace") or {})
    plots = [_histogram(result), dots] + ([convergence] if convergence else [])
    layout = column(
        _summary(result, title),
        row(*plots[:2]),
        row(high, low),
        *plots[2:],
    )
    # every player's numbers travel in the file (read back by tests and users)
    document_html = file_html([layout, _holder(values)], INLINE, title)
    _write_atomically(target, document_html)
    return target


def _holder(source: Any) -> Any:
    """An invisible table of every player's numbers, so the source is in the
    document (Bokeh serialises only models reachable from its roots)."""
    from bokeh.models.widgets import DataTable, TableColumn

    return DataTable(
        source=source,
        columns=[
            TableColumn(field="name", title="name"),
            TableColumn(field="value", title="value"),
            TableColumn(field="stderr", title="stderr"),
            TableColumn(field="count", title="count"),
        ],
        visible=False,
        name="daskval-values-table",
    )
