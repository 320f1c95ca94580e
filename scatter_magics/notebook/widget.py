"""Live notebook widgets: every future's status and placement, and the cluster's workers.

Both widgets are anywidgets (``static/widget.js``, no build step). They subscribe to the
client's event stream (``docs/internals.md``), keep the latest state per key on the
client's loop thread, and push coalesced updates to their synced traits at most
``1 / interval`` times a second, plus a settled re-send (IOPub drops messages under a
flood, so a per-event update would both lag and lose the final state). Where no widget
front end exists (nbconvert, GitHub) their mimebundle carries a static HTML table.

>>> from scatter_magics import Client
>>> from scatter_magics.notebook.widget import FuturesWidget, ClusterWidget
>>> with Client(n_workers=2) as client:                       # doctest: +SKIP
...     x = client.scatter(42, broadcast=True)
...     FuturesWidget(client, [x], names=["x"]).rows[0]["status"]
'finished'
"""

from __future__ import annotations

import logging
import pathlib
import threading
import weakref
from collections.abc import Callable, Mapping

import anywidget
import traitlets as t

from ..backend import (
    backend_for,
    client_class_names,
    client_types,
    future_class_names,
    future_types,
)
from ..errors import ProtocolError
from .cluster_table import ClusterTable, shared_memory_text
from .display import ClusterSummary, futures_text
from .esm import widget_esm
from .feed import CLIENT_CLOSED, Feed
from .static_outputs import StaticOutputs
from .widget_html import cluster_html, futures_html
from .widget_keys import (
    _iter_futures,
    _names_by_key,
    _only_futures,
    _page_size,
    labelled_keys,
)
from .widget_model import STATUSES, FuturesTable

logger = logging.getLogger(__name__)

_STATIC = pathlib.Path(__file__).parent / "static"
HTML_ROWS = 100  # rows in the static HTML fallback; the summary counts all of them
TEXT_ROWS = 20  # rows in the text fallback


_OPEN: "weakref.WeakSet[_LiveWidget]" = weakref.WeakSet()  # every widget still following


def mark_not_live(client, reason: str = CLIENT_CLOSED) -> int:
    """Mark every open widget following ``client`` "not live" now, saying ``reason``;
    return how many.

    A client that closes says so in its event stream (``closed``, with a ``reason`` when
    its cluster went away), which is how widgets usually learn it; ``%cluster stop``
    calls this as well, so a backend whose stream ends without that event still leaves
    no widget claiming to be live.
    """
    stale = [w for w in list(_OPEN) if w._feed.belongs_to(client)]
    for widget in stale:
        widget.stop_following(reason)
    return len(stale)


class _LiveWidget(anywidget.AnyWidget):
    """What both widgets share: the static files, the feed, closing, the HTML fallback."""

    _esm = widget_esm()  # static/widget.js with the shared modules it imports pasted in
    _css = _STATIC / "widget.css"
    kind = t.Unicode().tag(sync=True)
    live = t.Bool(True).tag(sync=True)
    not_live_reason = t.Unicode("").tag(sync=True)  # shown as "not live: <reason>"

    def _start_feed(self, client, interval: float, settle: float | None) -> None:
        self._lock = threading.Lock()  # the table is written on the loop thread, read anywhere
        self._feed = Feed(client, self._apply, self._flush_live, self._resend, interval, settle,
                           client_closed=self._client_closed)
        _OPEN.add(self)
        if self.comm is not None:  # the front end may close the comm: stop listening then
            self.comm.on_close(lambda _msg: self._feed.close())

    def _flush_live(self) -> None:
        self._flush()
        feed = getattr(self, "_feed", None)  # None: the snapshot, inside Feed()
        self.live = (feed is None or feed.live) and not self._table.closed

    def stop_following(self, reason: str = CLIENT_CLOSED) -> None:
        """Stop following the client and show the last state, marked not live (saying
        ``reason``); any thread."""
        self._feed.close()
        with self._lock:
            self._table.closed = True
        _OPEN.discard(self)
        self._flush()
        self.not_live_reason = self.not_live_reason or reason
        self.live = False

    def _apply(self, batch: list) -> bool:
        with self._lock:
            return self._table.apply(batch)

    def _resend(self) -> None:
        self.send_state(self._synced_state)

    def _client_closed(self) -> None:
        self.not_live_reason = self._feed.closed_reason
        self.live = False  # the view then says "not live: <why>"

    def close(self) -> None:
        """Unsubscribe from the event stream and close the widget (and its views)."""
        feed = getattr(self, "_feed", None)
        if feed is not None:
            feed.close()
        _OPEN.discard(self)
        self.live = False
        super().close()

    def _repr_mimebundle_(self, **kwargs):
        # The client may have closed since the last event.
        self.live = self._feed.live and not self._table.closed
        data, metadata = super()._repr_mimebundle_(**kwargs)
        data["text/plain"], data["text/html"] = self.to_text(), self.to_html()
        return data, metadata


class FuturesWidget(_LiveWidget):
    """One row per future: name, key, type, size, status, and the workers holding it.

    ``futures`` is a Future, a (nested) list/tuple/set/dict of them, or keys; a dict's
    keys name its futures, ``names`` (a list in the same order, or ``{key: name}``)
    overrides that. The widget holds keys, not Futures, so it never keeps data alive.
    The table is paged on the kernel side: only ``page_size`` rows travel per update.

    >>> w = FuturesWidget(client, client.scatter(list(range(10_000))))  # doctest: +SKIP
    >>> w.summary["counts"]["finished"], len(w.rows)                   # doctest: +SKIP
    (10000, 25)
    """

    rows = t.List().tag(sync=True)
    summary = t.Dict().tag(sync=True)
    worker_names = t.Dict().tag(sync=True)
    page = t.Int(0).tag(sync=True)
    page_size = t.Int(25).tag(sync=True)
    n_matching = t.Int(0).tag(sync=True)
    status_filter = t.Unicode("").tag(sync=True)
    _synced_state = ["rows", "summary", "worker_names", "page", "page_size", "n_matching",
                     "status_filter", "live", "not_live_reason"]

    def __init__(self, client, futures, names=None, *, page_size: int = 25,
                 interval: float = 0.1, settle: float | None = 0.5):
        labelled = labelled_keys(futures)
        keys = [key for _, key, _ in labelled]
        name_of = {key: label for label, key, _ in labelled if label is not None}
        name_of.update(_names_by_key(keys, names))
        statuses = {key: status for _, key, status in labelled if status in STATUSES}
        super().__init__(kind="futures", page_size=_page_size(page_size))
        self._table = FuturesTable(keys, names=name_of, statuses=statuses)
        self._view = {"page": 0, "page_size": self.page_size, "status": ""}
        self.on_msg(self._on_frontend_msg)
        self._start_feed(client, interval, settle)  # the snapshot arrives before this returns

    def _flush(self) -> None:
        with self._lock:
            view = dict(self._view)
            rows, n, page = self._table.page(view["page"], view["page_size"], view["status"])
            summary = self._table.summary()
            names = dict(self._table.worker_names)
        with self.hold_sync():
            self.rows, self.n_matching, self.page = rows, n, page
            self.page_size, self.status_filter = view["page_size"], view["status"]
            self.summary, self.worker_names = summary, names

    def set_view(self, page: int | None = None, page_size: int | None = None,
                 status: str | None = None) -> None:
        """Show another page, page size or status filter (``""`` for all); any thread."""
        if status not in (None, "", *STATUSES):
            raise ValueError(f"status must be one of {STATUSES} or ''; got {status!r}")
        with self._lock:
            if page_size is not None:
                self._view["page_size"] = _page_size(page_size)
            if status is not None and status != self._view["status"]:
                self._view["status"], self._view["page"] = status, 0
            if page is not None:
                self._view["page"] = max(0, int(page))
        self._feed.request_flush()

    def _on_frontend_msg(self, _widget, content, _buffers) -> None:
        # Runs on the kernel's main thread; the traits are written on the loop thread.
        if isinstance(content, dict) and content.get("type") == "view":
            try:
                self.set_view(content.get("page"), content.get("page_size"), content.get("status"))
            except (TypeError, ValueError):
                logger.warning("ignoring a malformed view request %r", content, exc_info=True)

    def to_html(self) -> str:
        """A static HTML table of the current state (first rows, whole summary)."""
        with self._lock:
            rows, _, _ = self._table.page(0, HTML_ROWS)
            summary = self._table.summary()
            names = dict(self._table.worker_names)
        return futures_html(summary, rows, names, live=self.live,
                            reason=self.not_live_reason or CLIENT_CLOSED)

    def to_text(self) -> str:
        """The same as text: the summary line and the first rows."""
        with self._lock:
            rows, _, _ = self._table.page(0, TEXT_ROWS)
            summary = self._table.summary()
            names = dict(self._table.worker_names)
        return futures_text(summary, rows, names, live=self.live,
                            reason=self.not_live_reason or CLIENT_CLOSED)

    def __repr__(self) -> str:
        keys = self.summary.get("keys", {})
        counts = ", ".join(f"{n} {s}" for s, n in keys.get("by_status", {}).items())
        return f"<FuturesWidget: {keys.get('count', 0)} futures ({counts or 'none'})>"


class ClusterWidget(_LiveWidget):
    """Each worker: name, address, threads, data held and process memory against its limit
    with their last five minutes, keys by status, and what it holds by name (``labels()``
    gives ``{key: name}``, as the magics know it); with ``tasks=True`` also what each worker
    thread ran in the last minute (the task stream).

    Its numbers are :mod:`scatter_magics.summary`'s, the same as ``%cluster``'s text, the
    sidebar card's and the REST API's.

    >>> ClusterWidget(client).totals["n_workers"]  # doctest: +SKIP
    2
    """

    workers = t.List().tag(sync=True)
    totals = t.Dict().tag(sync=True)
    history = t.Dict().tag(sync=True)
    tasks = t.Dict().tag(sync=True)  # {"now", "tasks"}, while show_tasks
    show_tasks = t.Bool(False).tag(sync=True)
    _synced_state = ["workers", "totals", "history", "tasks", "show_tasks", "live",
                     "not_live_reason"]

    def __init__(self, client, labels: Callable[[], Mapping[str, str]] | None = None, *,
                 tasks: bool = False, interval: float = 0.1, settle: float | None = 0.5):
        super().__init__(kind="cluster", show_tasks=tasks)
        self._table = ClusterTable(labels)
        self._shared_memory = ""  # how large data travels; read below, before the first flush
        self._address = ""
        self._start_feed(client, interval, settle)
        # worker-metrics come about once a second: start from the scheduler's numbers now.
        backend = backend_for(client)
        info = backend.scheduler_info()
        self._address = info.get("address", "")
        self._shared_memory = shared_memory_text(info.get("shared_memory"))
        history = _ask(backend, "memory_history")
        stream = _ask(backend, "task_stream") if tasks else None
        with self._lock:
            self._table.seed_history(history)
            if stream:
                self._table.seed_tasks(stream)
        self._apply([{"event": "worker-metrics", "address": address, "memory": w["memory"]}
                     for address, w in info["workers"].items() if "memory" in w]
                    + [{"event": "supervision", **info.get("supervision", {})}])
        self._feed.request_flush()

    def _state(self, flushing: bool = False) -> tuple[dict, dict | None, dict | None]:
        """``({"workers", "totals"}, history, tasks)``. Flushing, the history and the task
        stream come only when they changed since the last flush (they are the big part);
        otherwise (a static fallback) always."""
        with self._lock:
            table = self._table
            summary = table.summary()
            history = table.history.as_dict() \
                if table.history_changed or not flushing else None
            tasks = table.recent_tasks() \
                if self.show_tasks and (table.tasks_changed or not flushing) else None
            if flushing:
                table.history_changed = table.tasks_changed = False
        totals = {**summary["totals"], "keys": summary["keys"], "departed": summary["departed"],
                  "notice": summary["notice"], "shared_memory": self._shared_memory}
        return {"workers": summary["workers"], "totals": totals}, history, tasks

    def _flush(self) -> None:
        state, history, tasks = self._state(flushing=True)
        with self.hold_sync():
            self.workers, self.totals = state["workers"], state["totals"]
            if history is not None:
                self.history = history
            if tasks is not None:
                self.tasks = tasks

    def to_html(self) -> str:
        """A static HTML table of the workers as they are now."""
        state, history, tasks = self._state()
        return cluster_html(state["workers"], state["totals"], history=history, tasks=tasks,
                            live=self.live, reason=self.not_live_reason or CLIENT_CLOSED)

    def to_text(self) -> str:
        """The same as ``%cluster``'s text: headline and a row per worker."""
        state, history, tasks = self._state()
        totals = state["totals"]
        summary = {"workers": state["workers"], "keys": totals["keys"], "totals": totals}
        text = repr(ClusterSummary(self._address, summary, history, notice=totals["notice"],
                                   tasks=tasks))
        return text + ("" if self.live else
                       f"\n(not live: {self.not_live_reason or CLIENT_CLOSED})")

    def __repr__(self) -> str:
        return f"<ClusterWidget: {self.totals.get('n_workers', 0)} workers>"


def _ask(backend, method: str):
    """``backend.<method>()``, or None for an adapter without it (one brought by a test or
    an embedder implements the interface's older part only) or a scheduler of an older
    version that does not know the op: the view then starts without its history."""
    fn = getattr(backend, method, None)
    try:
        return fn() if fn is not None else None
    except ProtocolError:
        logger.info("the scheduler cannot answer %s: the view starts without it", method,
                    exc_info=True)
        return None


def as_widget(obj, client=None, names=None) -> FuturesWidget | ClusterWidget:
    """The live widget for a Client, a Future, or a (nested) collection of futures.

    ``client`` defaults to the futures' own client.
    """
    if isinstance(obj, client_types()):
        return ClusterWidget(obj)
    if client is None:
        client = next((f.client for f in _iter_futures(obj)), None)
        if client is None:
            raise ValueError(f"no future in {type(obj).__name__}: pass client= explicitly")
    return FuturesWidget(client, obj, names=names)


def display_futures(futures, client=None, names=None) -> FuturesWidget:
    """Display the live widget for ``futures`` in the current cell and return it."""
    from IPython.display import display

    widget = as_widget(futures, client=client, names=names)
    display(widget)
    return widget


_STATIC_OUTPUTS: dict[int, StaticOutputs] = {}  # id(shell) -> its static outputs' updater


def install_display(shell, labels: Callable[[], Mapping[str, str]] | None = None) -> None:
    """Make a kernel show Futures, flat collections of them and Clients as live widgets.

    ``labels()`` returns ``{key: name}`` for the futures the magics named. Lists, tuples,
    sets and dicts that hold anything but futures display as usual. Does nothing outside
    a kernel (a terminal IPython has no widget front end).
    """
    if getattr(shell, "kernel", None) is None:
        return

    def bundle(obj):
        if not _only_futures(obj, future_types()):
            return None  # an ordinary list or dict: IPython's usual display
        names = dict(labels()) if labels is not None else {}
        return as_widget(obj, names=names or None)._repr_mimebundle_()

    def cluster_bundle(client):
        return ClusterWidget(client, labels)._repr_mimebundle_()

    def summary_bundle(summary):
        # %cluster's value: the live view, with its own static table for other front ends.
        if summary.client is None or not backend_for(summary.client).running:
            return None
        widget = ClusterWidget(summary.client, labels, tasks=summary.tasks is not None)
        data, metadata = widget._repr_mimebundle_()
        data["text/plain"], data["text/html"] = repr(summary), summary._repr_html_()
        return data, metadata

    formatter = shell.display_formatter.mimebundle_formatter
    formatter.for_type(ClusterSummary, summary_bundle)
    if id(shell) not in _STATIC_OUTPUTS:
        _STATIC_OUTPUTS[id(shell)] = StaticOutputs(shell)
    for type_ in (list, tuple, set, frozenset, dict):
        formatter.for_type(type_, bundle)
    for name in future_class_names():  # by name: no engine is imported for this
        formatter.for_type_by_name(*name.rsplit(".", 1), bundle)
    for name in client_class_names():
        formatter.for_type_by_name(*name.rsplit(".", 1), cluster_bundle)
    bundle.scatter_magics = cluster_bundle.scatter_magics = True  # for uninstall_display
    summary_bundle.scatter_magics = True


def uninstall_display(shell) -> None:
    """Undo :func:`install_display`."""
    outputs = _STATIC_OUTPUTS.pop(id(shell), None)
    if outputs is not None:
        outputs.close()
    formatter = shell.display_formatter.mimebundle_formatter
    for type_ in (list, tuple, set, frozenset, dict, ClusterSummary):
        if getattr(formatter.type_printers.get(type_), "scatter_magics", False):
            formatter.pop(type_)
    for name in (*future_class_names(), *client_class_names()):
        formatter.pop(name, None)
