"""The futures widget's state, fed by the scheduler's event stream: pure, synchronous, no I/O.

:class:`FuturesTable` keeps the latest state of a fixed set of keys; its sibling
:class:`~scatter_magics.notebook.cluster_table.ClusterTable` that of every worker, and
:class:`~scatter_magics.notebook.throttle.Throttle` paces their flushes.
:mod:`scatter_magics.notebook.widget` wires them to a client and to synced traits.

>>> table = FuturesTable(["int-1"], names={"int-1": "x"})
>>> table.apply([{"event": "worker-added", "address": "tcp://a", "name": "worker-0",
...               "nthreads": 1, "memory_limit": 2**30},
...              {"event": "key", "key": "int-1", "status": "finished",
...               "workers": ["tcp://a"], "nbytes": 28, "type": "int"}])
True
>>> table.summary()["keys"]["by_status"], table.page(0, 10)[0][0]["workers"]
({'finished': 1}, ['tcp://a'])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from ..keys import key_name, key_text
from ..summary import STATUSES, KeyTally, Record
from .piece_label import with_rows

__all__ = ["STATUSES", "FuturesTable", "Row", "key_name"]

ACTIVE = ("pending", "running")  # work still in progress: rows show most recent first


class Row:
    """The latest known state of one key."""

    __slots__ = ("key", "name", "type", "nbytes", "status", "workers", "died", "running_on")

    def __init__(self, key: str, name: str | None, status: str):
        self.key = key
        self.name = name
        self.type: str | None = None
        self.nbytes: int | None = None
        self.status = status
        self.workers: tuple[str, ...] = ()
        self.died: tuple[str, ...] = ()  # addresses of holders whose worker died
        self.running_on: str | None = None  # the worker computing it, while running

    def record(self) -> Record:
        """What the summary counts of this row (``summary.record``'s form)."""
        return self.status, self.workers, self.nbytes, self.running_on

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": key_text(self.key),
            "name": self.name if self.name is not None else key_name(self.key),
            "type": with_rows(self.type, self.name),  # a piece of a split: its rows too
            "nbytes": self.nbytes,
            "status": self.status,
            "workers": list(self.workers),
            "died": list(self.died),
        }

    def __repr__(self) -> str:
        return f"<Row {self.key!r} {self.status} on {len(self.workers)} workers>"


class FuturesTable:
    """The latest state of a fixed set of keys, in the order they were given.

    ``apply(events)`` folds one batch of the event stream into the table and says whether
    anything visible changed; ``summary()`` and ``page()`` build what the widget shows.
    Counts and byte totals are kept incrementally, so a batch costs O(len(batch)).
    """

    def __init__(
        self,
        keys: Iterable[str],
        names: Mapping[str, str] | None = None,
        statuses: Mapping[str, str] | None = None,
    ):
        names = names or {}
        statuses = statuses or {}
        # By the key's text: events from a Dask scheduler carry keys as text (they pass
        # through msgpack), ours carry them as they are; key_text makes them meet.
        self.rows: dict[str, Row] = {}
        for key in keys:
            if key_text(key) not in self.rows:
                self.rows[key_text(key)] = Row(key, names.get(key),
                                               statuses.get(key, "pending"))
        self.order = list(self.rows)
        # The same keys, least recently changed first (moved to the end on each change).
        self.recent: OrderedDict[str, None] = OrderedDict.fromkeys(self.order)
        self.worker_names: dict[str, str] = {}
        self.live_workers: set[str] = set()
        self.dead_workers: set[str] = set()
        self.closed = False  # the client closed: nothing will change any more
        self.tally = KeyTally()  # counts and bytes, as every view counts them (summary.py)
        for row in self.rows.values():
            self.tally.change(None, row.record())

    def apply(self, events: Iterable[Mapping[str, Any]]) -> bool:
        """Fold a batch of events into the table; return True if anything shown changed."""
        changed = False
        for event in events:
            kind = event.get("event")
            if kind == "key":
                row = self.rows.get(key_text(event["key"]))
                if row is not None:
                    changed |= self._update_row(row, event)
            elif kind == "worker-added":
                self.worker_names[event["address"]] = event.get("name") or event["address"]
                self.live_workers.add(event["address"])
                changed = True
            elif kind == "worker-removed":
                self.worker_names.setdefault(event["address"], event.get("name") or event["address"])
                self.live_workers.discard(event["address"])
                self.dead_workers.add(event["address"])
                self._running_task_died(event["address"])
                changed = True
            elif kind == "closed":
                self.closed = changed = True
        return changed

    def _update_row(self, row: Row, event: Mapping[str, Any]) -> bool:
        status = event.get("status", row.status)
        if status == "released" and row.status == "cancelled":
            # The scheduler forgets a key right after cancelling it; what the user did,
            # and what the Future says, is "cancelled".
            status = "cancelled"
        workers = tuple(event.get("workers") or ())
        nbytes = event.get("nbytes", row.nbytes)
        type_ = event.get("type") or row.type
        running_on = event.get("processing_on") if status == "running" else None
        if (status, workers, nbytes, type_, running_on) == \
                (row.status, row.workers, row.nbytes, row.type, row.running_on):
            return False
        old = row.record()
        if self.dead_workers:  # only once a worker has died: the common path stays short
            self._note_deaths(row, status, workers)
        row.status, row.workers, row.nbytes, row.type = status, workers, nbytes, type_
        row.running_on = running_on
        self.tally.change(old, row.record())
        self.recent.move_to_end(key_text(row.key))
        return True

    def _note_deaths(self, row: Row, status: str, workers: tuple[str, ...]) -> None:
        died = tuple(a for a in row.workers if a in self.dead_workers and a not in workers)
        if died:
            row.died = tuple(dict.fromkeys(row.died + died))
        elif row.died and status == "finished" and workers:
            row.died = ()  # computed or stored again: the old loss no longer describes it

    def _running_task_died(self, address: str) -> None:
        # O(rows), once per dead worker: its running tasks are rerun elsewhere, and
        # their rows say why they are pending again.
        for row in self.rows.values():
            if row.running_on == address:
                old = row.record()
                row.died, row.running_on = tuple(dict.fromkeys(row.died + (address,))), None
                self.tally.change(old, row.record())

    def summary(self) -> dict[str, Any]:
        """``{"keys": summary.KeyTally.keys(), "n_workers", "by_worker": {name: bytes}}``,
        as a JSON-able dict: the same fields, counted the same way, as the cluster's."""
        return {
            "keys": self.tally.keys(),
            "n_workers": len(self.live_workers),
            "by_worker": {self.worker_names.get(a, a): held[1]
                          for a, held in sorted(self.tally.held.items()) if held[1] > 0},
        }

    @property
    def active(self) -> bool:
        """Whether any shown key is still pending or running."""
        return any(self.tally.by_status[status] > 0 for status in ACTIVE)

    def page(
        self, page: int, page_size: int, status: str | None = None
    ) -> tuple[list[dict[str, Any]], int, int]:
        """Rows of page ``page`` (0-based, clamped), optionally only one status.

        While work is in progress (:attr:`active`) the rows that changed most recently
        come first, so page 1 shows what moves; once settled, the order given.
        Returns the rows, how many rows match the filter, and the page actually shown.
        O(n) at most: one pass over the keys.
        """
        order = list(reversed(self.recent)) if self.active else self.order
        if status:
            keys = [key for key in order if self.rows[key].status == status]
        else:
            keys = order
        page_size = max(1, page_size)
        last_page = max(0, (len(keys) - 1) // page_size)
        page = min(max(0, page), last_page)
        start = page * page_size
        rows = [self.rows[key].as_dict() for key in keys[start : start + page_size]]
        return rows, len(keys), page
