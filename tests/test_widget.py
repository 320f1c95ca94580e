"""The live widgets, kernel side: the model follows the cluster, coalesced and cleaned up.

Pure tests feed event batches to the tables and a fake clock to the throttle; the rest
run a real embedded cluster and assert on the widgets' synced traits, with deadlines.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import threading
import time
import weakref

import pytest

from scatter_magics.notebook.cluster_table import ClusterTable
from scatter_magics.notebook.throttle import Throttle
from scatter_magics.notebook.widget import (
    ClusterWidget,
    FuturesWidget,
    as_widget,
    labelled_keys,
)
from scatter_magics.notebook.widget_html import futures_html
from scatter_magics.notebook.widget_model import FuturesTable
from scatter_magics.sizes import format_bytes
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

A, B = "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"
WORKERS = [{"event": "worker-added", "address": A, "name": "worker-0", "nthreads": 1,
            "memory_limit": 1000},
           {"event": "worker-added", "address": B, "name": "worker-1", "nthreads": 2,
            "memory_limit": 1000}]


def key_event(key, status="finished", workers=(A,), nbytes=10, type_="int"):
    return {"event": "key", "key": key, "status": status, "workers": list(workers),
            "nbytes": nbytes, "type": type_}


def row(widget, key):
    """The widget's row for ``key`` if it is on the page shown."""
    return next((r for r in widget.rows if r["key"] == key), None)


def row_is(widget, key, status, n_workers=None):
    r = row(widget, key)
    return (r is not None and r["status"] == status
            and (n_workers is None or len(r["workers"]) == n_workers))


# ------------------------------------------------------------ pure state ---

def test_table_follows_key_events_and_ignores_other_keys():
    table = FuturesTable(["k1", "k2"], names={"k1": "x"})
    assert table.apply(WORKERS + [key_event("k1", workers=[A, B]), key_event("other")])
    assert table.summary() == {"keys": {"count": 2, "by_status": {"pending": 1, "finished": 1},
                                        "nbytes": 10, "replicas": 2, "replica_nbytes": 20},
                               "n_workers": 2, "by_worker": {"worker-0": 10, "worker-1": 10}}
    assert not table.apply([key_event("k1", workers=[A, B])])  # no change, no flush
    assert not table.apply([key_event("other", status="lost")])
    table.apply([{"event": "worker-removed", "address": B, "name": "worker-1"},
                 key_event("k1", workers=[A])])
    assert table.summary()["keys"]["replica_nbytes"] == 10
    assert table.summary()["n_workers"] == 1
    table.apply([key_event("k2", status="cancelled", workers=[]),
                 key_event("k2", status="released", workers=[])])
    assert table.rows["k2"].status == "cancelled"  # forgotten after a cancel: still cancelled
    table.apply([key_event("k1", status="lost", workers=[])])
    keys = table.summary()["keys"]
    assert keys["by_status"] == {"lost": 1, "cancelled": 1} and keys["count"] == 2
    assert keys["nbytes"] == 0 and keys["replicas"] == 0  # a lost key holds no bytes
    rows, n, page = table.page(0, 10)
    assert [r["name"] for r in rows] == ["x", "k2"] and (n, page) == (2, 0)


def test_table_pages_and_filters():
    keys = [f"k{i}" for i in range(95)]
    table = FuturesTable(keys)
    table.apply([key_event(k) for k in keys[::2]])
    rows, n, page = table.page(0, 10)  # work in progress: the latest changes first
    assert [r["key"] for r in rows] == keys[::2][::-1][:10] and n == 95
    table.apply([key_event(k, status="error") for k in keys[1::2][1:]])
    assert table.active  # k1 is still pending
    rows, n, page = table.page(9, 10)
    assert [r["key"] for r in rows][-1] == "k1" and (n, page) == (95, 9)
    table.apply([key_event("k1", status="pending", workers=())])  # no change
    table = FuturesTable(keys)
    table.apply([key_event(k) for k in keys[::2]])
    rows, n, page = table.page(99, 10)  # clamped to the last page
    assert page == 9 and len(rows) == 5
    rows, n, page = table.page(0, 10, status="pending")
    assert n == 47 and all(r["status"] == "pending" for r in rows)
    assert table.page(0, 10, status="error") == ([], 0, 0)
    table.apply([key_event(k) for k in keys[1::2]])
    assert not table.active  # settled: back to the order given
    rows, n, page = table.page(9, 10)
    assert [r["key"] for r in rows] == keys[90:] and (n, page) == (95, 9)
    rows, _, page = table.page(99, 10)  # clamped to the last page
    assert page == 9 and len(rows) == 5


def test_cluster_table_tracks_metrics_and_sorts_names_naturally():
    clock = [100.0]
    table = ClusterTable(clock=lambda: clock[0])
    added = [dict(WORKERS[0], address=f"tcp://h:{i}", name=f"worker-{i}") for i in (10, 9, 2)]
    assert table.apply(added)
    assert [w["name"] for w in table.summary()["workers"]] == ["worker-2", "worker-9",
                                                               "worker-10"]
    metrics = {"event": "worker-metrics", "address": "tcp://h:9", "memory": 500, "nbytes": 7,
               "nkeys": 1}
    assert table.apply([metrics]) and not table.apply([metrics])
    # The data held comes from key events, not from the heartbeat's (late) nbytes.
    table.apply([key_event("k", workers=["tcp://h:9"], nbytes=70)])
    summary = table.summary()
    assert summary["totals"] == {"n_workers": 3, "nthreads": 3, "memory": 500,
                                 "memory_limit": 3000, "nbytes": 70}
    assert summary["keys"]["by_status"] == {"finished": 1} and summary["departed"] == []
    clock[0] = 101.0
    table.apply([dict(metrics, memory=600)])
    history = table.history.as_dict()
    [nine] = [w for w in history["workers"] if w["name"] == "worker-9"]
    assert nine["nbytes"] == [0, 70] and nine["memory"] == [500, 600]  # a sample a second
    # Workers whose heartbeat has not come are left out, not drawn at 0 (a view opened
    # late drew a dip to 0 in every line at its first live sample).
    assert [w["name"] for w in history["workers"]] == ["worker-9"]
    assert table.apply([{"event": "worker-removed", "address": "tcp://h:9", "name": "worker-9"}])
    assert table.summary()["totals"]["memory"] == 0


class FakeLoop:
    """A manual clock and ``call_later``, like the loop thread's, for the throttle."""

    def __init__(self):
        self.now, self.timers = 0.0, []

    def call_later(self, delay, fn):
        timer = [self.now + delay, fn, False]
        self.timers.append(timer)

        class Handle:
            def cancel(self):
                timer[2] = True
        return Handle()

    def advance(self, dt):
        end = self.now + dt
        while True:
            due = [t for t in self.timers if not t[2] and t[0] <= end]
            if not due:
                break
            timer = min(due, key=lambda t: t[0])
            self.timers.remove(timer)
            self.now = timer[0]
            timer[1]()
        self.now = end


def _luminance(hex_colour: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(int(hex_colour[i:i + 2], 16) / 255) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_saved_status_colours_read_in_any_theme():
    # A saved output is opened in the reader's theme, light or dark, and JupyterLab's
    # sanitizer drops color-mix(): each status is a badge, white text on a plain colour
    # that the badge itself paints, at least AA (4.5:1) whatever the page behind it.
    import re

    from scatter_magics.notebook.widget_html import STATUS_STYLE, status_html

    for status in STATUS_STYLE:
        html = status_html(status)
        assert "color-mix" not in html and "var(" not in html
        background = re.search(r"background-color:(#[0-9a-f]{6})", html).group(1)
        assert "color:#fff" in html
        ratio = 1.05 / (_luminance(background) + 0.05)
        assert ratio >= 4.5, (status, background, ratio)


def test_throttle_coalesces_a_flood_and_always_sends_the_last_state():
    loop, flushed, resent = FakeLoop(), [], []
    state = {"v": 0}
    throttle = Throttle(lambda: flushed.append((loop.now, state["v"])), loop.call_later,
                        interval=0.1, settle=0.5, resend=lambda: resent.append(loop.now),
                        clock=lambda: loop.now)
    for i in range(1, 1001):  # one poke per millisecond for a second
        state["v"] = i
        throttle.poke()
        loop.advance(0.001)
    loop.advance(2)
    times = [t for t, _ in flushed]
    assert flushed[0] == (0.0, 1)  # leading edge: the first change shows at once
    assert flushed[-1][1] == 1000  # trailing edge: the final state is sent
    assert len(flushed) <= 12 and all(b - a >= 0.1 - 1e-9 for a, b in zip(times, times[1:]))
    assert resent == [pytest.approx(times[-1] + 0.5)]  # one settled re-send, after the last


def test_throttle_cancel_drops_pending_work():
    loop, flushed = FakeLoop(), []
    throttle = Throttle(lambda: flushed.append(1), loop.call_later, resend=lambda: flushed.append(2),
                        clock=lambda: loop.now)
    throttle.poke()
    throttle.poke()
    throttle.cancel()
    loop.advance(5)
    assert flushed == [1]


def test_format_bytes():
    assert [format_bytes(n) for n in (None, 0, 1023, 1536, 10 * 2**20, 500 * 2**30)] == \
        ["", "0 B", "1023 B", "1.5 KiB", "10 MiB", "500 GiB"]


def test_labelled_keys_names_dict_entries():
    assert labelled_keys({"a": "k1", "b": ["k2", "k3"]}) == [
        ("a", "k1", None), ("b[0]", "k2", None), ("b[1]", "k3", None)]
    assert labelled_keys(["k1", ("k2",)]) == [(None, "k1", None), (None, "k2", None)]
    with pytest.raises(TypeError, match="not int"):
        labelled_keys([1])


def test_static_html_escapes_and_marks_statuses():
    table = FuturesTable(["<k>"], names={"<k>": "<script>alert(1)</script>"})
    table.apply(WORKERS + [key_event("<k>", status="lost", workers=[])])
    html = futures_html(table.summary(), table.page(0, 10)[0], table.worker_names, live=False)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "⚠ lost" in html and "not live" in html


# ------------------------------------------------------------ a real cluster ---

def test_scatter_and_broadcast_show_placement(client):
    before = set(threading.enumerate())
    one = client.scatter("one-worker", hash=False)
    everywhere = client.scatter("everywhere", broadcast=True, hash=False)
    widget = FuturesWidget(client, {"one": one, "everywhere": everywhere})
    try:
        wait_for(lambda: row_is(widget, one.key, "finished", 1)
                 and row_is(widget, everywhere.key, "finished", 2), what="both rows finished")
        assert set(row(widget, everywhere.key)["workers"]) == set(client.scheduler_info()["workers"])
        assert row(widget, one.key)["name"] == "one" and row(widget, one.key)["type"] == "str"
        assert sorted(widget.worker_names.values()) == ["worker-0", "worker-1"]
        assert widget.summary["keys"]["by_status"]["finished"] == 2 \
            and widget.summary["keys"]["nbytes"] > 0
        data, _ = widget._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in data
        assert "everywhere" in data["text/html"] and "● finished" in data["text/html"]
    finally:
        widget.close()
    assert set(threading.enumerate()) <= before  # the widget starts no thread of its own


def test_tuple_keys_follow_their_events_and_show_as_text(client):
    futures = client.scatter({("chunk", 0): "first", ("chunk", 1): "second"}, broadcast=True)
    widget = FuturesWidget(client, futures)
    try:
        wait_for(lambda: row_is(widget, "('chunk', 0)", "finished", 2)
                 and row_is(widget, "('chunk', 1)", "finished", 2), what="both rows finished")
        assert row(widget, "('chunk', 1)")["name"] == "('chunk', 1)"
        data, _ = widget._repr_mimebundle_()
        assert "(&#x27;chunk&#x27;, 0)" in data["text/html"]
    finally:
        widget.close()


def test_replicate_adds_workers_as_copies_land(client):
    future = client.scatter("replicate-me", workers=["worker-0"], hash=False)
    widget = FuturesWidget(client, [future])
    try:
        wait_for(lambda: row_is(widget, future.key, "finished", 1), what="one replica")
        client.replicate([future])
        wait_for(lambda: row_is(widget, future.key, "finished", 2), what="two replicas")
    finally:
        widget.close()


def test_release_and_cancel(make_client):
    client = make_client(n_workers=1)  # its worker stays busy with the cancelled sleep
    kept = client.scatter("released soon", hash=False)
    slow = client.submit(time.sleep, 30, pure=False)
    queued = client.submit(time.sleep, 30, pure=False)  # one thread: waits behind `slow`
    widget = FuturesWidget(client, [kept, slow, queued])
    try:
        wait_for(lambda: row_is(widget, kept.key, "finished") and row_is(widget, slow.key, "running")
                 and row_is(widget, queued.key, "pending"), what="finished, running and queued")
        assert row(widget, slow.key)["name"] == "sleep"  # a task is named by its function
        assert slow.status == "pending"  # the Future keeps Dask's statuses
        kept.release()
        wait_for(lambda: row_is(widget, kept.key, "released", 0), what="released")
        client.cancel([slow, queued])
        wait_for(lambda: row_is(widget, slow.key, "cancelled"), what="cancelled")
        wait_for(lambda: widget.summary["keys"]["by_status"].get("cancelled") == 2, what="both cancelled")
        assert widget.summary["keys"]["by_status"] == {"cancelled": 2, "released": 1}
    finally:
        widget.close()


def test_error_status(client):
    failing = client.submit(int, "not a number")
    widget = FuturesWidget(client, [failing])
    try:
        wait_for(lambda: row_is(widget, failing.key, "error"), what="error")
    finally:
        widget.close()


def test_worker_killed_loses_only_data_it_held_alone(make_client):
    client = make_client(n_workers=2)
    # Not small (the client would send it again) nor in shared memory (it would survive).
    alone = client.scatter(b"only on worker-0" * 10_000, workers=["worker-0"], hash=False)
    everywhere = client.scatter("on both", broadcast=True, hash=False)
    futures = FuturesWidget(client, [alone, everywhere])
    cluster = ClusterWidget(client)
    try:
        wait_for(lambda: row_is(futures, everywhere.key, "finished", 2), what="broadcast")
        wait_for(lambda: len(cluster.workers) == 2, what="two workers")
        os.kill(client.cluster.processes["worker-0"].pid, signal.SIGKILL)
        # Pushed by the scheduler's events (nothing here re-renders or polls the cluster);
        # how fast is a benchmark's business, not an assertion's.
        wait_for(lambda: row_is(futures, alone.key, "lost", 0), timeout=10, what="lost")
        assert row(futures, everywhere.key)["status"] == "finished"
        # A broadcast stays on every worker: the replacement receives a replica.
        wait_for(lambda: sorted(futures.worker_names[a] for a in row(futures, everywhere.key)[
            "workers"]) == ["worker-1", "worker-2"], what="the broadcast on the replacement")
        # The dead worker is replaced (supervision), under a name that says whom it replaced.
        wait_for(lambda: [w["name"] for w in cluster.workers] == ["worker-1", "worker-2"],
                 what="worker-0 gone, worker-2 in its place")
        assert cluster.workers[1]["note"] == "replaces worker-0, which was killed by SIGKILL"
    finally:
        futures.close()
        cluster.close()


def test_cluster_widget_shows_memory_and_keys(client):
    data = client.scatter(b"x" * 100_000, broadcast=True, hash=False)
    widget = ClusterWidget(client)
    try:
        wait_for(lambda: len(widget.workers) == 2
                 and all(w["nbytes"] >= 100_000 and w["nkeys"] >= 1 and w["memory"] > 0
                         for w in widget.workers), what="metrics")
        assert widget.totals["nthreads"] == 2 and widget.totals["memory_limit"] > 0
        assert "worker-0" in widget._repr_mimebundle_()[0]["text/html"]
    finally:
        widget.close()
        data.release()


def test_ten_thousand_futures_are_paged_and_coalesced(client):
    futures = client.scatter(list(range(10_000)), hash=False)
    widget = FuturesWidget(client, futures, page_size=50)
    try:
        assert widget.summary["keys"]["by_status"]["finished"] == 10_000
        assert len(widget.rows) == 50 and widget.n_matching == 10_000
        state = widget.get_state()
        assert len(json.dumps(state["rows"])) < 20_000  # one page travels, not 10,000 rows
        widget.set_view(page=10**6)  # clamped to the last page
        wait_for(lambda: widget.page == 199 and widget.rows[-1]["key"] == futures[-1].key,
                 what="last page")
        summaries = []
        widget.observe(lambda change: summaries.append(time.monotonic()), names="summary")
        start = time.monotonic()
        client.cancel(futures)
        wait_for(lambda: widget.summary["keys"]["by_status"].get("cancelled") == 10_000, what="all cancelled")
        elapsed = time.monotonic() - start
        assert len(summaries) <= 10 * elapsed + 2, (len(summaries), elapsed)
        widget.set_view(status="finished")
        wait_for(lambda: widget.status_filter == "finished" and widget.n_matching == 0,
                 what="empty filter")
    finally:
        widget.close()


def test_closed_widget_unsubscribes(client):
    future = client.scatter("watched", hash=False)
    widget = FuturesWidget(client, [future])
    probe = FuturesWidget(client, [future.key])  # a second subscriber, still open
    try:
        wait_for(lambda: row_is(widget, future.key, "finished"), what="finished")
        widget.close()
        assert not widget.live and widget.comm is None
        future.release()
        wait_for(lambda: row_is(probe, future.key, "released"), what="released")
        assert row(widget, future.key)["status"] == "finished"  # the closed one did not move
    finally:
        probe.close()


def test_widget_outlives_its_client_without_leaks():
    from scatter_magics import Client

    before = set(threading.enumerate())
    with Client(n_workers=1) as client:
        widget = as_widget(client.scatter(["a", "b"], hash=False))
        cluster = as_widget(client)
        assert isinstance(widget, FuturesWidget) and isinstance(cluster, ClusterWidget)
    wait_for(lambda: set(threading.enumerate()) <= before, what="threads to end")
    data, _ = widget._repr_mimebundle_()  # still displays, as a snapshot
    assert not widget.live and "not live" in data["text/html"]
    widget.set_view(page=1)  # no loop left: flushed on this thread, no error
    widget.close()
    cluster.close()


# ------------------------------------------------------------ a real kernel, no browser ---

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@pytest.mark.timeout(120)
def test_kernel_shows_scatter_result_as_live_widget_with_html_fallback():
    """``%scatter x --broadcast`` in a kernel displays the widget (and static HTML);
    updates made while a later cell runs are stored by nbclient."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    cells = [
        "%load_ext scatter_magics\n"
        "%config ScatterMagics.n_workers = 2\n"
        "from scatter_magics.notebook.widget import FuturesWidget",
        # Over 16 KiB: the client keeps no copy of it, only the magics can send it again.
        "x = 'broadcast me' * 2000\n%scatter x --broadcast",
        "x = 'changed'  # so its data cannot be sent again from the notebook\n"
        "import os, signal, time\n"
        "from ipywidgets.widgets.widget import _instances\n"
        "from scatter_magics import get_client\n"
        "client = get_client()\n"
        "widget = next(w for w in _instances.values() if isinstance(w, FuturesWidget))\n"
        "for proc in client.cluster.processes.values():\n"
        "    os.kill(proc.pid, signal.SIGKILL)\n"
        "deadline = time.monotonic() + 20\n"
        "while widget.rows[0]['status'] != 'lost' and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "print(widget.rows[0]['status'])\n"
        "client.close()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=90, kernel_name="python3").execute()
    displayed = next(o for o in nb.cells[1].outputs  # (a progress bar may come first)
                     if WIDGET_VIEW in o.get("data", {}) and "text/html" in o["data"])
    html = displayed["data"]["text/html"]
    assert "broadcast me" not in html  # the table shows what the value is, never the value
    # Shown finished on two workers, it ended lost with both, and the client closed: the
    # saved output says how it ended (issue 17 item 9), in HTML and in text.
    assert "lost" in html and "worker-0, worker-1 died" in html and "not live" in html
    assert "finished" not in html
    text = displayed["data"]["text/plain"]
    assert text.startswith("1 future · lost 1") and "worker-0, worker-1 died" in text
    assert nb.cells[2].outputs[-1]["text"].strip() == "lost"
    model_id = displayed["data"][WIDGET_VIEW]["model_id"]
    state = nb.metadata["widgets"][WIDGET_STATE]["state"][model_id]["state"]
    assert state["kind"] == "futures" and state["rows"][0]["status"] == "lost"
    assert state["rows"][0]["name"] == "x" and state["summary"]["keys"]["by_status"]["lost"] == 1


class FakeClient:
    """Just enough of a backend (scatter_magics/backend.py): one snapshot batch."""

    kind, running = "fake", True

    def __init__(self, snapshot):
        self.snapshot, self.subscriptions = snapshot, []

    def subscribe_events(self, callback):
        subscription = FakeSubscription()
        self.subscriptions.append((subscription, callback))
        loop = asyncio.new_event_loop()

        async def deliver():
            callback(self.snapshot)

        loop.run_until_complete(deliver())
        loop.close()
        return subscription


class FakeSubscription:
    closed = False

    def close(self):
        self.closed = True


def test_widget_holds_its_client_weakly():
    client = FakeClient(WORKERS + [key_event("k1", workers=[A, B])])
    widget = FuturesWidget(client, ["k1"], names=["x"])
    (subscription, _), = client.subscriptions
    assert widget.rows[0]["status"] == "finished" and widget.rows[0]["name"] == "x"
    ref = weakref.ref(client)
    del client
    gc.collect()
    assert ref() is None  # the widget did not keep it (nor the cluster it may own) alive
    assert "not live" in widget._repr_mimebundle_()[0]["text/html"] and not widget.live
    widget.close()


def test_closing_the_widget_closes_its_subscription():
    client = FakeClient(WORKERS)
    widget = FuturesWidget(client, ["k1"])
    (subscription, _), = client.subscriptions
    widget.close()
    assert subscription.closed and not widget.live


# ------------------------------------------------------------ the whole life of what they show ---

def test_closing_the_client_marks_every_open_widget_not_live_at_once():
    from scatter_magics import Client

    client = Client(n_workers=1)
    try:
        x = client.scatter("x", hash=False)
        widgets = [FuturesWidget(client, [x]), FuturesWidget(client, [x.key]), ClusterWidget(client)]
        assert all(w.live for w in widgets)
        client.close()
        # No wait: the "closed" event is pushed before close() returns.
        assert [w.live for w in widgets] == [False, False, False]
        assert row(widgets[0], x.key)["status"] == "finished"  # the last state seen, kept
        assert "not live" in widgets[2]._repr_mimebundle_()[0]["text/html"]
    finally:
        client.close()
        for w in widgets:
            w.close()


def test_mark_not_live_stops_only_that_clients_widgets():
    from scatter_magics.notebook.widget import mark_not_live

    one, two = FakeClient(WORKERS), FakeClient(WORKERS)
    mine, other = FuturesWidget(one, ["k1"]), FuturesWidget(two, ["k1"])
    try:
        assert mark_not_live(one) == 1 and mark_not_live(one) == 0
        assert not mine.live and other.live
        assert client_subscriptions_closed(one) and not client_subscriptions_closed(two)
    finally:
        mine.close()
        other.close()


def client_subscriptions_closed(client) -> bool:
    return all(subscription.closed for subscription, _ in client.subscriptions)


def test_a_row_says_which_of_its_workers_died():
    table = FuturesTable(["k1", "k2"])
    table.apply(WORKERS + [key_event("k1", workers=[A, B]), key_event("k2", workers=[A])])
    table.apply([{"event": "worker-removed", "address": A, "name": "worker-0"},
                 key_event("k1", workers=[B]), key_event("k2", status="lost", workers=[])])
    rows = {r["key"]: r for r in table.page(0, 10)[0]}
    assert rows["k1"]["died"] == [A] and rows["k1"]["workers"] == [B]
    assert rows["k2"]["died"] == [A] and rows["k2"]["status"] == "lost"
    html = futures_html(table.summary(), list(rows.values()), table.worker_names)
    assert "worker-0 died" in html
    assert table.summary()["by_worker"] == {"worker-1": 10}

    # A task running on a worker that dies is rerun elsewhere: pending again, and why.
    table = FuturesTable(["t"])
    running = {"event": "key", "key": "t", "status": "running", "workers": [],
               "processing_on": A, "nbytes": None, "type": None}
    table.apply(WORKERS + [running])
    table.apply([{"event": "worker-removed", "address": A, "name": "worker-0"},
                 dict(running, status="pending", processing_on=B)])
    (r,), _, _ = table.page(0, 10)
    assert r["status"] == "pending" and r["died"] == [A]
    table.apply([key_event("t", workers=[B])])
    assert table.page(0, 10)[0][0]["died"] == []  # computed again: the loss is history


def test_cluster_table_counts_keys_by_status_and_names_what_each_worker_holds():
    labels = {f"k{i}": f"rows[{i}]" for i in range(10_000)} | {"df-1": "df"}
    table = ClusterTable(lambda: labels)
    table.apply(WORKERS + [key_event(f"k{i}", workers=[(A, B)[i % 2]]) for i in range(10_000)]
                + [key_event("df-1", workers=[A, B]),
                   {"event": "key", "key": "len-0123456789abcdef", "status": "running",
                    "workers": [], "processing_on": B, "nbytes": None, "type": None}])
    rows = {w["name"]: w for w in table.summary()["workers"]}
    assert rows["worker-0"]["by_status"] == {"finished": 5001}
    assert rows["worker-1"]["by_status"] == {"running": 1, "finished": 5001}
    assert rows["worker-0"]["holds"] == [["rows[…]", 5000], ["df", 1]]  # compact at 10,000 keys
    assert table.summary()["keys"]["by_status"] == {"running": 1, "finished": 10_001}
    assert table.summary()["keys"]["replicas"] == 10_002  # df-1 is on both workers
    table.apply([{"event": "worker-removed", "address": A, "name": "worker-0"}])
    assert [w["name"] for w in table.summary()["workers"]] == ["worker-1"]
    assert table.summary()["departed"] == ["worker-0"]


# ------------------------------------------------------------ progress bars ---

def test_progress_widget_appears_only_for_long_work_and_settles():
    from scatter_magics.notebook.progress_bar import ProgressBar, WidgetView

    shown = []
    publish = lambda bundle, display_id, update: shown.append((bundle, display_id, update))  # noqa: E731
    view = WidgetView(publish)
    with ProgressBar("%scatter x", view, delay=60) as progress:
        progress("hash", 10, 100)
    assert shown == [] and not progress.shown  # quick: nothing on screen

    view = WidgetView(publish)
    with ProgressBar("%scatter x", view, delay=0, interval=0.01) as progress:
        progress("hash", 2**20, 4 * 2**20)
        wait_for(lambda: view.label.value.startswith("%scatter x: hashing 1 MiB / 4 MiB"),
                 what="the bar to show hashing")
        assert view.bar.value == 0.25 and "/s" in view.label.value and "s left" in view.label.value
        progress("transfer", 4 * 2**20, 4 * 2**20)
    assert view.bar.value == 1.0 and view.bar.bar_style == "success"
    assert view.label.value.startswith("%scatter x: done in ") and "4 MiB transferred" in view.label.value
    (first, id1, update1), (last, id2, update2) = shown  # shown once, then its text updated
    assert (update1, update2) == (False, True) and id1 == id2
    assert first[WIDGET_VIEW]["model_id"] == last[WIDGET_VIEW]["model_id"] == view.box.model_id
    assert first["text/plain"].startswith("%scatter x: hashing")
    assert last["text/plain"] == view.label.value  # what a page without widgets shows


def test_a_bar_builds_its_widgets_only_when_it_shows():
    """Every %scatter and %gather on Dask has a bar shown by time: one that ends before
    its delay (almost all) must not build three ipywidgets and open their comms."""
    from scatter_magics.notebook.progress_bar import ProgressBar, WidgetView

    made = []

    def make_view():
        made.append(WidgetView(lambda bundle, display_id, update: None))
        return made[-1]

    with ProgressBar("%gather x", make_view=make_view, delay=60) as progress:
        progress("gather", None, None)
    assert made == [] and not progress.shown
    with ProgressBar("%gather x", make_view=make_view, delay=0) as progress:
        progress("gather", None, None)
    assert len(made) == 1 and progress.shown
    assert made[0].label.value.startswith("%gather x: done in ")


def test_only_data_whose_size_is_known_counts_as_too_small_for_a_bar():
    """%scatter makes no bar for data known to be under 64 KiB; anything whose size it
    cannot tell cheaply (containers, arrays of Python objects) may be large."""
    np = pytest.importorskip("numpy")
    from scatter_magics.notebook.progress_bar import SMALL, known_small

    assert known_small([1, 2.5, None, True, "text", b"bytes", np.float64(1), np.ones(10)])
    assert not known_small([np.ones(SMALL // 8)])  # exactly 64 KiB
    assert not known_small([b"x" * (SMALL // 2), b"y" * (SMALL // 2)])  # together
    assert not known_small(["é" * (SMALL // 4)])  # up to 4 bytes a character
    assert not known_small([10 ** 200_000])  # a Python int can be large
    assert not known_small([[1, 2, 3]])  # a list: its size is not known
    assert not known_small([np.array(["x"], dtype=object)])  # nbytes counts pointers


def test_progress_bar_says_where_ctrl_c_stopped_it():
    from scatter_magics.notebook.progress_bar import ProgressBar, WidgetView

    view = WidgetView(lambda bundle, display_id, update: None)
    with pytest.raises(KeyboardInterrupt):
        with ProgressBar("%gather res", view, delay=0) as progress:
            progress("wait", 1, 4)
            raise KeyboardInterrupt
    assert "interrupted after" in view.label.value and "waiting for tasks" in view.label.value
    assert view.bar.bar_style == "danger"
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "scatter-magics-progress"],
             what="the drawing thread to end once no bar is left")


def test_engine_reports_every_stage_of_a_large_scatter_and_gather(client):
    np = pytest.importorskip("numpy")
    seen = []
    array = np.arange(3 * 2**20 // 8)
    future = client.scatter(array, progress=lambda *report: seen.append(report))
    stages = [stage for stage, _, _ in seen]
    assert stages.index("hash") < stages.index("serialize") < stages.index("copy") \
        < stages.index("transfer")
    assert ("hash", array.nbytes, None) in seen and ("copy", array.nbytes, array.nbytes) in seen
    assert seen[-1][0] == "transfer" and seen[-1][1] == seen[-1][2] >= array.nbytes
    seen.clear()
    slow = client.submit(time.sleep, 0.1, pure=False)
    client.gather([future, slow], progress=lambda *report: seen.append(report))
    assert seen[0] == ("wait", 1, 1) and seen[-1][0] == "transfer"


# ------------------------------------------------------------ %cluster in a kernel ---

def test_cluster_magic_in_a_kernel_is_the_live_widget_and_follows_a_dead_worker(tmp_path):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from scatter_magics.notebook.widget import install_display

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config, ipython_dir=str(tmp_path))
    shell.run_line_magic("load_ext", "scatter_magics")
    magics = shell.magics_manager.registry["ScatterMagics"]
    try:
        shell.kernel = object()  # as in ipykernel: the widget display applies
        install_display(shell, magics.names.labels)
        shell.run_line_magic("cluster", "start -n 2")
        client = shell.user_ns["client"]
        shell.user_ns["rows"] = list(range(10_000))
        shell.run_line_magic("scatter", "rows --split")
        summary = shell.run_line_magic("cluster", "")
        data, _ = shell.display_formatter.format(summary)
        assert "application/vnd.jupyter.widget-view+json" in data
        assert data["text/plain"] == repr(summary)  # the static table: text ...
        assert data["text/html"] == summary._repr_html_()  # ... and HTML fallbacks
        assert "rows[…] ×5000" in data["text/html"]  # compact at 10,000 keys
        from ipywidgets.widgets.widget import _instances

        model_id = data["application/vnd.jupyter.widget-view+json"]["model_id"]
        widget = _instances[model_id]
        assert [w["name"] for w in widget.workers] == ["worker-0", "worker-1"]
        assert widget.workers[0]["holds"] == [["rows[…]", 5000]]
        assert widget.totals["keys"]["by_status"] == {"finished": 10_000}
        os.kill(client.cluster.processes["worker-0"].pid, signal.SIGKILL)
        # Its replacement (worker-2, forked in milliseconds) may already be listed.
        wait_for(lambda: "worker-0" not in [w["name"] for w in widget.workers],
                 what="worker gone")
        assert "worker-1" in [w["name"] for w in widget.workers]
        assert widget.totals["departed"] == ["worker-0"] and widget.live
        shell.run_line_magic("cluster", "stop")
        assert not widget.live
    finally:
        shell.run_line_magic("unload_ext", "scatter_magics")
        InteractiveShell.clear_instance()


@pytest.mark.timeout(120)
def test_nbclient_stores_not_live_for_every_widget_after_cluster_stop():
    """As a saved notebook shows it: after ``%cluster stop`` no widget claims to be live."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    cells = ["%load_ext scatter_magics\n%config ScatterMagics.n_workers = 1",
             "x = 'kept'\n%scatter x", "%cluster", "%cluster stop"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=90, kernel_name="python3").execute()
    states = nb.metadata["widgets"][WIDGET_STATE]["state"]
    shown = {}
    for cell in nb.cells[1:3]:
        view = next(o for o in cell.outputs if WIDGET_VIEW in o.get("data", {}))
        state = states[view["data"][WIDGET_VIEW]["model_id"]]["state"]
        shown[state["kind"]] = state
    assert set(shown) == {"futures", "cluster"}
    assert not shown["futures"]["live"] and not shown["cluster"]["live"]
    assert shown["futures"]["rows"][0]["status"] == "finished"  # the last state seen
    cluster_view = next(o for o in nb.cells[2].outputs if WIDGET_VIEW in o.get("data", {}))
    assert cluster_view["data"]["text/plain"].startswith("Cluster tcp://")  # static fallback
    assert "worker-0" in cluster_view["data"]["text/html"]


def test_progress_bar_neither_shows_for_a_cluster_start_nor_stands_still():
    from scatter_magics.notebook.progress_bar import ProgressBar, WidgetView

    shown = []
    publish = lambda bundle, display_id, update: shown.append(update)  # noqa: E731
    with ProgressBar("%scatter x", WidgetView(publish), delay=0.05, interval=0.01) as bar:
        bar("start", 0, None)  # starting a cluster is not the data's work
        time.sleep(0.3)  # (no condition to wait for: that nothing happens is the point)
        assert shown == []
        bar.restart_clock()
        bar("transfer", 1, 10)
        wait_for(lambda: shown == [False], what="the bar to show for the data")
    assert shown == [False, True]

    shown.clear()
    with ProgressBar("%gather y", WidgetView(publish), delay=0.05) as bar:
        bar.quiet()  # an adapter that reports nothing: no bar that would only stand still
        time.sleep(0.3)
    assert shown == [] and not bar.shown
