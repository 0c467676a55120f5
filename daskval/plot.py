"""Bokeh plots of values and of the experiments that judge them.

- :func:`plot_distribution`: the distribution of the values (split into
  clean and corrupted points when the corrupted ones are known);
- :func:`plot_values_vs_quality`: values against a known quality signal
  (corrupted or not, a noise level, a data source's quality, ...);
- :func:`plot_curves`: removal or addition curves of several methods;
- :func:`plot_convergence`: the convergence traces runs record;
- :func:`plot_detection`: F1 and AUROC of a noisy-label comparison.

Each returns a Bokeh layout object: show it in a notebook
(``bokeh.io.show``), or write it with :func:`save_html` (standalone, BokehJS
inlined, no network needed) or :func:`save_png`, which renders the page in a
headless Chromium through Playwright (``pip install playwright``; Debian's
``/usr/bin/chromium``, or ``DASKVAL_CHROMIUM=/path/to/chromium``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from daskval._files import replacing
from daskval.evaluate import Curve, player_values
from daskval.result import ValuationResult

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "headless_chromium",
    "plot_convergence",
    "plot_curves",
    "plot_detection",
    "plot_distribution",
    "plot_values_vs_quality",
    "png_unavailable",
    "save_html",
    "save_png",
]

#: The browser :func:`save_png` drives (Debian's package), unless
#: ``DASKVAL_CHROMIUM`` names another.
CHROMIUM = "/usr/bin/chromium"
#: Flags for a headless Chromium that talks to nothing but the page.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# a colour-blind-safe palette (Okabe & Ito), cycled over methods
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
)
_RANDOM_COLOUR = "#999999"
WIDTH, HEIGHT = 640, 400


def _colours(names: Sequence[str]) -> dict[str, str]:
    """One colour per name; the random baseline is grey."""
    colours, k = {}, 0
    for name in names:
        if name == "random":
            colours[name] = _RANDOM_COLOUR
        else:
            colours[name] = PALETTE[k % len(PALETTE)]
            k += 1
    return colours


def _named(values: Any) -> dict[str, ValuationResult | np.ndarray]:
    if isinstance(values, Mapping):
        if not values:
            raise ValueError("values must name at least one method")
        return {str(k): v for k, v in values.items()}
    name = (
        values.metadata.get("method", "values")
        if isinstance(values, ValuationResult)
        else "values"
    )
    return {str(name): values}


def _figure(title: str, x_label: str, y_label: str, **kwargs: Any) -> Any:
    from bokeh.plotting import figure

    fig = figure(
        title=title,
        x_axis_label=x_label,
        y_axis_label=y_label,
        width=kwargs.pop("width", WIDTH),
        height=kwargs.pop("height", HEIGHT),
        **kwargs,
    )
    fig.title.text_font_size = "13pt"  # type: ignore[union-attr]
    return fig


def _legend_outside(fig: Any) -> None:
    if fig.legend:
        fig.legend.click_policy = "hide"
        fig.legend.label_text_font_size = "9pt"


# -- the plots ---------------------------------------------------------------------
def plot_distribution(
    values: Any,
    *,
    corrupted: Any = None,
    bins: int | None = None,
    title: str = "distribution of the values",
) -> Any:
    """A histogram of the values; clean and corrupted points stacked if known.

    Parameters
    ----------
    values : ValuationResult or array-like
        One value per player.
    corrupted : array-like, optional
        Indices (or a mask) of the corrupted players.
    bins : int, optional
        Number of bins (default ~sqrt(n), between 5 and 50).
    title : str
        The plot's title.
    """
    from bokeh.models import ColumnDataSource

    v = player_values(values)
    mask = np.zeros(len(v), bool)
    if corrupted is not None:
        from daskval.evaluate import _corrupted_mask

        mask = _corrupted_mask(corrupted, len(v))
    n_bins = bins or int(min(50, max(5, np.sqrt(len(v)))))
    edges = np.histogram_bin_edges(v, bins=n_bins)
    clean = np.histogram(v[~mask], bins=edges)[0].astype(float)
    bad = np.histogram(v[mask], bins=edges)[0].astype(float)
    source = ColumnDataSource(
        {"left": edges[:-1], "right": edges[1:], "clean": clean, "top": clean + bad},
        name="daskval-distribution",
    )
    fig = _figure(title, "value", "points")
    label = "clean" if corrupted is not None else "points"
    fig.quad(
        left="left",
        right="right",
        bottom=0,
        top="clean",
        source=source,
        color=PALETTE[0],
        alpha=0.8,
        legend_label=label,
    )
    if corrupted is not None:
        fig.quad(
            left="left",
            right="right",
            bottom="clean",
            top="top",
            source=source,
            color=PALETTE[1],
            alpha=0.8,
            legend_label="corrupted",
        )
    _legend_outside(fig)
    return fig


def plot_values_vs_quality(
    values: Any,
    quality: Any,
    *,
    quality_label: str = "quality",
    title: str = "values against a known quality signal",
    seed: int = 0,
) -> Any:
    """Values against a known signal of each point's quality.

    Parameters
    ----------
    values : ValuationResult or array-like
        One value per player.
    quality : array-like
        One number per player (a noise level, a source's quality), or a
        boolean mask (True: corrupted), drawn as two jittered strips.
    quality_label : str
        The signal's axis label.
    title : str
        The plot's title.
    seed : int
        Seed of the jitter of a boolean signal.
    """
    from bokeh.models import ColumnDataSource

    v = player_values(values)
    q = np.asarray(quality)
    if q.shape != v.shape:
        raise ValueError(
            f"quality must have one entry per player ({len(v)}), got shape {q.shape}"
        )
    if q.dtype == bool:
        jitter = np.random.default_rng(seed).uniform(-0.15, 0.15, len(v))
        x = q.astype(float) + jitter
        fig = _figure(title, quality_label, "value", x_range=(-0.5, 1.5))
        fig.xaxis.ticker = [0, 1]
        fig.xaxis.major_label_overrides = {0: "clean", 1: "corrupted"}
        colour = np.where(q, PALETTE[1], PALETTE[0])
    else:
        x = q.astype(float)
        fig = _figure(title, quality_label, "value")
        colour = np.full(len(v), PALETTE[0])
    source = ColumnDataSource(
        {"quality": x, "value": v, "colour": colour.tolist()},
        name="daskval-quality",
    )
    fig.scatter("quality", "value", source=source, color="colour", alpha=0.6, size=6)
    return fig


def plot_curves(
    curves: Sequence[Curve],
    *,
    title: str | None = None,
    y_label: str = "score on the held-out test split",
) -> Any:
    """Removal (or addition) curves, one line per method and order.

    Parameters
    ----------
    curves : sequence of Curve
        From :func:`daskval.evaluate.removal_curves` or ``addition_curves``.
    title : str, optional
        Default: "point removal" or "point addition".
    y_label : str
        The score's axis label.
    """
    from bokeh.models import ColumnDataSource

    curves = list(curves)
    if not curves or not all(isinstance(c, Curve) for c in curves):
        raise TypeError("curves must be a non-empty sequence of Curve objects")
    kind = curves[0].kind
    verb = "removed" if kind == "removal" else "added"
    fig = _figure(
        title or f"point {kind}: retrained model's score",
        f"fraction of training points {verb}",
        y_label,
    )
    colours = _colours(list(dict.fromkeys(c.method for c in curves)))
    orders = {c.order for c in curves}
    for curve in curves:
        label = curve.method if len(orders) == 1 else f"{curve.method}, {curve.order}"
        source = ColumnDataSource(
            {"fraction": curve.fractions, "score": curve.scores},
            name=f"daskval-curve-{curve.method}-{curve.order}",
        )
        dash = "solid" if curve.order == "high" else "dashed"
        fig.line(
            "fraction",
            "score",
            source=source,
            color=colours[curve.method],
            line_width=2.5,
            line_dash=dash,
            legend_label=label,
        )
        fig.scatter(
            "fraction", "score", source=source, color=colours[curve.method], size=6
        )
    fig.legend.location = "bottom_left"
    _legend_outside(fig)
    return fig


def plot_convergence(
    results: Any, *, title: str = "convergence: median standard error"
) -> Any:
    """The median stderr against utility evaluations, from the runs' traces.

    Parameters
    ----------
    results : ValuationResult or mapping of name to ValuationResult
        Results of runs (``metadata["trace"]``; methods without a standard
        error, or without a trace, are left out).
    title : str
        The plot's title.
    """
    from bokeh.models import ColumnDataSource

    named = _named(results)
    fig = _figure(title, "utility evaluations", "median stderr", y_axis_type="log")
    colours = _colours(list(named))
    drawn = 0
    for name, result in named.items():
        if not isinstance(result, ValuationResult):
            raise TypeError(f"results[{name!r}] must be a ValuationResult")
        trace = result.metadata.get("trace") or {}
        x = np.array(trace.get("n_evaluations") or [], dtype=float)
        y = np.array(
            [np.nan if s is None else s for s in trace.get("stderr_median") or []],
            dtype=float,
        )
        keep = np.isfinite(y) & (y > 0)
        if not keep.any():
            continue
        source = ColumnDataSource(
            {"n_evaluations": x[keep], "stderr": y[keep]},
            name=f"daskval-convergence-{name}",
        )
        fig.line(
            "n_evaluations",
            "stderr",
            source=source,
            color=colours[name],
            line_width=2,
            legend_label=name,
        )
        drawn += 1
    if drawn:
        _legend_outside(fig)
    return fig


def plot_detection(table: pd.DataFrame, *, title: str = "noisy-label detection") -> Any:
    """F1 (low 2-means cluster) and AUROC per method, as grouped bars.

    Parameters
    ----------
    table : pandas.DataFrame
        ``Comparison.table`` of :func:`daskval.evaluate.compare_methods`:
        indexed by method, with ``f1`` and ``auroc`` columns.
    title : str
        The plot's title.
    """
    from bokeh.models import ColumnDataSource, FactorRange
    from bokeh.transform import dodge

    if not {"f1", "auroc"} <= set(table.columns):
        raise ValueError("table must have 'f1' and 'auroc' columns (Comparison.table)")
    methods = [str(m) for m in table.index]
    source = ColumnDataSource(
        {
            "method": methods,
            "f1": table["f1"].to_numpy(float),
            "auroc": table["auroc"].to_numpy(float),
        },
        name="daskval-detection",
    )
    fig = _figure(
        title,
        "method",
        "score",
        x_range=FactorRange(factors=methods),
        y_range=(0, 1.05),
    )
    fig.vbar(
        x=dodge("method", -0.18, range=fig.x_range),
        top="f1",
        width=0.34,
        source=source,
        color=PALETTE[0],
        legend_label="F1 (low 2-means cluster)",
    )
    fig.vbar(
        x=dodge("method", 0.18, range=fig.x_range),
        top="auroc",
        width=0.34,
        source=source,
        color=PALETTE[4],
        legend_label="AUROC",
    )
    fig.xaxis.major_label_orientation = 0.6
    fig.legend.location = "top_right"
    return fig


# -- output ------------------------------------------------------------------------
def _target(path: Any, suffix: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise ValueError(f"path={str(path)!r} is a directory; name a {suffix} file")
    if not target.parent.is_dir():
        raise ValueError(f"path={str(path)!r}: the directory does not exist")
    return target


def _html(plot: Any, title: str) -> str:
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    return file_html(plot, INLINE, title)


def save_html(
    plot: Any, path: str | os.PathLike[str], *, title: str = "daskval"
) -> Path:
    """Write a plot (or a layout of plots) as standalone HTML; returns the path.

    BokehJS is inlined: the file opens without a network.
    """
    target = _target(path, "HTML")
    with replacing(target) as tmp:
        tmp.write_text(_html(plot, title), encoding="utf-8")
    return target


def _chromium_path() -> str:
    return os.environ.get("DASKVAL_CHROMIUM") or CHROMIUM


def png_unavailable() -> str | None:
    """Why :func:`save_png` cannot work here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not os.path.exists(_chromium_path()):
        return (
            f"no Chromium at {_chromium_path()} (apt-get install chromium, or set "
            "DASKVAL_CHROMIUM to a Chromium binary)"
        )
    return None


@contextlib.contextmanager
def headless_chromium(**context_options: Any) -> Iterator[Any]:
    """A Playwright browser context of a headless Chromium with a fresh profile.

    Parameters
    ----------
    **context_options
        Passed to ``launch_persistent_context`` (e.g. ``viewport=``).

    Raises
    ------
    RuntimeError
        When Playwright or the browser is missing (see :func:`png_unavailable`).
    """
    reason = png_unavailable()
    if reason is not None:
        raise RuntimeError(f"no headless browser for PNG output: {reason}")
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="daskval-chromium-") as profile,
        sync_playwright() as p,
    ):
        # a persistent context is the way to give Chromium its own profile dir
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=_chromium_path(),
            args=list(CHROMIUM_ARGS),
            headless=True,
            **context_options,
        )
        try:
            yield context
        finally:
            context.close()


def save_png(
    plot: Any,
    path: str | os.PathLike[str],
    *,
    scale: float = 2.0,
    timeout: float = 30.0,
) -> Path:
    """Render a plot in a headless Chromium and save it as a PNG.

    Parameters
    ----------
    plot : Bokeh model
        A figure or layout.
    path : str or PathLike
        The PNG file to write.
    scale : float
        Device pixels per CSS pixel (2 gives a sharp image).
    timeout : float
        Seconds to wait for the page to render.

    Raises
    ------
    RuntimeError
        When no headless browser is available (see :func:`png_unavailable`).
    """
    target = _target(path, "PNG")
    with tempfile.TemporaryDirectory(prefix="daskval-png-") as tmp:
        page_path = Path(tmp) / "plot.html"
        page_path.write_text(_html(plot, "daskval"), encoding="utf-8")
        with headless_chromium(
            viewport={"width": 1600, "height": 1200}, device_scale_factor=scale
        ) as context:
            page = context.new_page()
            page.goto(page_path.as_uri())
            page.wait_for_function(_RENDERED_JS, timeout=timeout * 1000)
            page.wait_for_timeout(200)  # let the canvases paint
            box = page.evaluate(_BOUNDING_BOX_JS)
            page.screenshot(path=str(target), clip=box)
    return target


# every root view of the document has finished rendering
_RENDERED_JS = """() => {
    if (!window.Bokeh || Bokeh.documents.length === 0 || !Bokeh.index) return false;
    const views = [...(Bokeh.index.roots || Object.values(Bokeh.index))];
    return views.length > 0 && views.every(v => !v.has_finished || v.has_finished());
}"""
# the union of the rendered roots' boxes (Bokeh renders into shadow DOM, so
# the roots' views are asked, not the document's elements)
_BOUNDING_BOX_JS = """() => {
    let x0 = Infinity, y0 = Infinity, x1 = 0, y1 = 0;
    for (const view of [...(Bokeh.index.roots || Object.values(Bokeh.index))]) {
        const r = view.el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0) continue;  // e.g. Notifications
        x0 = Math.min(x0, r.left); y0 = Math.min(y0, r.top);
        x1 = Math.max(x1, r.right); y1 = Math.max(y1, r.bottom);
    }
    if (!isFinite(x0)) { x0 = 0; y0 = 0; x1 = 800; y1 = 600; }
    return {x: x0, y: y0, width: Math.max(1, x1 - x0), height: Math.max(1, y1 - y0)};
}"""
