"""What the magics show: a table of futures, and a summary of the cluster.

Both are snapshots taken when a cell's output is displayed; the live widget
(``widget.py``) is meant to replace them without changing what the magics return.

>>> table = FuturesTable([{"name": "df", "key": "df-1f2e", "type": "DataFrame",
...                        "nbytes": 2048, "status": "finished", "workers": ["worker-0"]}])
>>> print(table)
name  key      type       size   status    workers   replicas
df    df-1f2e  DataFrame  2 KiB  finished  worker-0  1
"""

from __future__ import annotations

import html
import re
from typing import Callable, Iterable, Mapping

from ..backend import Backend, backend_for, future_class_names, is_future
from ..keys import key_text
from ..sizes import format_bytes
from ..summary import counted, keys_phrase, natural_order
from .cluster_table import shared_memory_text
from .plots_html import history_by_worker
from .plots_text import sparkline, task_stream_text
from .widget_html import cluster_html, holds_text, table_html
from .piece_label import is_piece, with_rows

MAX_KEYS_SHOWN = 20  # names per worker in %cluster; the rest is counted, not listed
_TOKEN = re.compile(r"-[0-9a-f]{8,}$")


def labelled_futures(named: Mapping[str, object]) -> list[tuple[str, object]]:
    """``[(label, future)]`` for every future in ``named``'s values, labelled ``name[i]``."""
    out: list[tuple[str, object]] = []
    for name, value in named.items():
        _label_futures(name, value, out)
    return out


def _label_futures(label: str, obj, out: list) -> None:
    # A module-level function, not a closure: a recursive closure is a reference cycle
    # (function -> cell -> function) that held `out`, and every future in it, until the
    # garbage collector ran, so a future %scatter had let go kept its data on the
    # workers for a while (and was released from whichever thread the collector ran on).
    if is_future(obj):
        out.append((label, obj))
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _label_futures(f"{label}[{i}]", item, out)
    elif isinstance(obj, (set, frozenset)):
        for item in obj:
            _label_futures(f"{label}[…]", item, out)
    elif isinstance(obj, dict):
        for k, item in obj.items():
            _label_futures(f"{label}[{k!r}]", item, out)


def key_states(backend: Backend, keys: Iterable[str]) -> dict[str, dict]:
    """The scheduler's latest ``key`` event (status, workers, nbytes, type) per key's text.

    One snapshot of the event stream (see docs/internals.md): the first batch a
    subscription receives describes every key the scheduler knows.
    """
    wanted = {key_text(k) for k in keys}
    batch: list = []
    subscription = backend.subscribe_events(batch.extend)
    subscription.close()
    events = list(batch)  # later batches may still be appended; a later event is newer
    return {key_text(e["key"]): e for e in events
            if e.get("event") == "key" and key_text(e["key"]) in wanted}


def worker_names(backend: Backend) -> dict[str, str]:
    """``{address: name}`` of the backend's workers."""
    return {a: w.get("name", a) for a, w in backend.scheduler_info()["workers"].items()}


def grouped_labels(labels: list[str], limit: int = MAX_KEYS_SHOWN) -> str:
    """One short line for many keys: a split collection's elements count as one name.

    >>> grouped_labels(["df", "rows[0]", "rows[1]", "len-3f2a9c0b1d2e"])
    'df, rows[…] ×2, len'
    """
    counts: dict[str, int] = {}
    for label in labels:
        if is_piece(label):  # a piece of a split value: each on its own
            name = str(label)
        else:
            name = f"{label.split('[', 1)[0]}[…]" if "[" in label else _TOKEN.sub("", label)
        counts[name] = counts.get(name, 0) + 1
    names = [name if n == 1 else f"{name} ×{n}" for name, n in counts.items()]
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f", … {more} more" if more > 0 else "")


def _table_text(columns: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = [columns] + rows
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def _table_html(columns: list[str], rows: list[list[str]], caption: str = "") -> str:
    """Plain-text cells in the package's one fallback table style (``table_html``)."""
    return table_html(columns, [[html.escape(cell) for cell in row] for row in rows],
                      html.escape(caption).replace("\n", "<br>"))


class FuturesTable:
    """One row per future: name, key, type, size, status and the workers holding it."""

    columns = ["name", "key", "type", "size", "status", "workers", "replicas"]

    def __init__(self, rows: list[dict]):
        self.rows = rows

    @classmethod
    def snapshot(cls, labelled: list[tuple[str, object]]) -> "FuturesTable":
        """Ask the scheduler about each future, now."""
        rows = [{"name": label, "key": f.key, "type": type_name(f), "nbytes": None,
                 "status": f.status, "workers": []} for label, f in labelled]
        backend = backend_for(labelled[0][1].client) if labelled else None
        if backend is not None and backend.running:
            states = key_states(backend, (f.key for _, f in labelled))
            names = worker_names(backend)
            for row in rows:
                state = states.get(key_text(row["key"]), {})
                row["type"] = with_rows(row["type"] or state.get("type"), row["name"])
                row["nbytes"] = state.get("nbytes")
                row["workers"] = sorted((names.get(a, a) for a in state.get("workers", [])),
                                        key=natural_order)
        return cls(rows)

    def _cells(self) -> list[list[str]]:
        # An unnamed row (a submitted task) is named by its key's prefix: the function.
        return [[r["name"] or _TOKEN.sub("", key_text(r["key"])), key_text(r["key"]),
                 r["type"] or "", format_bytes(r["nbytes"]), r["status"], _where(r),
                 str(len(r["workers"]))] for r in self.rows]

    def __repr__(self) -> str:
        return _table_text(self.columns, self._cells())

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        return _table_html(self.columns, self._cells())


def futures_text(summary: Mapping, rows: list[dict], worker_names: Mapping[str, str],
                 live: bool = True, reason: str = "client closed") -> str:
    """A futures widget as text: its summary line, then the rows given (the first page)."""
    keys = summary.get("keys", {})
    counts = " · ".join(f"{st} {n:,}" for st, n in keys.get("by_status", {}).items())
    line = (f"{counted(keys.get('count', 0), 'future')}" + (f" · {counts}" if counts else "")
            + f" · {format_bytes(keys.get('nbytes', 0))} in memory"
            + f" · {counted(summary.get('n_workers', 0), 'worker')}"
            + ("" if live else f" (not live: {reason})"))
    table = FuturesTable([{**r, "workers": sorted((worker_names.get(a, a) for a in r["workers"]),
                                                  key=natural_order),
                           "died": sorted((worker_names.get(a, a) for a in r.get("died", ())),
                                          key=natural_order)} for r in rows])
    more = keys.get("count", 0) - len(rows)
    return f"{line}\n{table!r}" + (f"\n… {more:,} more" if more > 0 else "")


def _where(row: Mapping) -> str:
    """The workers holding a future, and those that died holding it."""
    died = ", ".join(row.get("died") or ())
    held = ", ".join(row["workers"])
    return held + (" · " if held and died else "") + (f"{died} died" if died else "")


class ScatterResult(dict):
    """``%scatter a b c``'s result: a plain ``{name: future(s)}`` dict shown as a table."""

    def table(self) -> FuturesTable:
        return FuturesTable.snapshot(labelled_futures(self))

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self.table()))

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


class ClusterSummary:
    """What ``%cluster`` shows: :mod:`scatter_magics.summary`'s numbers (the same as the
    live view's, the sidebar card's and the REST API's), each worker's data held and
    process memory with their last five minutes, what it holds by name, and with
    ``--tasks`` the task stream of the last minute."""

    columns = ["worker", "address", "threads", "data held", "limit", "process", "last 5 min",
               "keys", "holds"]

    piece_columns = ["piece", "rows", "size", "worker"]

    dataset_columns = ["published dataset", "size", "held by"]

    def __init__(self, address: str, summary: dict, history: dict | None = None,
                 shared_memory: dict | None = None, notice: str | None = None, client=None,
                 tasks: dict | None = None, pieces: list[list[str]] | None = None,
                 dashboard_link: str | None = None):
        self.address = address
        self.summary = summary  # summary.summarize's {"workers", "keys", "totals"}
        self.workers = summary["workers"]
        # The overview's published datasets, [{name, nbytes, workers}]: outlive any kernel.
        self.datasets = summary.get("datasets") or []
        self.history = history
        self.shared_memory = shared_memory  # scheduler_info()["shared_memory"], if the engine has it
        self.notice = notice  # e.g. why dead workers are no longer replaced
        self.client = client  # whose cluster this is: a kernel shows it as the live widget
        self.tasks = tasks  # Backend.task_stream()'s answer, for %cluster --tasks
        self.pieces = pieces or []  # a row per piece of a split value (piece_columns)
        self.dashboard_link = dashboard_link  # a Dask scheduler's dashboard, if it has one

    @classmethod
    def snapshot(cls, backend: Backend, labels: Mapping[str, str],
                 tasks: bool = False) -> "ClusterSummary":
        """Ask the scheduler now; ``labels`` names keys (``{key: 'df'}``) for display."""
        info = backend.scheduler_info()
        summary = backend.overview()
        has_what = backend.has_what()
        for w in summary["workers"]:
            keys = sorted(has_what.get(w["address"], []), key=key_text)
            w["keys"], w["labels"] = keys, [key_text(labels.get(k, k)) for k in keys]
        notice = (info.get("supervision") or {}).get("message")
        return cls(info.get("address", ""), summary, backend.memory_history(),
                   info.get("shared_memory"), notice, backend.client,
                   backend.task_stream() if tasks else None,
                   _piece_rows(backend, labels, has_what), info.get("dashboard_link"))

    @property
    def keys(self) -> dict:
        return self.summary["keys"]

    def headline(self) -> str:
        totals = self.summary["totals"]
        shared = shared_memory_text(self.shared_memory)
        statuses = ", ".join(f"{n:,} {s}" for s, n in self.keys["by_status"].items())
        headline = (f"Cluster {self.address}: {counted(totals['n_workers'], 'worker')}, "
                    f"{counted(totals['nthreads'], 'thread')}, "
                    f"{format_bytes(totals['memory_limit'])} memory limit; "
                    f"{keys_phrase(self.keys)}" + (f" ({statuses})" if statuses else "")
                    + (f"; {shared}" if shared else "")
                    + (f"; dashboard: {self.dashboard_link}" if self.dashboard_link else ""))
        return headline + (f"\nWarning: {self.notice}" if self.notice else "")

    def _series(self) -> dict:
        return history_by_worker(self.history)

    def _cells(self) -> list[list[str]]:
        rows, series = [], self._series()
        for w in self.workers:
            name = w["name"] if w.get("status", "running") == "running" else \
                f"{w['name']} ({w['status']})"  # e.g. frozen: gets no new data
            past = series.get(w["address"])
            holds = holds_text(w["holds"]) if "holds" in w else \
                grouped_labels(w.get("labels", []))
            rows.append([name, w["address"], str(w["nthreads"]), format_bytes(w["nbytes"]),
                         format_bytes(w["memory_limit"]) if w["memory_limit"] else "none",
                         format_bytes(w["memory"]), sparkline(past["nbytes"]) if past else "",
                         f"{w['nkeys']:,}", holds])
        return rows

    def _dataset_cells(self) -> list[list[str]]:
        return [[d["name"], "?" if d.get("nbytes") is None else format_bytes(d["nbytes"]),
                 ", ".join(d.get("workers") or ()) or "-"] for d in self.datasets]

    def _tasks_text(self) -> str:
        if self.tasks is None:
            return ""
        names = {w["address"]: w["name"] for w in self.workers}
        return "\nTask stream, last minute:\n" + task_stream_text(
            self.tasks.get("tasks", ()), self.tasks.get("now") or 0, names)

    def __repr__(self) -> str:
        text = self.headline() + "\n" + _table_text(self.columns, self._cells())
        if self.pieces:
            text += f"\n{PIECES_CAPTION}:\n" + _table_text(self.piece_columns, self.pieces)
        if self.datasets:
            text += "\n" + _table_text(self.dataset_columns, self._dataset_cells())
        return text + self._tasks_text()

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        workers = [w if "holds" in w else
                   {**w, "holds": [[label, 1] for label in
                                   grouped_labels(w.get("labels", [])).split(", ") if label]}
                   for w in self.workers]
        totals = {**self.summary["totals"], "keys": self.keys,
                  "shared_memory": shared_memory_text(self.shared_memory),
                  "notice": self.notice}
        tables = cluster_html(workers, totals, history=self.history, tasks=self.tasks)
        if self.pieces:
            tables += _table_html(self.piece_columns, self.pieces, caption=PIECES_CAPTION)
        if self.datasets:
            tables += _table_html(self.dataset_columns, self._dataset_cells())
        if not self.dashboard_link:
            return tables
        link = html.escape(self.dashboard_link, quote=True)
        return (f"<p><a href='{link}' target='_blank' rel='noopener'>Dask dashboard</a></p>"
                + tables)


PIECES_CAPTION = "Pieces of split values"


def _piece_rows(backend: Backend, labels: Mapping[str, str], has_what: dict) -> list[list[str]]:
    """``[[piece, rows, size, workers]]`` for the pieces of split values the workers hold."""
    keys = {k for held in has_what.values() for k in held if is_piece(labels.get(k))}
    if not keys:
        return []
    states, names = key_states(backend, keys), worker_names(backend)
    rows = []
    for key in sorted(keys, key=lambda k: natural_order(labels[k])):
        state = states.get(key_text(key), {})
        where = sorted((names.get(a, a) for a in state.get("workers", [])), key=natural_order)
        rows.append([str(labels[key]), f"{labels[key].rows:,}",
                     format_bytes(state.get("nbytes")), ", ".join(where)])
    return rows


def type_name(future) -> str | None:
    """The name of a future's type: ours hold text, Dask's the class itself."""
    return getattr(future.type, "__name__", future.type)


def future_text(future, label: str | None) -> str:
    """A one-line plain-text form of a future that needs no round trip to the scheduler."""
    name = f" {label}" if label else ""
    type_part = f", type: {type_name(future)}" if future.type else ""
    return f"<Future{name}: {future.status}{type_part}, key: {future.key}>"


def install_formatters(shell, labels: Callable[[], Mapping[str, str]]) -> None:
    """Show a Future as a table row (HTML) or a one-liner naming it (text).

    ``labels()`` gives ``{key: name}`` for the futures the magics named. A type with a
    ``_repr_mimebundle_`` printer (the live widget) takes precedence over these.
    """
    def as_html(future) -> str:
        return FuturesTable.snapshot([(labels().get(future.key, ""), future)])._repr_html_()

    def as_text(future, p, cycle) -> None:
        p.text(future_text(future, labels().get(future.key)))

    formatters = shell.display_formatter.formatters
    for name in future_class_names():  # by name: no engine is imported for this
        module, _, cls = name.rpartition(".")
        formatters["text/html"].for_type_by_name(module, cls, as_html)
        formatters["text/plain"].for_type_by_name(module, cls, as_text)


def remove_formatters(shell) -> None:
    for mime in ("text/html", "text/plain"):
        for name in future_class_names():
            shell.display_formatter.formatters[mime].pop(name, None)
