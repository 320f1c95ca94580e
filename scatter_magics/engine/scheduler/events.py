"""The scheduler's event stream: the records it keeps for subscribers, and their format.

The formats are the event contract of ``docs/internals.md`` ("The event stream"). Records
accumulate only while someone subscribes: the server sets ``publishing`` and, after each
state change, sends and empties ``events``.

>>> from scatter_magics.engine.scheduler.records import KeyInfo
>>> log = EventLog()
>>> log.emit_key(KeyInfo("x", "memory"))  # nobody subscribes: nothing is kept
>>> log.events
[]
>>> log.publishing = True
>>> log.emit_key(KeyInfo("x", "memory"))
>>> log.events[0]["status"]
'finished'
"""

from __future__ import annotations

from .records import PUBLIC_STATUS, KeyInfo, WorkerInfo


class EventLog:
    """Events recorded while ``publishing``, for the server to send in batches."""

    __slots__ = ("events", "publishing")

    def __init__(self):
        self.events: list[dict] = []
        self.publishing = False  # record events only while someone subscribes

    def emit(self, event: dict) -> None:
        if self.publishing:
            self.events.append(event)

    def emit_key(self, ks: KeyInfo) -> None:
        if self.publishing:
            self.events.append(key_event(ks))

    def attach_run(self, key, run: dict) -> None:
        """Add a task's record (``task_stream``) to the latest event of its key in this
        batch, as ``"task"``: a live task stream then needs no polling."""
        for event in reversed(self.events):
            if event.get("event") == "key" and event["key"] == key:
                event["task"] = run
                return


def key_event(ks: KeyInfo) -> dict:
    # "running" exists only in events: a Future's status stays Dask's "pending".
    status = "running" if ks.state == "processing" and ks.started else PUBLIC_STATUS[ks.state]
    return {"event": "key", "key": ks.key, "status": status,
            "workers": sorted(ks.who_has), "nbytes": ks.nbytes, "type": ks.type,
            "processing_on": ks.processing_on}


def worker_event(ws: WorkerInfo) -> dict:
    return {"event": "worker-added", "address": ws.address, "name": ws.name,
            "nthreads": ws.nthreads, "memory_limit": ws.memory_limit,
            "replaces": ws.replaces}


def worker_status_event(ws: WorkerInfo) -> dict:
    return {"event": "worker-status", "address": ws.address, "name": ws.name,
            "status": ws.status}
