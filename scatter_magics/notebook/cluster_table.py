"""The cluster widget's state: every live worker, from worker-* and key events.

Pure, synchronous, no I/O, as :mod:`.widget_model`; :mod:`scatter_magics.notebook.widget`
feeds it. What it shows is :mod:`scatter_magics.summary`'s model, counted as every other
view counts it: per worker the data it holds from the key events (not from the
heartbeat's ``nbytes``, a second behind them), its process memory from the heartbeats,
and :mod:`scatter_magics.history`'s timeline of both.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..history import MemoryHistory
from ..sizes import format_bytes
from ..summary import KeyTally, Record, record, summary_of
from ..task_stream import TaskStream
from .piece_label import is_piece, piece_text
from .widget_model import key_name


TASKS_SHOWN = 2_000  # task records a view draws at most (the newest of the last minute)


class ClusterTable:
    """The latest state of every live worker, from worker-* and key events.

    Besides each worker's own fields it keeps every key's record in a
    :class:`~scatter_magics.summary.KeyTally` (so per worker: keys by status, data held)
    and what each worker holds by name, so the cluster view stays a handful of numbers
    and names at 10,000 keys; how removed workers ended, for the note on their
    replacements; and the memory history, seeded by :meth:`seed_history` and extended
    by each ``worker-metrics`` event.
    """

    def __init__(self, labels: Callable[[], Mapping[str, str]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.workers: dict[str, dict[str, Any]] = {}
        self.deaths: dict[str, str] = {}  # name of a removed worker → how it ended
        self.notice = ""  # why dead workers are no longer replaced (the restart budget)
        self.departed: list[str] = []  # names of workers that left, most recent last
        self.closed = False
        self.history = MemoryHistory()
        self.history_changed = False  # a sample was added since the view last took it
        self.tasks = TaskStream()  # what the workers ran (key events of ended tasks carry it)
        self.tasks_changed = False
        self._clock = clock
        self._labels = labels or dict
        self._keys: dict[str, Record] = {}  # key -> its summary record
        self.tally = KeyTally()

    def apply(self, events: Iterable[Mapping[str, Any]]) -> bool:
        """Fold a batch of events into the table; return True if anything shown changed."""
        changed = False
        for event in events:
            kind = event.get("event")
            if kind == "key":
                changed |= self._update_key(event)
            elif kind == "worker-added":
                changed |= self._add_worker(event)
            elif kind == "worker-removed":
                changed |= self._remove_worker(event)
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
                changed |= self._metrics(event)
            elif kind == "closed":
                self.closed = changed = True
        return changed

    def _add_worker(self, event: Mapping[str, Any]) -> bool:
        address = event["address"]
        self.workers[address] = {
            "address": address,
            "name": event.get("name") or address,
            "nthreads": event.get("nthreads", 0),
            "memory_limit": event.get("memory_limit", 0),
            "memory": 0,
            "status": "running",
            "note": self._replacement_note(event.get("replaces")),
        }
        self.history.update(address, self.workers[address]["name"])
        return True

    def _remove_worker(self, event: Mapping[str, Any]) -> bool:
        name = event.get("name") or event["address"]
        self.deaths[name] = event.get("reason") or "was removed"
        self.history.remove(event["address"])
        if self.workers.pop(event["address"], None) is None:
            return False
        self.departed = [*self.departed[-4:], name]
        return True

    def _metrics(self, event: Mapping[str, Any]) -> bool:
        """A heartbeat's process memory; the data held comes from the key events."""
        worker = self.workers.get(event["address"])
        if worker is None:
            return False
        memory = event.get("memory", worker["memory"])
        changed = memory != worker["memory"]
        worker["memory"] = memory
        held = self.tally.worker(event["address"])["nbytes"]
        self.history.update(event["address"], memory=memory, nbytes=held)
        self.history_changed |= self.history.tick(self._clock())
        return changed

    def seed_history(self, history: Mapping[str, Any] | None) -> None:
        """Start from the scheduler's history (``Backend.memory_history()``'s answer)."""
        if not history or not history.get("times"):
            return
        for w in history.get("workers", ()):
            self.history.names[w["address"]] = w.get("name") or w["address"]
        for i, t in enumerate(history["times"]):
            sample = tuple((w["address"], w["memory"][i], w["nbytes"][i])
                           for w in history["workers"] if w["memory"][i] is not None)
            self.history.samples.append((t, sample))
        self.history_changed = True

    def seed_tasks(self, answer: Mapping[str, Any]) -> None:
        """Start from the scheduler's task stream (``Backend.task_stream()``'s answer)."""
        for rec in answer.get("tasks", ()):
            self.tasks.add(rec)
        self.tasks_changed = True

    def recent_tasks(self, limit: int = TASKS_SHOWN) -> dict[str, Any]:
        """``{"now", "tasks", "total"}``: the last minute's newest ``limit`` records."""
        tasks = self.tasks.since(0, self._clock())["tasks"]
        return {"now": self._clock(), "tasks": tasks[-limit:], "total": len(tasks)}

    def _replacement_note(self, replaces: str | None) -> str:
        if not replaces:
            return ""
        return f"replaces {replaces}, which {self.deaths.get(replaces, 'died')}"

    def _update_key(self, event: Mapping[str, Any]) -> bool:
        if event.get("task"):  # a task ended: its run, for the task stream
            self.tasks.add(event["task"])
            self.tasks_changed = True
        new = record(event)
        old = self._keys.get(event["key"])
        if old == new:
            return False
        if new[0] == "released":
            self._keys.pop(event["key"], None)
            new = None
        else:
            self._keys[event["key"]] = new
        self.tally.change(old, new)
        return True

    def summary(self) -> dict[str, Any]:
        """:func:`scatter_magics.summary.summary_of` the live workers, each row with what
        it ``holds`` by name; ``departed`` and ``notice`` beside it."""
        summary = summary_of(self.workers.values(), self.tally)
        holds = self._placement()
        for w in summary["workers"]:
            w["holds"] = holds.get(w["address"], [])
        summary.update(departed=list(self.departed), notice=self.notice)
        return summary

    def rows(self) -> list[dict[str, Any]]:
        """One dict per live worker, sorted by name (the summary's ``workers``)."""
        return self.summary()["workers"]

    def _placement(self, top: int = 6) -> dict[str, list[list]]:
        """``{address: [[name, n_keys], ...]}``: the most-held names per worker.

        Elements of a split collection group under one name: ``rows[…]``; the pieces of
        a value ``--split`` cut are listed each (``df[0/4] · 250,000 rows · 4 MiB``).
        Names the magics gave come before the names of other keys, then the most held.
        """
        labels = self._labels()
        groups: dict[str, Counter[str]] = {}
        named: set[str] = set()
        for key, (status, addresses, nbytes, _) in self._keys.items():
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


def shared_memory_text(shared: Mapping[str, Any] | None) -> str:
    """How large data reaches the workers, from ``scheduler_info()["shared_memory"]``."""
    if not shared:
        return ""  # an engine that does not say (Dask)
    if shared.get("mode") == "shared-memory":
        return f"shared memory: {shared['directory']} ({format_bytes(shared['available'])} free)"
    if shared.get("mode") == "socket-fallback":
        return f"shared memory short, large data over sockets: {shared.get('reason')}"
    return "no shared memory: data over sockets"
