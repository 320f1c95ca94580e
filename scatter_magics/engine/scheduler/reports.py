"""What the scheduler's state looks like from outside: ``scheduler_info()``, the cluster
list's overview, a page of keys, the snapshot a new subscriber starts from.

Read-only functions of the ``workers`` and ``keys`` records.

>>> from scatter_magics.engine.scheduler.records import KeyInfo
>>> keys = {"x": KeyInfo("x", "memory", nbytes=8), "t": KeyInfo("t", "processing")}
>>> overview({}, keys, {})["keys"]["by_status"]
{'finished': 1, 'pending': 1}
"""

from __future__ import annotations

from ...keys import value_name
from .events import key_event, worker_event, worker_status_event
from .records import PUBLIC_STATUS, KeyInfo, WorkerInfo


def info(workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo], supervision: dict) -> dict:
    """Workers and totals; ``nbytes`` counts a key in shared memory once."""
    nbytes = sum((ks.nbytes or 0) * (1 if ks.shared else len(ks.who_has))
                 for ks in keys.values())
    return {"type": "Scheduler", "nbytes": nbytes, "nkeys": len(keys),
            "supervision": dict(supervision), "workers": {
        a: {"name": ws.name, "nthreads": ws.nthreads, "memory_limit": ws.memory_limit,
            "nbytes": ws.nbytes, "memory": ws.memory, "nkeys": len(ws.keys),
            "processing": len(ws.processing), "pid": ws.pid, "replaces": ws.replaces,
            "status": ws.status}
        for a, ws in workers.items()}}


def overview(workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo], supervision: dict) -> dict:
    """What a cluster list shows: the workers, and the keys counted by status and by name
    (``names``: the pieces of a split value, ``df[0/4]`` … ``df[3/4]``, count once)."""
    by_status: dict[str, int] = {}
    for ks in keys.values():
        status = PUBLIC_STATUS[ks.state]
        by_status[status] = by_status.get(status, 0) + 1
    totals = info(workers, keys, supervision)
    return {"workers": totals["workers"],
            "keys": {"count": len(keys), "nbytes": totals["nbytes"], "by_status": by_status,
                     "names": len({value_name(key) for key in keys})}}


def key_list(keys: dict[str, KeyInfo], offset: int, limit: int, status: str | None = None) -> dict:
    """One page of keys (in the order the scheduler learnt them), each as a key event."""
    if status is not None:
        selected = [ks for ks in keys.values() if PUBLIC_STATUS[ks.state] == status]
    else:
        selected = list(keys.values())
    page = selected[max(offset, 0):max(offset, 0) + max(limit, 0)]
    return {"total": len(selected), "offset": offset,
            "keys": [{k: v for k, v in key_event(ks).items() if k != "event"} for ks in page]}


def snapshot(workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo]) -> list[dict]:
    """The first batch a subscriber gets: every worker, then every key, as events."""
    return [worker_event(ws) for ws in workers.values()] + \
           [worker_status_event(ws) for ws in workers.values() if ws.status != "running"] + \
           [key_event(ks) for ks in keys.values()]
