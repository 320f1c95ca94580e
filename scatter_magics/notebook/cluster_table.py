"""The cluster widget's state: every live worker, from worker-* and key events.

Pure, synchronous, no I/O, as :mod:`.widget_model` (whose status names and byte
formatting it shares); :mod:`scatter_magics.notebook.widget` feeds it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..sizes import format_bytes
from .piece_label import is_piece, piece_text
from .widget_model import STATUSES, key_name


class ClusterTable:
    """The latest state of every live worker, from worker-* and key events.

    Besides each worker's metrics it keeps, per worker, its keys by status (finished:
    held there; running: computing there) and what it holds by name, so the cluster
    view stays a handful of numbers and names at 10,000 keys; and how removed workers
    ended, for the note on their replacements.
    """

    def __init__(self, labels: Callable[[], Mapping[str, str]] | None = None) -> None:
        self.workers: dict[str, dict[str, Any]] = {}
        self.deaths: dict[str, str] = {}  # name of a removed worker → how it ended
        self.notice = ""  # why dead workers are no longer replaced (the restart budget)
        self.departed: list[str] = []  # names of workers that left, most recent last
        self.closed = False
        self._labels = labels or dict
        self._keys: dict[str, tuple[str, tuple[str, ...], int]] = {}  # key -> status, where, nbytes
        self._by_status: dict[str, Counter[str]] = {}  # address -> Counter(status)

    def apply(self, events: Iterable[Mapping[str, Any]]) -> bool:
        """Fold a batch of events into the table; return True if anything shown changed."""
        changed = False
        for event in events:
            kind = event.get("event")
            if kind == "key":
                changed |= self._update_key(event)
            elif kind == "worker-added":
                self.workers[event["address"]] = {
                    "address": event["address"],
                    "name": event.get("name") or event["address"],
                    "nthreads": event.get("nthreads", 0),
                    "memory_limit": event.get("memory_limit", 0),
                    "memory": 0,
                    "nbytes": 0,
                    "nkeys": 0,
                    "status": "running",
                    "note": self._replacement_note(event.get("replaces")),
                }
                self._by_status.setdefault(event["address"], Counter())
                changed = True
            elif kind == "worker-removed":
                name = event.get("name") or event["address"]
                self.deaths[name] = event.get("reason") or "was removed"
                self._by_status.pop(event["address"], None)
                if self.workers.pop(event["address"], None) is not None:
                    self.departed = [*self.departed[-4:], name]
                    changed = True
            elif kind == "supervision":
                notice = event.get("message") or ""
                changed |= notice != self.notice
                self.notice = notice
            elif kind == "worker-status":
                worker = self.workers.get(event["address"])
                if worker is not None and worker["status"] != event["status"]:
                    worker["status"] = event["status"]
                    changed = True
            elif kind == "worker-metrics":
                worker = self.workers.get(event["address"])
                if worker is not None:
                    new = {k: event[k] for k in ("memory", "nbytes", "nkeys") if k in event}
                    changed |= any(worker[k] != v for k, v in new.items())
                    worker.update(new)
            elif kind == "closed":
                self.closed = changed = True
        return changed

    def _replacement_note(self, replaces: str | None) -> str:
        if not replaces:
            return ""
        return f"replaces {replaces}, which {self.deaths.get(replaces, 'died')}"

    def _update_key(self, event: Mapping[str, Any]) -> bool:
        status = event.get("status", "pending")
        if status == "released":
            where: tuple[str, ...] = ()
        elif status == "running":
            where = (event["processing_on"],) if event.get("processing_on") else ()
        else:
            where = tuple(event.get("workers") or ())
        new = (status, where, event.get("nbytes") or 0)
        old = self._keys.get(event["key"])
        if old == new:
            return False
        for sign, (st, addresses, _) in ((-1, old), (+1, new)) if old else ((+1, new),):
            for address in addresses:
                counter = self._by_status.get(address)
                if counter is not None:
                    counter[st] += sign
        if status == "released":
            self._keys.pop(event["key"], None)
        else:
            self._keys[event["key"]] = new
        return True

    def rows(self) -> list[dict[str, Any]]:
        """One dict per worker, sorted by name, with ``by_status`` and ``holds``."""
        holds = self._placement()
        rows = []
        for w in sorted(self.workers.values(), key=_name_order):
            counts = self._by_status.get(w["address"], Counter())
            rows.append({**w, "by_status": {s: counts[s] for s in STATUSES if counts[s] > 0},
                         "holds": holds.get(w["address"], [])})
        return rows

    def _placement(self, top: int = 6) -> dict[str, list[list]]:
        """``{address: [[name, n_keys], ...]}``: the most-held names per worker.

        Elements of a split collection group under one name: ``rows[…]``; the pieces of
        a value ``--split`` cut are listed each (``df[0/4] · 250,000 rows · 4 MiB``).
        Names the magics gave come before the names of other keys, then the most held.
        """
        labels = self._labels()
        groups: dict[str, Counter[str]] = {}
        named: set[str] = set()
        for key, (status, addresses, nbytes) in self._keys.items():
            if status != "finished":
                continue
            label = labels.get(key)
            if is_piece(label):  # a piece of a split value: on its own, rows and bytes
                name = piece_text(label, nbytes)
            elif label and "[" in label:
                name = f"{label.split('[', 1)[0]}[…]"
            else:
                name = label or key_name(key)
            if label:
                named.add(name)
            for address in addresses:
                groups.setdefault(address, Counter())[name] += 1
        out = {}
        for address, counter in groups.items():
            common = sorted(counter.items(), key=lambda nc: (nc[0] not in named, -nc[1]))[:top]
            rest = sum(counter.values()) - sum(n for _, n in common)
            out[address] = [[name, n] for name, n in common] + ([["…", rest]] if rest else [])
        return out

    def totals(self) -> dict[str, Any]:
        """Sums over the live workers, keys by status, and who left."""
        keys = ("nthreads", "memory", "memory_limit", "nbytes", "nkeys")
        totals: dict[str, Any] = {k: sum(w[k] or 0 for w in self.workers.values()) for k in keys}
        totals["n_workers"] = len(self.workers)
        by_status = Counter(status for status, _, _ in self._keys.values())
        totals["by_status"] = {s: by_status[s] for s in STATUSES if by_status[s] > 0}
        totals["departed"] = list(self.departed)
        return totals


def shared_memory_text(shared: Mapping[str, Any] | None) -> str:
    """How large data reaches the workers, from ``scheduler_info()["shared_memory"]``."""
    if not shared:
        return ""  # an engine that does not say (Dask)
    if shared.get("mode") == "shared-memory":
        return f"shared memory: {shared['directory']} ({format_bytes(shared['available'])} free)"
    if shared.get("mode") == "socket-fallback":
        return f"shared memory short, large data over sockets: {shared.get('reason')}"
    return "no shared memory: data over sockets"


def _name_order(worker: Mapping[str, Any]) -> tuple:
    # "worker-10" sorts after "worker-9": compare the digits as numbers.
    name = str(worker["name"])
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return (head, int(tail) if tail else -1, worker["address"])
