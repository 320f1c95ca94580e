"""What the scheduler's state looks like from outside: ``scheduler_info()``, the cluster
list's overview, a page of keys, the snapshot a new subscriber starts from.

Read-only functions of the ``workers`` and ``keys`` records.

>>> from scatter_magics.engine.scheduler.records import KeyInfo
>>> keys = {"x": KeyInfo("x", "memory", nbytes=8), "t": KeyInfo("t", "processing")}
>>> overview({}, keys)["keys"]["by_status"]
{'pending': 1, 'finished': 1}
"""

from __future__ import annotations

from ...key_pages import page_of
from ...summary import summarize
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
            "status": ws.status, "resources": dict(ws.resources)}
        for a, ws in workers.items()}}


def overview(workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo]) -> dict:
    """The summary every view renders (``summary.summarize``): workers, keys (``names``:
    the pieces of a split value, ``df[0/4]`` … ``df[3/4]``, count once), totals."""
    rows = [{"address": a, "name": ws.name, "nthreads": ws.nthreads,
             "memory_limit": ws.memory_limit, "memory": ws.memory, "status": ws.status}
            for a, ws in workers.items()]
    return summarize(rows, (record(ks) for ks in keys.values()), keys)


def record(ks: KeyInfo) -> tuple:
    """``summary.record`` of a key, from its state (no event made for it)."""
    if ks.state == "processing" and ks.started:
        return "running", (), ks.nbytes, ks.processing_on
    return PUBLIC_STATUS[ks.state], tuple(ks.who_has), ks.nbytes, None


def key_list(keys: dict[str, KeyInfo], offset: int, limit: int, status: str | None = None,
             name: str | None = None, sort: str | None = None,
             descending: bool = False) -> dict:
    """One page of key items (``key_pages.page_of``), in the order the scheduler learnt
    them unless sorted; without a name or a sort only the page's items are made."""
    if name is None and sort is None:
        selected = [ks for ks in keys.values() if status is None or record(ks)[0] == status]
        start = max(offset, 0)
        page = page_of((item(ks) for ks in selected[start:start + max(limit, 0)]), 0, limit)
        return {**page, "total": len(selected), "offset": offset}
    return page_of((item(ks) for ks in keys.values()), offset, limit, status, name, sort,
                   descending)


def item(ks: KeyInfo) -> dict:
    """A key as the Futures panel lists it: its event, and the workers that died with it."""
    return {**key_event(ks), "died": list(ks.died)}


def snapshot(workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo]) -> list[dict]:
    """The first batch a subscriber gets: every worker, then every key, as events."""
    return [worker_event(ws) for ws in workers.values()] + \
           [worker_status_event(ws) for ws in workers.values() if ws.status != "running"] + \
           [key_event(ks) for ks in keys.values()]
