"""The Bokeh document of the ``/daskval`` page, fed by a :class:`RunStore`.

The same document is served by the scheduler plugin (on the Dask dashboard)
and by the client-side fallback server. Its data sources have stable names,
so tests and scripts can read them in the browser
(``Bokeh.documents[0].get_model_by_name("daskval-history")``):

``daskval-history``
    one row per progress event of the selected run: elapsed, n_evaluations,
    evaluations_per_second, completion, n_failed, memo_hit_rate, and
    failed_per_second (failed fits per second since the previous event);
``daskval-top`` / ``daskval-bottom``
    the highest and lowest-valued players: rank, name, value, stderr;
``daskval-stderr``
    the stderr histogram: left, right, count;
``daskval-workers``
    per-worker throughput: worker, samples_per_second.

This module needs Bokeh, not Dask.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, CustomJS, Range1d
from bokeh.models.widgets import (
    DataTable,
    Div,
    NumberFormatter,
    Select,
    TableColumn,
)
from bokeh.plotting import figure

from daskval.dashboard.console import format_duration
from daskval.dashboard.store import HISTORY_COLUMNS, MAX_ROWS, RunStore

__all__ = ["REFRESH_MS", "make_document"]

#: How often a session reads the store, in milliseconds.
REFRESH_MS = 500
_NO_RUN = "(no valuation yet)"


def _floats(values: Any) -> np.ndarray:
    """Numbers as a float array; None (no value yet) becomes NaN."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


#: the history source's columns: the store's, and the failure rate
_HISTORY = (*HISTORY_COLUMNS, "failed_per_second")


def _empty_history() -> dict[str, Any]:
    return {name: np.array([], dtype=float) for name in _HISTORY}


def _history_columns(
    rows: list[tuple[Any, ...]], previous: tuple[float, float] | None
) -> dict[str, Any]:
    """New rows of the history source, with ``failed_per_second``: the rise of
    the cumulative ``n_failed`` over the time since the row before (NaN for a
    run's first row). ``previous`` is (elapsed, n_failed) of the row before."""
    columns: dict[str, Any] = {
        name: _floats(row[i] for row in rows) for i, name in enumerate(HISTORY_COLUMNS)
    }
    elapsed = columns["elapsed"]
    failed = columns["n_failed"]
    before_t = np.concatenate([[np.nan if previous is None else previous[0]], elapsed])
    before_f = np.concatenate([[np.nan if previous is None else previous[1]], failed])
    span = elapsed - before_t[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(span > 0, (failed - before_f[:-1]) / span, np.nan)
    columns["failed_per_second"] = rate
    return columns


#: BokehJS (3.x) redraws a DataTable only when its CDSView's indices change;
#: new data of the same length keeps the same indices, so the table would keep
#: the rows it first drew while the plots move. The callback tells the view.
_REDRAW_JS = "view.change.emit()"


def live_table(source: ColumnDataSource, **kwargs: Any) -> DataTable:
    """A :class:`~bokeh.models.DataTable` of ``source`` that redraws whenever
    ``source.data`` is replaced, also with the same number of rows.

    Parameters
    ----------
    source : ColumnDataSource
        The table's rows.
    **kwargs
        Passed to :class:`~bokeh.models.DataTable`.

    Returns
    -------
    DataTable
    """
    table = DataTable(source=source, **kwargs)
    source.js_on_change("data", CustomJS(args={"view": table.view}, code=_REDRAW_JS))
    return table


def extremes_table(
    source: ColumnDataSource, title: str, *, name: str | None = None, height: int = 290
) -> DataTable:
    """A table of ranked players (rank, name, value, stderr): the page's top
    and bottom tables, and the static report's."""
    value = NumberFormatter(format="0.000000")
    return live_table(
        source,
        name=name,
        css_classes=[name] if name else [],
        columns=[
            TableColumn(field="rank", title="#", width=30),
            TableColumn(field="name", title=title),
            TableColumn(field="value", title="value", formatter=value),
            TableColumn(field="stderr", title="stderr", formatter=value),
        ],
        width=420,
        height=height,
        index_position=None,
    )


def _summary_html(event: dict[str, Any]) -> str:
    """The status line above the plots."""
    memo = event.get("memo_hit_rate")
    memo_text = "off or unused" if memo is None else f"{100 * memo:.1f}%"
    failures = event.get("failures") or {}
    failed = f"{event.get('n_failed', 0):,}"
    if failures:
        kinds = "; ".join(f"{n:,} x {k}" for k, n in failures.items())
        failed += f" ({html.escape(kinds[:300])})"
    items = [
        ("status", html.escape(str(event.get("status")))),
        ("completion", f"{100 * float(event.get('completion') or 0):.1f}%"),
        ("evaluations", f"{event.get('n_evaluations', 0):,}"),
        ("samples", f"{event.get('n_samples', 0):,}"),
        ("evaluations/s", f"{event.get('evaluations_per_second', 0.0):,.1f}"),
        ("elapsed", format_duration(event.get("elapsed"))),
        ("ETA", format_duration(event.get("eta"))),
        ("memo hit rate", memo_text),
        ("failed fits", failed),
    ]
    cells = " &nbsp;|&nbsp; ".join(f"<b>{k}</b> {v}" for k, v in items)
    title = html.escape(f"{event.get('label')}: {event.get('utility')}")
    stop = html.escape(str(event.get("stop")))
    return f"<h3>daskval: {title}</h3><p>stop: {stop}</p><p>{cells}</p>"


class _Session:
    """One browser session's view: which run it shows and what it has streamed."""

    def __init__(self, store: RunStore, doc: Document) -> None:
        self.store = store
        self.run_id: str | None = None
        self.seen = 0
        self.shown_event: dict[str, Any] | None = None
        self.last_row: tuple[float, float] | None = None
        self.history = ColumnDataSource(_empty_history(), name="daskval-history")
        self.top = ColumnDataSource(_empty_extremes(), name="daskval-top")
        self.bottom = ColumnDataSource(_empty_extremes(), name="daskval-bottom")
        self.stderr = ColumnDataSource(
            {"left": [], "right": [], "count": []}, name="daskval-stderr"
        )
        self.workers = ColumnDataSource(
            {"worker": [], "samples_per_second": []}, name="daskval-workers"
        )
        self.select = Select(
            title="valuation",
            options=list[Any]([_NO_RUN]),
            value=_NO_RUN,
            name="daskval-runs",
        )
        self.select.on_change("value", lambda attr, old, new: self.refresh())
        self.summary = Div(text="<h3>daskval: waiting for a valuation</h3>")
        self.summary.name = "daskval-summary"
        doc.add_root(self._layout())
        doc.title = "daskval"
        doc.add_periodic_callback(self.refresh, REFRESH_MS)
        self.refresh()

    def _layout(self) -> Any:
        evals = figure(
            title="evaluations over time",
            x_axis_label="seconds",
            y_axis_label="utility evaluations",
            height=260,
            width=420,
        )
        evals.line("elapsed", "n_evaluations", source=self.history, line_width=2)
        progress = figure(
            title="completion and memo hit rate",
            x_axis_label="seconds",
            y_range=Range1d(start=0, end=1.05),
            height=260,
            width=420,
        )
        progress.line(
            "elapsed",
            "completion",
            source=self.history,
            line_width=2,
            legend_label="completion",
        )
        progress.line(
            "elapsed",
            "memo_hit_rate",
            source=self.history,
            line_width=2,
            color="orange",
            legend_label="memo hit rate",
        )
        progress.legend.location = "top_left"
        rate = figure(
            title="evaluations per second",
            x_axis_label="seconds",
            height=260,
            width=420,
        )
        rate.line("elapsed", "evaluations_per_second", source=self.history)
        rate.line(
            "elapsed",
            "failed_per_second",
            source=self.history,
            color="red",
            legend_label="failed fits per second",
        )
        rate.legend.location = "top_left"
        hist = figure(
            title="stderr of the values", x_axis_label="stderr", height=260, width=420
        )
        hist.quad(left="left", right="right", top="count", bottom=0, source=self.stderr)
        workers = live_table(
            self.workers,
            name="daskval-workers-table",
            css_classes=["daskval-workers-table"],
            columns=[
                TableColumn(field="worker", title="worker"),
                TableColumn(
                    field="samples_per_second",
                    title="samples/s (last 10 s)",
                    formatter=NumberFormatter(format="0.0"),
                ),
            ],
            width=420,
            height=200,
            index_position=None,
        )
        return column(
            self.select,
            self.summary,
            row(evals, progress),
            row(rate, hist),
            row(
                extremes_table(self.top, "highest", name="daskval-top-table"),
                extremes_table(self.bottom, "lowest", name="daskval-bottom-table"),
            ),
            workers,
        )

    def _choose_run(self) -> str | None:
        """Update the selector; the selected run (the newest by default)."""
        runs = self.store.runs()
        if not runs:
            return None
        options: list[Any] = [(run_id, label) for run_id, label in reversed(runs)]
        if self.select.options != options:
            self.select.options = options
        ids = {run_id for run_id, _ in runs}
        if self.select.value not in ids:
            self.select.value = runs[-1][0]  # re-enters refresh: harmless
        return self.select.value

    def refresh(self) -> None:
        run_id = self._choose_run()
        if run_id is None:
            return
        if run_id != self.run_id:
            self.run_id, self.seen, self.shown_event = run_id, 0, None
            self.last_row = None
            self.history.data = _empty_history()
        rows, self.seen = self.store.rows_since(run_id, self.seen)
        if rows:
            columns = _history_columns(rows, self.last_row)
            self.last_row = (columns["elapsed"][-1], columns["n_failed"][-1])
            self.history.stream(columns, rollover=MAX_ROWS)
        event = self.store.latest(run_id)
        if event is None or event is self.shown_event:
            return
        self.shown_event = event
        self.summary.text = _summary_html(event)
        self.top.data = _extremes_data(event.get("top"))
        self.bottom.data = _extremes_data(event.get("bottom"))
        self.stderr.data = _histogram_data(event.get("stderr_histogram"))
        workers = event.get("workers") or {}
        self.workers.data = {
            "worker": list(workers),
            "samples_per_second": [float(v) for v in workers.values()],
        }


def _empty_extremes() -> dict[str, list[Any]]:
    return {"rank": [], "name": [], "value": [], "stderr": []}


def _extremes_data(rows: Any) -> dict[str, Any]:
    if not isinstance(rows, dict):
        return _empty_extremes()
    return {
        "rank": list(rows.get("rank", [])),
        "name": [str(n) for n in rows.get("name", [])],
        "value": _floats(rows.get("value", [])),
        "stderr": _floats(rows.get("stderr", [])),
    }


def _histogram_data(hist: Any) -> dict[str, list[float]]:
    if not isinstance(hist, dict) or not hist.get("counts"):
        return {"left": [], "right": [], "count": []}
    edges = [float(e) for e in hist["edges"]]
    return {
        "left": edges[:-1],
        "right": edges[1:],
        "count": [float(c) for c in hist["counts"]],
    }


def make_document(store: RunStore, doc: Document) -> None:
    """Build the page into ``doc`` (a Bokeh application's function handler)."""
    _Session(store, doc)
