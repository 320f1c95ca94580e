"""A Dask cluster's summary, memory history and task stream, as every view shows them.

Asynchronous functions of a ``distributed.Client`` (on its loop): :class:`DaskBackend`
runs them for ``%cluster`` (``client.sync``), the Jupyter server's ``DaskProbe`` awaits
them for the sidebar. Both install :mod:`.recorder`'s plugin first (once per client) and
turn its answers into the package's own forms: ``scatter_magics.summary`` counts the
keys, ``scatter_magics.history`` and ``scatter_magics.task_stream`` write the rest. A
scheduler that refuses the plugin still has a summary, from ``identity`` and
``who_has`` (every key with a holder ``finished``, the rest ``pending``), and no history
or task stream (empty answers).
"""

from __future__ import annotations

import logging
import weakref

from ..history import columns
from ..summary import summarize
from ..task_stream import from_dask
from .recorder import NAME, Recorder

logger = logging.getLogger(__name__)

_installed: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # client -> bool


async def install(client) -> bool:
    """Register the recorder on ``client``'s scheduler, once; False if it refused."""
    if client not in _installed:
        try:
            await _register(client, Recorder())
            _installed[client] = True
        except Exception:  # an old or locked-down scheduler: views without it
            logger.info("cannot install the scatter_magics recorder", exc_info=True)
            _installed[client] = False
    return _installed[client]


def install_sync(client) -> bool:
    """:func:`install` for a synchronous client, from outside its loop (``EventHub.install``
    calls it with the event plugin: the history and task stream start as early as that)."""
    if client not in _installed:
        from .events import register_plugin

        try:
            register_plugin(client, Recorder(), NAME)
            _installed[client] = True
        except Exception:
            logger.info("cannot install the scatter_magics recorder", exc_info=True)
            _installed[client] = False
    return _installed[client]


async def _register(client, plugin) -> None:
    """Register by reference; a scheduler that cannot import scatter_magics gets the
    recorder's module by value (it imports only the standard library, tornado and
    distributed), as ``events.register_plugin`` ships the event plugin."""
    import cloudpickle
    from distributed.protocol.pickle import dumps

    from . import recorder

    async def send():
        await client.scheduler.register_scheduler_plugin(plugin=dumps(plugin), name=NAME,
                                                          idempotent=True)
    try:
        await send()
    except ImportError:
        cloudpickle.register_pickle_by_value(recorder)
        try:
            await send()
        finally:
            cloudpickle.unregister_pickle_by_value(recorder)


async def _state(client) -> tuple[list[dict], list[list]]:
    """Every worker's fields, and ``[key, status, workers, nbytes, type]`` per key."""
    if await install(client):
        answer = await client.scheduler.scatter_magics_overview()
        return answer["workers"], answer["keys"]
    info = await client.scheduler.identity(n_workers=-1)
    who_has = await client.scheduler.who_has()
    nbytes = await client.scheduler.nbytes(summary=False)
    workers = [{"address": a, "name": str(w.get("name", a)), "nthreads": w.get("nthreads", 0),
                "memory_limit": w.get("memory_limit") or 0,
                "memory": w.get("metrics", {}).get("memory", 0), "status": "running"}
               for a, w in info["workers"].items()]
    keys = [[str(k), "finished" if holders else "pending", sorted(holders), nbytes.get(k), None]
            for k, holders in who_has.items()]
    return workers, keys


async def overview(client) -> dict:
    """``summary.summarize`` of every worker and key on the scheduler."""
    workers, keys = await _state(client)
    return summarize(workers, [(status, tuple(holders), nbytes, None)
                               for _, status, holders, nbytes, _ in keys],
                     [key for key, *_ in keys])


async def key_items(client) -> list[dict]:
    """Every key as the REST API lists it: ``{"key", "status", "nbytes", "size", "type",
    "workers"}``."""
    _, keys = await _state(client)
    return [{"key": key, "status": status, "nbytes": nbytes, "size": nbytes, "type": type_,
             "workers": holders} for key, status, holders, nbytes, type_ in keys]


async def history(client, step: int = 1) -> dict:
    """The last five minutes of each worker's memory and data held (``history.columns``)."""
    if not await install(client):
        return columns([], {})
    answer = await client.scheduler.scatter_magics_history()
    samples = [(t, tuple(tuple(w) for w in ws)) for t, ws in answer["samples"]]
    return columns(samples, answer["names"], step=step, interval=answer["interval"])


async def tasks(client, since: int = 0) -> dict:
    """``{"index", "now", "tasks"}``: task records after cursor ``since`` (last minute)."""
    if not await install(client):
        return {"index": 0, "now": None, "tasks": []}
    from dask.utils import key_split

    answer = await client.scheduler.scatter_magics_tasks(since=since)
    records = [from_dask(key, key_split(key), worker, thread, startstops, status)
               for key, worker, thread, startstops, status in answer["tasks"]]
    return {"index": answer["index"], "now": answer["now"],
            "tasks": [r for r in records if r is not None]}
