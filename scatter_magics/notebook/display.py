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
from .cluster_table import shared_memory_text
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


def counted(n: int, noun: str) -> str:
    """``'1 worker'``, ``'10,000 keys'``: a count with its noun, singular or plural."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def natural_order(name) -> list:
    """Sort key putting ``worker-2`` before ``worker-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name))]


def _table_text(columns: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = [columns] + rows
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def _table_html(columns: list[str], rows: list[list[str]], caption: str = "") -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(cell)}</td>"
                                    for cell in row) + "</tr>" for row in rows)
    cap = f"<caption style='text-align:left'>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
                 r["type"] or "", format_bytes(r["nbytes"]), r["status"],
                 ", ".join(r["workers"]), str(len(r["workers"]))] for r in self.rows]

    def __repr__(self) -> str:
        return _table_text(self.columns, self._cells())

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        return _table_html(self.columns, self._cells())


class ScatterResult(dict):
    """``%scatter a b c``'s result: a plain ``{name: future(s)}`` dict shown as a table."""

    def table(self) -> FuturesTable:
        return FuturesTable.snapshot(labelled_futures(self))

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self.table()))

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


class ClusterSummary:
    """What ``%cluster`` shows: each worker's threads, memory and the keys it holds."""

    columns = ["worker", "address", "threads", "memory", "limit", "data", "keys"]

    piece_columns = ["piece", "rows", "size", "worker"]

    def __init__(self, address: str, workers: list[dict], shared_memory: dict | None = None,
                 notice: str | None = None, client=None, pieces: list[list[str]] | None = None,
                 dashboard_link: str | None = None):
        self.address = address
        self.workers = workers
        self.shared_memory = shared_memory  # scheduler_info()["shared_memory"], if the engine has it
        self.notice = notice  # e.g. why dead workers are no longer replaced
        self.client = client  # whose cluster this is: a kernel shows it as the live widget
        self.pieces = pieces or []  # a row per piece of a split value (piece_columns)
        self.dashboard_link = dashboard_link  # a Dask scheduler's dashboard, if it has one

    @classmethod
    def snapshot(cls, backend: Backend, labels: Mapping[str, str]) -> "ClusterSummary":
        """Ask the scheduler now; ``labels`` names keys (``{key: 'df'}``) for display."""
        info = backend.scheduler_info()
        has_what = backend.has_what()
        workers = []
        by_name = sorted(info["workers"].items(), key=lambda aw: natural_order(aw[1].get("name")))
        for address, w in by_name:
            keys = sorted(has_what.get(address, []), key=key_text)
            workers.append({"name": w.get("name", address), "address": address,
                            "nthreads": w.get("nthreads"), "memory": w.get("memory"),
                            "memory_limit": w.get("memory_limit"), "nbytes": w.get("nbytes"),
                            "keys": keys, "labels": [key_text(labels.get(k, k)) for k in keys],
                            "status": w.get("status", "running")})
        notice = (info.get("supervision") or {}).get("message")
        return cls(info.get("address", ""), workers, info.get("shared_memory"), notice,
                   backend.client, _piece_rows(backend, labels, has_what),
                   info.get("dashboard_link"))

    @property
    def keys(self) -> set[str]:
        return {k for w in self.workers for k in w["keys"]}

    def headline(self) -> str:
        threads = sum(w["nthreads"] or 0 for w in self.workers)
        limit = sum(w["memory_limit"] or 0 for w in self.workers)
        shared = shared_memory_text(self.shared_memory)
        headline = (f"Cluster {self.address}: {counted(len(self.workers), 'worker')}, "
                    f"{counted(threads, 'thread')}, {format_bytes(limit)} memory limit, "
                    f"{counted(len(self.keys), 'key')}"
                    + (f"; {shared}" if shared else "")
                    + (f"; dashboard: {self.dashboard_link}" if self.dashboard_link else ""))
        return headline + (f"\nWarning: {self.notice}" if self.notice else "")

    def _cells(self) -> list[list[str]]:
        rows = []
        for w in self.workers:
            shown = grouped_labels(w["labels"])
            name = w["name"] if w.get("status", "running") == "running" else \
                f"{w['name']} ({w['status']})"  # e.g. frozen: gets no new data
            rows.append([name, w["address"], str(w["nthreads"]), format_bytes(w["memory"]),
                         format_bytes(w["memory_limit"]), format_bytes(w["nbytes"]), shown])
        return rows

    def __repr__(self) -> str:
        text = self.headline() + "\n" + _table_text(self.columns, self._cells())
        if self.pieces:
            text += f"\n{PIECES_CAPTION}:\n" + _table_text(self.piece_columns, self.pieces)
        return text

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        tables = _table_html(self.columns, self._cells(), caption=self.headline())
        if self.pieces:
            tables += _table_html(self.piece_columns, self.pieces, caption=PIECES_CAPTION)
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
