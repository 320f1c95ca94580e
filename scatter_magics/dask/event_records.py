"""The event records :mod:`.plugin` sends (``docs/internals.md``, "The event stream"),
made of a Dask scheduler's ``TaskState`` and ``WorkerState``.

Runs on the scheduler; it travels by value with the plugin (:mod:`.install`), importing
nothing.
"""

from __future__ import annotations

_STATUS = {"memory": "finished", "erred": "error", "forgotten": "released"}
ENDED = {"memory": "finished", "erred": "error"}  # how a task can leave processing


def key_status(ts, running=()) -> str:
    """Our status for a Dask ``TaskState``: ``running`` if its key is in ``running``
    (its worker said it started), else waiting, queued, processing… are pending."""
    if ts.state == "processing" and ts.key in running:
        return "running"
    return _STATUS.get(ts.state, "pending")


def key_event(ts, status: str | None = None, running=()) -> dict:
    """The ``key`` event record for a task, as it is now."""
    processing_on = ts.processing_on
    return {"event": "key", "key": str(ts.key), "status": status or key_status(ts, running),
            "workers": sorted(ws.address for ws in ts.who_has or ()),
            "nbytes": ts.nbytes if ts.nbytes >= 0 else None, "type": ts.type or None,
            "processing_on": processing_on.address if processing_on is not None else None}


def worker_added(ws) -> dict:
    return {"event": "worker-added", "address": ws.address, "name": str(ws.name),
            "nthreads": ws.nthreads, "memory_limit": ws.memory_limit or 0}


def worker_metrics(ws) -> dict:
    return {"event": "worker-metrics", "address": ws.address, "memory": ws.memory.process,
            "nbytes": ws.nbytes, "nkeys": len(ws.has_what)}
