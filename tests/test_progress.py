"""Progress events, the console bar, the page's document, and their arguments.

The browser tests of the page are in test_dashboard.py; these check the
parts without a browser: what an event holds, what the bar prints and when,
what the Bokeh document's sources hold after events, and that bad
``progress``/``dashboard`` arguments fail before any cluster work.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import msgpack
import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import GlyphRenderer
from distributed import Client

import daskval as dv
from daskval.dashboard import console, events, monitor
from daskval.dashboard.page import make_document
from daskval.dashboard.scheduler import page_link
from daskval.dashboard.store import RunStore
from daskval.games import AdditiveGame

DESCRIPTION = events.RunDescription(
    run_id="r1", method="shapley", n_players=30, utility="FunctionUtility", stop="x"
)


def _event(
    values: np.ndarray, stderr: np.ndarray, n_evaluations: int = 100, **kw: Any
) -> dict[str, Any]:
    rates = events.RateTracker()
    rates.observe(0.0, 0, 0.0)
    rates.observe(2.0, n_evaluations, 0.5)
    rates.observe_worker(2.0, "tcp://127.0.0.1:1", 8)
    options: dict[str, Any] = {
        "status": "running",
        "elapsed": 2.0,
        "n_samples": 10,
        "n_evaluations": n_evaluations,
        "n_failed": 3,
        "completion": 0.5,
        "memo_hits": 25,
        "memo_misses": 75,
        "names": [f"p{i}" for i in range(len(values))],
        "failures": {"ValueError: one class": 3},
    }
    options.update(kw)
    return events.progress_event(
        DESCRIPTION, values=values, stderr=stderr, rates=rates, **options
    )


def test_an_event_names_the_extremes_and_summarises_the_rest() -> None:
    values = np.arange(30, dtype=float)
    stderr = np.full(30, 0.5)
    stderr[:4] = np.inf  # fewer than two contributions yet
    event = _event(values, stderr)
    assert event["top"]["name"][:3] == ["p29", "p28", "p27"]
    assert event["bottom"]["name"][:2] == ["p0", "p1"]
    assert len(event["top"]["name"]) == events.EXTREMES
    assert event["bottom"]["stderr"][0] is None  # inf is not JSON
    hist = event["stderr_histogram"]
    assert sum(hist["counts"]) == 26 and hist["n_unknown"] == 4
    assert event["memo_hit_rate"] == pytest.approx(0.25)
    assert event["evaluations_per_second"] == pytest.approx(50.0)
    assert event["eta"] == pytest.approx(2.0)  # half done in 2 s
    assert event["workers"] == {"tcp://127.0.0.1:1": pytest.approx(4.0)}
    assert event["failures"] == {"ValueError: one class": 3}
    # log_event needs msgpack; the pages need JSON
    assert msgpack.unpackb(msgpack.packb(event)) == event
    json.dumps(event, allow_nan=False)
    # a few kilobytes, whatever the number of players
    big = _event(np.random.default_rng(0).random(10**5), np.ones(10**5))
    assert len(msgpack.packb(big)) < 8_000


def test_the_bar_redraws_a_line_in_terminals_and_writes_lines_elsewhere() -> None:
    event = _event(np.arange(30.0), np.ones(30))
    tty = io.StringIO()
    bar = console.ProgressBar(tty, interactive=True)
    bar.message("daskval dashboard: http://127.0.0.1:1/daskval")
    bar.update(event)
    bar.update({**event, "completion": 0.9})  # within 0.25 s: not drawn
    bar.close({**event, "completion": 1.0, "status": "completed"})
    out = tty.getvalue()
    assert out.startswith("daskval dashboard: http://127.0.0.1:1/daskval\n")
    assert "\rdaskval [############............]  50.0% | 100 evals" in out
    assert "90.0%" not in out
    assert "100.0%" in out and "completed" in out and out.endswith("\n")
    assert "ETA 2 s" in out and "3 failed" in out

    pipe = io.StringIO()
    bar = console.ProgressBar(pipe, interactive=False)
    for _ in range(5):
        bar.update(event)  # one line per 10 s, not per event
    bar.close({**event, "status": "completed"})
    assert "\r" not in pipe.getvalue()
    assert len(pipe.getvalue().splitlines()) == 2


def test_the_bar_is_on_in_terminals_only_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(console.PROGRESS_ENV, raising=False)
    assert not console.progress_wanted(None, io.StringIO())
    assert console.progress_wanted(True, io.StringIO())
    monkeypatch.setenv(console.PROGRESS_ENV, "1")
    assert console.progress_wanted(None, io.StringIO())
    assert not console.progress_wanted(False, io.StringIO())
    monkeypatch.setenv(console.PROGRESS_ENV, "0")
    assert not console.progress_wanted(None, io.StringIO())
    monkeypatch.setenv(console.PROGRESS_ENV, "maybe")
    with pytest.raises(ValueError, match="DASKVAL_PROGRESS='maybe'"):
        console.progress_wanted(None)


def _game() -> dv.ShapleyValuation:
    return dv.ShapleyValuation(
        AdditiveGame(np.arange(6.0)), stop=dv.MaxSamples(20), seed=0
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"progress": "yes"}, TypeError, "progress must be True"),
        ({"progress": 1}, TypeError, "progress must be True"),
        ({"dashboard": "web"}, ValueError, "dashboard must be True"),
        ({"dashboard": None}, ValueError, "dashboard must be True"),
    ],
)
def test_bad_arguments_fail_before_cluster_work(
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_cluster(*args: Any, **kw: Any) -> Any:
        raise AssertionError("a client was looked up")

    monkeypatch.setattr("daskval.engine.run.resolve_client", no_cluster)
    with pytest.raises(error, match=match):
        _game().fit(**kwargs)
    with pytest.raises(error, match=match):
        _game().submit(**kwargs)


def test_a_bad_dashboard_address_fails_before_cluster_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "daskval.engine.run.resolve_client",
        lambda *a, **k: pytest.fail("a client was looked up"),
    )
    monkeypatch.setenv("DASKVAL_DASHBOARD_ADDRESS", "localhost")
    with pytest.raises(ValueError, match="DASKVAL_DASHBOARD_ADDRESS='localhost'"):
        _game().fit()
    # the scheduler's page needs no address of ours
    monkeypatch.setenv("DASKVAL_DASHBOARD_ADDRESS", "127.0.0.1:99999")
    with pytest.raises(ValueError, match="expected host:port"):
        _game().fit(dashboard="client")


def test_fit_draws_the_bar_and_prints_the_link(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    _game().fit(client, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"daskval dashboard: http://127\.0\.0\.1:\d+/daskval\n", err)
    assert "daskval [########################] 100.0%" in err
    assert "completed" in err


def test_fit_is_quiet_without_a_terminal(
    client: Client, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(console.PROGRESS_ENV, raising=False)
    monitor._printed.clear()
    for _ in range(2):
        valuation = _game().fit(client)
    err = capsys.readouterr().err
    # the link once per process, no bar
    assert len(re.findall(r"daskval dashboard: http://127\.0\.0\.1", err)) == 1
    assert "daskval [" not in err
    _game().fit(client, progress=False)
    assert capsys.readouterr().err == ""
    assert valuation.result_ is not None


def test_runs_publish_events_unless_the_dashboard_is_off(client: Client) -> None:
    handle = _game().submit(client)
    result = handle.result()
    assert handle.dashboard_link is not None
    assert handle.dashboard_link.endswith("/daskval")
    mine = [
        msg
        for _, msg in client.get_events(events.TOPIC)
        if msg["run_id"] == handle.run_id
    ]
    assert mine and mine[-1]["status"] == "completed"
    assert mine[-1]["n_evaluations"] == result.n_evaluations
    assert mine[-1]["completion"] == 1.0
    assert mine[-1]["top"]["name"][0] == "5"

    quiet = _game().submit(client, dashboard=False)
    quiet.result()
    assert quiet.dashboard_link is None and quiet.latest_event is None
    assert all(
        msg["run_id"] != quiet.run_id for _, msg in client.get_events(events.TOPIC)
    )


def test_the_document_shows_the_selected_runs_events() -> None:
    store = RunStore()
    doc = Document()
    make_document(store, doc)
    names = {"daskval-history", "daskval-top", "daskval-bottom", "daskval-stderr"}
    assert all(doc.get_model_by_name(n) is not None for n in names)
    values = np.arange(30, dtype=float)
    store.add(_event(values, np.ones(30), n_evaluations=100))
    store.add(_event(values, np.ones(30), n_evaluations=180))
    other = {**_event(-values, np.ones(30)), "run_id": "r2", "label": "second"}
    store.add(other)
    store.add("not an event")  # ignored
    session = doc.roots[0]
    select = doc.get_model_by_name("daskval-runs")
    refresh = doc.session_callbacks and next(iter(doc.session_callbacks)).callback
    assert callable(refresh)
    refresh()
    assert select.value == "r2"  # the newest run
    assert [o[0] for o in select.options] == ["r2", "r1"]
    select.value = "r1"
    refresh()
    history = doc.get_model_by_name("daskval-history").data
    assert list(history["n_evaluations"]) == [100.0, 180.0]
    top = doc.get_model_by_name("daskval-top").data
    assert top["name"][0] == "p29"
    assert sum(doc.get_model_by_name("daskval-stderr").data["count"]) == 30
    store.add(_event(values, np.ones(30), n_evaluations=260))
    refresh()
    history = doc.get_model_by_name("daskval-history").data
    assert list(history["n_evaluations"]) == [100.0, 180.0, 260.0]
    assert session is not None


def test_durations_carry_units_and_never_read_as_a_clock_time() -> None:
    """``ETA 12:35`` read as 12:35 o'clock: the bar and the page say minutes."""
    from daskval.dashboard.page import _summary_html

    assert console.format_duration(755) == "12 min 35 s"
    assert console.format_duration(7) == "7 s"
    assert console.format_duration(3 * 3600 + 125) == "3 h 02 min"
    assert console.format_duration(None) == "?"
    assert console.format_duration(float("inf")) == "?"
    event = {**_event(np.arange(30.0), np.ones(30)), "eta": 755.0, "elapsed": 65.0}
    assert "ETA 12 min 35 s" in console.format_bar(event)
    assert "elapsed 1 min 05 s" in console.format_bar(event)
    summary = _summary_html(event)
    assert "<b>ETA</b> 12 min 35 s" in summary
    assert "12:35" not in summary and "12:35" not in console.format_bar(event)


def test_the_rate_plot_draws_failures_per_second_not_their_total() -> None:
    """The per-second axis got the cumulative failure count: now the rise
    of n_failed per second between events."""
    store = RunStore()
    doc = Document()
    make_document(store, doc)
    refresh = next(iter(doc.session_callbacks)).callback
    base = _event(np.arange(30.0), np.ones(30))
    for elapsed, failed in [(1.0, 10), (2.0, 30), (4.0, 30), (5.0, 35)]:
        store.add({**base, "elapsed": elapsed, "n_failed": failed})
    refresh()
    store.add({**base, "elapsed": 7.0, "n_failed": 45})
    refresh()  # a second stream continues from the last row
    history = doc.get_model_by_name("daskval-history").data
    rate = list(history["failed_per_second"])
    assert np.isnan(rate[0])
    assert rate[1:] == [20.0, 0.0, 5.0, 5.0]
    lines = [
        r.glyph.y
        for r in doc.select({"type": GlyphRenderer})
        if getattr(r.glyph, "line_color", None) == "red"
    ]
    assert lines == ["failed_per_second"]


def test_the_page_title_names_the_model_not_a_cut_off_repr() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = dv.Dataset(
        np.arange(20.0).reshape(10, 2), np.arange(10) % 2, np.ones((4, 2)), [0, 1] * 2
    )
    model = make_pipeline(StandardScaler(), LogisticRegression())
    utility = dv.ModelUtility(model, data, scoring="accuracy")
    title = monitor.utility_title(utility.describe())
    assert title == (
        "ModelUtility Pipeline(StandardScaler, LogisticRegression), accuracy"
    )
    # a description without the short name still gives no repr
    legacy = {"class": "ModelUtility", "model": "sklearn.svm._classes.SVC(C=1.0,...)"}
    assert monitor.utility_title(legacy) == "ModelUtility SVC"


def test_page_link_sits_next_to_status() -> None:
    assert page_link("http://127.0.0.1:8787/status") == (
        "http://127.0.0.1:8787/daskval",
        "/",
    )
    assert page_link("https://host:1/proxy/8787/status") == (
        "https://host:1/proxy/8787/daskval",
        "/proxy/8787/",
    )


def test_demo_prints_the_daskval_page(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from daskval.cli import main

    out_csv = tmp_path / "values.csv"
    code = main(
        ["demo", "--samples", "2", "--workers", "1", "-o", str(out_csv), "--top", "2"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"daskval dashboard: http://127\.0\.0\.1:\d+/daskval", out), out


def _listening_ip(port: int) -> set[str]:
    """The addresses this process listens on at ``port``."""
    import os

    import psutil

    return {
        c.laddr.ip
        for c in psutil.Process(os.getpid()).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_dashboards_listen_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import urlsplit

    from daskval.dashboard.fallback import FallbackServer, fallback_server
    from daskval.engine.cluster import embedded_client, shutdown_embedded

    monkeypatch.delenv("DASKVAL_DASHBOARD_ADDRESS", raising=False)
    server = fallback_server()
    assert _listening_ip(server.port) == {"127.0.0.1"}
    # the embedded cluster's dashboard, where the scheduler's page is served
    try:
        link = embedded_client().dashboard_link
        port = urlsplit(link).port
        assert port is not None and _listening_ip(port) == {"127.0.0.1"}
    finally:
        shutdown_embedded()
    # elsewhere only when asked (here: every interface, any port)
    other = FallbackServer("0.0.0.0", 0).start()
    try:
        assert _listening_ip(other.port) == {"0.0.0.0"}
    finally:
        other.stop()


def test_event_extremes_are_the_ends_of_a_stable_sort() -> None:
    """The top/bottom tables select without a full sort; ties and NaNs
    must come out exactly as a stable argsort orders them."""
    from daskval.dashboard.events import _ends_of_stable_order

    rng = np.random.default_rng(0)
    for trial in range(200):
        n, k = int(rng.integers(1, 400)), int(rng.integers(0, 12))
        values = (
            rng.integers(0, 5, n).astype(float) if trial % 2 else rng.normal(size=n)
        )
        if trial % 7 == 0:
            values[rng.integers(0, n)] = np.nan
        k = min(k, n)
        order = np.argsort(values, kind="stable")
        lowest, highest = _ends_of_stable_order(values, k)
        np.testing.assert_array_equal(lowest, order[:k])
        np.testing.assert_array_equal(highest, order[::-1][:k])
