"""What each worker ran: one record per task that ended, kept for the last minute.

The plot Dask users open first on its dashboard, without Bokeh: one lane per worker
thread, a bar per task coloured by its function, transfers and errors marked. A record
(docs/internals.md, "The task stream")::

    {"key": "revenue-5f3c…", "name": "revenue", "worker": "tcp://127.0.0.1:40125",
     "thread": 0, "start": 1796137403.65, "stop": 1796137403.91, "status": "finished",
     "transfers": [{"start": …, "stop": …, "from": "tcp://127.0.0.1:40127", "nbytes": 8000}]}

``start``/``stop`` are the worker's clock (seconds since the epoch); ``thread`` tells the
worker's threads apart (a small number on our engine, Dask's thread id on Dask);
``status`` is ``finished`` or ``error``; ``transfers`` are the inputs the worker fetched
from peers first. The embedded scheduler keeps a :class:`TaskStream` fed by its workers'
task-finished and task-erred messages; on Dask the scheduler plugin keeps the same
records from the ``startstops`` its transitions carry (:func:`from_dask`).

>>> stream = TaskStream()
>>> stream.add({"key": "f-1", "name": "f", "worker": "tcp://a", "thread": 0, "start": 10.0,
...             "stop": 10.5, "status": "finished", "transfers": []})
>>> answer = stream.since(0, now=30.0)
>>> answer["index"], [t["key"] for t in answer["tasks"]]
(1, ['f-1'])
>>> stream.since(1, now=30.0)["tasks"], stream.since(0, now=100.0)["tasks"]
([], [])
>>> stream.add_run("g-5f3c0a9b1d2e", "tcp://a", {"start": 11.0, "stop": 11.2, "thread": 0}, "error")
>>> [(t["name"], t["status"]) for t in stream.since(1, now=30.0)["tasks"]]
[('g', 'error')]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from .keys import key_name

SPAN = 60.0  # s of tasks kept and shown: the last minute
LIMIT = 20_000  # records kept at most (a minute of tiny tasks): memory stays bounded


class TaskStream:
    """The last :data:`SPAN` seconds of task records, at most :data:`LIMIT` of them."""

    def __init__(self, span: float = SPAN, limit: int = LIMIT):
        self.span = span
        self.records: deque[dict[str, Any]] = deque(maxlen=limit)
        self.index = 0  # records added so far: a reader's cursor

    def add(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        self.index += 1

    def add_run(self, key, worker: str, timing: Mapping[str, Any], status: str) -> None:
        """A task our engine ran, kept as its worker reported it and made a record only
        when read: most records are never read, and building each on the scheduler's
        loop (its name from the key too) cost ~1.5 µs of every task's ~50."""
        self.records.append((key, worker, timing, status))
        self.index += 1

    def since(self, index: int, now: float) -> dict[str, Any]:
        """``{"index", "now", "tasks"}``: the records after cursor ``index`` that ended in
        the last :attr:`span` s, and the cursor to ask from next time."""
        new = min(max(0, self.index - index), len(self.records))
        oldest = now - self.span
        recent = (_as_record(self.records[i])
                  for i in range(len(self.records) - new, len(self.records)))
        tasks = [rec for rec in recent if rec["stop"] >= oldest]
        return {"index": self.index, "now": now, "tasks": tasks}


def _as_record(entry) -> dict[str, Any]:
    return entry if type(entry) is dict else task_record(*entry)


def task_record(key: str, worker: str, timing: Mapping[str, Any],
                status: str) -> dict[str, Any]:
    """A record from what a worker reports with a result: ``timing`` is ``{"start",
    "stop", "thread", "transfers", "function"}`` (``engine/worker/process.py``); the
    function's name, when known, names the bar, else the key's prefix."""
    return {"key": key, "name": timing.get("function") or key_name(key), "worker": worker,
            "thread": timing.get("thread", 0), "start": timing["start"], "stop": timing["stop"], "status": status,
            "transfers": list(timing.get("transfers") or ())}


def from_dask(key: str, name: str, worker: str, thread, startstops,
              status: str) -> dict | None:
    """A record from Dask's ``startstops`` (``[{"action": "compute" | "transfer" | …,
    "start", "stop", "source"}]``); nothing computed, nothing to draw: None."""
    computes = [s for s in startstops or () if s.get("action") == "compute"]
    if not computes:
        return None
    transfers = [{"start": s["start"], "stop": s["stop"], "from": s.get("source"),
                  "nbytes": s.get("nbytes")} for s in startstops if s.get("action") == "transfer"]
    return {"key": key, "name": name, "worker": worker, "thread": thread,
            "start": computes[0]["start"], "stop": computes[-1]["stop"], "status": status,
            "transfers": transfers}
