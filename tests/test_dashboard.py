"""The /daskval page in a real headless Chromium, during running valuations.

Bokeh pages are empty without their websocket, so a screenshot alone proves
nothing: these tests open the page with Playwright, wait for the Bokeh
document, and read its named data sources (``daskval-history``,
``daskval-top``, ...) while the run goes on. The browser is Debian's
``chromium`` (installed by .ci/run); without it these tests skip, except in
CI (``CI`` set), where a missing browser fails them.

The valuations value an additive game whose Shapley values are its weights,
so the top point is known; each call sleeps a little so the run lasts long
enough to be watched.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client

import daskval as dv
from daskval.dashboard import fallback

IN_CI = bool(os.environ.get("CI"))
N = 12
# the page refreshes every 0.5 s and runs publish every ~1 s
READ_TIMEOUT_MS = 30_000


def slow_additive(weights: list[float], indices: Any) -> float:
    """u(S) = sum of the weights in S, after 2 ms (a model fit stand-in)."""
    time.sleep(0.002)
    return float(np.sum(np.asarray(weights)[np.asarray(indices, dtype=int)]))


def additive_valuation(weights: list[float]) -> dv.ShapleyValuation:
    """Permutation Shapley of an additive game: values = weights, exactly."""
    utility = dv.FunctionUtility(functools.partial(slow_additive, weights), n=N)
    return dv.ShapleyValuation(
        utility, sampler=dv.PermutationSampler(), stop=dv.MaxSamples(10**6), seed=0
    )


def top_name(weights: list[float]) -> str:
    return str(int(np.argmax(weights)))


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI needs the browser tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium under Playwright, with a fresh profile."""
    reason = dv.plot.png_unavailable()
    if reason is not None:
        _unavailable(reason)
    with dv.plot.headless_chromium(viewport={"width": 1000, "height": 1400}) as context:
        yield context


def artifacts_dir(tmp_path: Path) -> Path:
    """Where screenshots go: ``DASKVAL_ARTIFACTS`` if set, else ``tmp_path``."""
    target = Path(os.environ.get("DASKVAL_ARTIFACTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def open_page(context: Any, link: str) -> Any:
    """Open a Bokeh page and wait for its document to be built."""
    page = context.new_page()
    page.goto(link)
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0 "
        "&& Bokeh.documents[0].roots().length > 0",
        timeout=READ_TIMEOUT_MS,
    )
    # a source's data is a Map in some BokehJS versions, a plain object in others
    page.evaluate(
        """() => {
            window.daskvalColumn = (name, key) => {
                const data = Bokeh.documents[0].get_model_by_name(name).data;
                const column = data instanceof Map ? data.get(key) : data[key];
                return Array.from(column || []);
            };
        }"""
    )
    return page


def source(page: Any, name: str) -> dict[str, list[Any]]:
    """The columns of the data source called ``name``, as the browser has them."""
    data: dict[str, list[Any]] = page.evaluate(
        """(name) => {
            const data = Bokeh.documents[0].get_model_by_name(name).data;
            const keys = data instanceof Map ? [...data.keys()] : Object.keys(data);
            const out = {};
            for (const key of keys) {
                out[key] = window.daskvalColumn(name, key);
            }
            return out;
        }""",
        name,
    )
    return data


def select_run(page: Any, run_id: str) -> None:
    """Pick ``run_id`` in the page's run selector, as a user would."""
    page.wait_for_function(
        """(id) => Bokeh.documents[0].get_model_by_name('daskval-runs')
               .options.some((o) => Array.isArray(o) ? o[0] === id : o === id)""",
        arg=run_id,
        timeout=READ_TIMEOUT_MS,
    )
    page.evaluate(
        "(id) => { Bokeh.documents[0].get_model_by_name('daskval-runs').value = id; }",
        run_id,
    )


def wait_for_top(page: Any, name: str) -> None:
    """Wait until the page's top table leads with ``name`` (the run's top point)."""
    page.wait_for_function(
        """(name) => {
            const names = window.daskvalColumn('daskval-top', 'name');
            return names.length > 0 && names[0] === name;
        }""",
        arg=name,
        timeout=READ_TIMEOUT_MS,
    )


def evaluations_seen(page: Any) -> float:
    """The newest n_evaluations in the page's history source (0 if none yet)."""
    column = source(page, "daskval-history").get("n_evaluations", [])
    return float(max(column)) if column else 0.0


def wait_for_evaluations(page: Any, above: float) -> float:
    page.wait_for_function(
        """(above) => {
            const col = window.daskvalColumn('daskval-history', 'n_evaluations');
            return col.length > 0 && Math.max(...col) > above;
        }""",
        arg=above,
        timeout=READ_TIMEOUT_MS,
    )
    return evaluations_seen(page)


def wait_running(handle: Any, timeout: float = 60.0) -> None:
    """Until the run has published a progress event."""
    deadline = time.monotonic() + timeout
    while handle.latest_event is None:
        assert not handle.done(), "the run ended before it published progress"
        assert time.monotonic() < deadline, "no progress event"
        time.sleep(0.1)


def check_live_page(
    context: Any,
    link: str,
    runs: list[tuple[Any, list[float]]],
    screenshot: Path,
) -> None:
    """The page shows every run; each, selected, has its own live numbers."""
    page = open_page(context, link)
    try:
        for handle, weights in runs:
            select_run(page, handle.run_id)
            first = wait_for_evaluations(page, 0)
            wait_for_top(page, top_name(weights))
            # the same source, read again later, holds more evaluations
            second = wait_for_evaluations(page, first)
            assert second > first
            top = source(page, "daskval-top")
            assert top["name"][0] == top_name(weights)
            assert top["value"][0] == pytest.approx(max(weights))
            assert not handle.done()  # all of this happened during the run
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000  # rendered, not blank
    finally:
        page.close()


def test_scheduler_page_shows_concurrent_runs_live(
    browser: Any, client: Client, tmp_path: Path
) -> None:
    weights_a = [float(i) for i in range(N)]
    weights_b = weights_a[::-1]
    first = additive_valuation(weights_a).submit(client, dashboard="scheduler")
    second = additive_valuation(weights_b).submit(client, dashboard="scheduler")
    try:
        link = first.dashboard_link
        assert link is not None and link == second.dashboard_link
        assert link.startswith("http://127.0.0.1:") and link.endswith("/daskval")
        # the page is on the scheduler's own dashboard, next to /status
        assert link.rsplit("/", 1)[0] == client.dashboard_link.rsplit("/", 1)[0]
        wait_running(first)
        wait_running(second)
        check_live_page(
            browser,
            link,
            [(first, weights_a), (second, weights_b)],
            artifacts_dir(tmp_path) / "daskval-scheduler-page.png",
        )
    finally:
        first.cancel()
        second.cancel()
    assert first.latest_event is not None
    assert first.latest_event["status"] == "cancelled"


def slow_concave(weights: list[float], indices: Any) -> float:
    """u(S) = sqrt(sum of the weights in S), after 2 ms: not additive, so each
    permutation gives other marginals and the estimates move all run long."""
    time.sleep(0.002)
    return float(np.sqrt(np.sum(np.asarray(weights)[np.asarray(indices, dtype=int)])))


#: Run in the browser: the rows a DataTable has DRAWN (the text of its
#: SlickGrid cells, top to bottom, found through the shadow roots), and the
#: same moment's rows of its data source. Returns them when every drawn cell
#: shows its source value (numbers to the formatter's precision) and the
#: source differs from ``before`` (when given); null otherwise.
DRAWN_ROWS_JS = """([cls, name, fields, tol, before]) => {
    const deep = (root, selector, out = []) => {
        root.querySelectorAll(selector).forEach((e) => out.push(e));
        root.querySelectorAll("*").forEach((e) => {
            if (e.shadowRoot) deep(e.shadowRoot, selector, out);
        });
        return out;
    };
    const host = deep(document, "." + cls)[0];
    if (!host || !host.shadowRoot) return null;
    const drawn = deep(host.shadowRoot, ".slick-row")
        .map((r) => [r.getBoundingClientRect().top,
                     [...r.querySelectorAll(".slick-cell")].map((c) => c.textContent)])
        .sort((a, b) => a[0] - b[0])
        .map((r) => r[1]);
    const rows = fields.map((f) => window.daskvalColumn(name, f));
    const n = rows[0].length;
    if (n === 0 || drawn.length !== n) return null;
    const source = [...Array(n).keys()].map((i) => rows.map((col) => col[i]));
    const same = JSON.stringify(source) === JSON.stringify(before);
    if (before !== null && same) return null;
    const shows = (cell, value) => typeof value === "number"
        ? !Number.isFinite(value) || Math.abs(parseFloat(cell) - value) <= tol
        : cell === String(value);
    for (let i = 0; i < n; i++) {
        for (let j = 0; j < fields.length; j++) {
            if (!shows(drawn[i][j], source[i][j])) return null;
        }
    }
    return {drawn: drawn, source: source};
}"""

#: the tables of the page: css class, data source, columns (as drawn)
TABLES = {
    "top": ("daskval-top-table", "daskval-top", ["rank", "name", "value", "stderr"]),
    "bottom": (
        "daskval-bottom-table",
        "daskval-bottom",
        ["rank", "name", "value", "stderr"],
    ),
    "workers": (
        "daskval-workers-table",
        "daskval-workers",
        ["worker", "samples_per_second"],
    ),
}


def drawn_rows(page: Any, table: str, before: Any = None) -> dict[str, Any]:
    """Wait until ``table`` (a key of :data:`TABLES`) draws what its source
    holds, the source having changed from ``before``; the drawn and source rows."""
    cls, name, fields = TABLES[table]
    tol = 0.051 if table == "workers" else 1.1e-6  # formats 0.0 and 0.000000
    handle = page.wait_for_function(
        DRAWN_ROWS_JS, arg=[cls, name, fields, tol, before], timeout=READ_TIMEOUT_MS
    )
    rows: dict[str, Any] = handle.json_value()
    return rows


def test_page_tables_redraw_as_the_values_change(browser: Any, client: Client) -> None:
    """What a person sees: the cells the tables have drawn, read twice during
    one run, change with the values (Bokeh 3 kept the first rows drawn)."""
    weights = [float(1 + (5 * i) % N) for i in range(N)]
    utility = dv.FunctionUtility(functools.partial(slow_concave, weights), n=N)
    valuation = dv.ShapleyValuation(
        utility, sampler=dv.PermutationSampler(), stop=dv.MaxSamples(10**6), seed=0
    )
    handle = valuation.submit(client, dashboard="scheduler")
    try:
        wait_running(handle)
        page = open_page(browser, handle.dashboard_link)
        try:
            select_run(page, handle.run_id)
            first = {table: drawn_rows(page, table) for table in TABLES}
            later = {
                table: drawn_rows(page, table, before=first[table]["source"])
                for table in TABLES
            }
            assert not handle.done()  # both readings were during the run
        finally:
            page.close()
    finally:
        handle.cancel()
    # the values move at every read: so must the drawn cells (a worker's
    # rate, drawn to 0.1, may look the same: it is drawn as its source is)
    for table in ("top", "bottom"):
        assert later[table]["drawn"] != first[table]["drawn"], table
    # the drawn cells are the run's: its top point, two workers
    names = {row[1] for row in later["top"]["drawn"]}
    assert str(int(np.argmax(weights))) in names
    assert len(later["workers"]["drawn"]) == 2


def test_client_side_server_shows_a_run_live(
    browser: Any, client: Client, tmp_path: Path
) -> None:
    weights = [float((5 * i) % N) for i in range(N)]  # top point: 5 (weight 11)
    handle = additive_valuation(weights).submit(client, dashboard="client")
    try:
        link = handle.dashboard_link
        assert link is not None
        assert link == fallback.fallback_server().link
        assert link.startswith("http://127.0.0.1:")
        # not the scheduler's dashboard
        assert link.rsplit("/", 1)[0] != client.dashboard_link.rsplit("/", 1)[0]
        wait_running(handle)
        check_live_page(
            browser,
            link,
            [(handle, weights)],
            artifacts_dir(tmp_path) / "daskval-client-page.png",
        )
    finally:
        handle.cancel()


@pytest.fixture(scope="module")
def client_without_dashboard() -> Iterator[Client]:
    """A small in-process cluster whose scheduler serves no dashboard."""
    from distributed import LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            protocol="tcp://",
            host="127.0.0.1",
            # its http server (health, metrics) on loopback, without Bokeh pages
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": False},
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        yield c


def test_scheduler_without_dashboard_falls_back_to_the_client_server(
    client_without_dashboard: Client,
) -> None:
    remote = client_without_dashboard
    with pytest.raises(dv.ValuationError, match="dashboard is off"):
        additive_valuation([1.0] * N).submit(remote, dashboard="scheduler")
    valuation = additive_valuation([float(i) for i in range(N)])
    valuation.stop = dv.MaxSamples(3)
    handle = valuation.submit(remote)  # dashboard=True: falls back
    result = handle.result(timeout=120)
    server = fallback.fallback_server()
    assert handle.dashboard_link == server.link
    # the client-side server got the run's events through the scheduler
    deadline = time.monotonic() + 10
    while (server.store.latest(handle.run_id) or {}).get("status") != "completed":
        assert time.monotonic() < deadline, server.store.runs()
        time.sleep(0.1)
    latest = server.store.latest(handle.run_id)
    assert latest is not None
    assert latest["n_evaluations"] == result.n_evaluations
    assert latest["top"]["name"][0] == str(N - 1)


def test_missing_internals_fall_back(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distributed without the internals the page needs: the run still gets
    a page, from this process (the test clusters' scheduler runs in-process,
    so the patched check is the one the scheduler runs)."""
    from daskval.dashboard import scheduler

    monkeypatch.setattr(
        scheduler,
        "missing_internals",
        lambda s: "distributed.dashboard.core.BokehApplication is missing",
    )
    with Client(client.scheduler.address, set_as_default=False) as other:
        with pytest.raises(dv.ValuationError, match="BokehApplication is missing"):
            additive_valuation([1.0] * N).submit(other, dashboard="scheduler")
        valuation = additive_valuation([1.0] * N)
        valuation.stop = dv.MaxSamples(2)
        handle = valuation.submit(other)
        handle.result(timeout=120)
        assert handle.dashboard_link == fallback.fallback_server().link


def test_static_report_holds_the_runs_values(
    browser: Any, client: Client, tmp_path: Path
) -> None:
    weights = [float((7 * i) % N) for i in range(N)]  # top point: 5 (weight 11)
    valuation = additive_valuation(weights)
    valuation.stop = dv.MaxSamples(40)
    result = valuation.fit(client, progress=False).result_
    assert result is not None
    trace = result.metadata["trace"]
    assert trace["n_evaluations"][-1] == result.n_evaluations
    assert trace["n_samples"][-1] == result.n_samples == 40

    path = result.report(tmp_path / "report.html", top=5)
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    assert "cdn.bokeh.org" not in text  # standalone: BokehJS is inlined
    page = open_page(browser, path.as_uri())
    try:
        values = source(page, "daskval-values")
        assert values["name"] == [str(n) for n in result.names]
        np.testing.assert_allclose(values["value"], result.values)
        np.testing.assert_allclose(values["count"], result.counts)
        top = source(page, "daskval-top")
        assert top["name"][0] == top_name(weights) and len(top["name"]) == 5
        assert source(page, "daskval-bottom")["name"][0] == str(weights.index(0.0))
        shown = source(page, "daskval-trace")
        assert shown["n_evaluations"][-1] == result.n_evaluations
        summary = page.evaluate(
            "() => Bokeh.documents[0].get_model_by_name('daskval-summary').text"
        )
        assert f"{result.n_evaluations:,}" in summary
        screenshot = artifacts_dir(tmp_path) / "daskval-report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000
    finally:
        page.close()


def test_report_arguments_and_results_without_a_trace(tmp_path: Path) -> None:
    result = dv.ValuationResult(
        np.array([0.5, -1.0, 2.0]), np.array([0.1, np.inf, 0.2]), np.array([3, 1, 3])
    )
    path = result.report(str(tmp_path / "plain.html"), title="three players")
    text = path.read_text(encoding="utf-8")
    assert "three players" in text and "daskval-trace" not in text
    with pytest.raises(ValueError, match="top must be >= 1"):
        result.report(tmp_path / "x.html", top=0)
    with pytest.raises(ValueError, match="is a directory"):
        result.report(tmp_path)
    with pytest.raises(ValueError, match="directory does not exist"):
        result.report(tmp_path / "missing" / "x.html")
    with pytest.raises(TypeError, match="path must be a file path"):
        result.report(3)  # type: ignore[arg-type]
