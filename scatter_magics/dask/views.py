"""A Dask cluster's summary (with its published datasets), memory history and task
stream, as every view shows them.

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
        from .install import register_by_value

        try:
            register_by_value(client, Recorder(), NAME)
            _installed[client] = True
        except Exception:
            logger.info("cannot install the scatter_magics recorder", exc_info=True)
            _installed[client] = False
    return _installed[client]


async def _register(client, plugin) -> None:
    """Register it by value, as every plugin of ours (``install.py``): the usual shared
    cluster has ``distributed`` but not this package (the recorder imports only the
    standard library, tornado and distributed)."""
    from distributed.protocol.pickle import dumps

    from .install import shipped_by_value

    with shipped_by_value():
        payload = dumps(plugin)
    await client.scheduler.register_scheduler_plugin(plugin=payload, name=NAME,
                                                      idempotent=True)


async def _ask(client, op: str, **fields):
    """The recorder's answer to ``op``, or None where the scheduler refused it. Installed
    again when it is gone: the last client of ours to leave takes it off (``install.py``)."""
    for last in (False, True):
        if not await install(client):
            return None
        try:
            return await getattr(client.scheduler, op)(**fields)
        except Exception:
            if last:
                raise
            _installed.pop(client, None)  # taken off since we installed it: again


async def _state(client) -> tuple[list[dict], list[list]]:
    """Every worker's fields, and ``[key, status, workers, nbytes, type]`` per key."""
    answer = await _ask(client, "scatter_magics_overview")
    if answer is not None:
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
    """``summary.summarize`` of every worker and key on the scheduler, with its published
    ``datasets``."""
    workers, keys = await _state(client)
    summary = summarize(workers, [(status, tuple(holders), nbytes, None)
                                  for _, status, holders, nbytes, _ in keys],
                        [key for key, *_ in keys])
    return {**summary, "datasets": await datasets(client)}


async def datasets(client) -> list[dict]:
    """``[{name, nbytes, workers}]`` of the published datasets (:mod:`.published`, in the
    recorder); where the scheduler refused it, Dask's own list: names only (reading the
    sizes there would unpickle the data)."""
    try:
        answer = await _ask(client, "scatter_magics_datasets")
    except Exception:  # an older recorder without the handler
        logger.info("cannot list the published datasets' sizes", exc_info=True)
        answer = None
    if answer is not None:
        return answer
    return [{"name": str(name), "nbytes": None, "workers": []}
            for name in await client.list_datasets()]


async def key_items(client) -> list[dict]:
    """Every key as the REST API lists it: ``{"key", "status", "nbytes", "size", "type",
    "workers"}``."""
    _, keys = await _state(client)
    return [{"key": key, "status": status, "nbytes": nbytes, "size": nbytes, "type": type_,
             "workers": holders} for key, status, holders, nbytes, type_ in keys]


async def history(client, step: int = 1) -> dict:
    """The last five minutes of each worker's memory and data held (``history.columns``)."""
    answer = await _ask(client, "scatter_magics_history")
    if answer is None:
        return columns([], {})
    samples = [(t, tuple(tuple(w) for w in ws)) for t, ws in answer["samples"]]
    return columns(samples, answer["names"], step=step, interval=answer["interval"])


async def tasks(client, since: int = 0) -> dict:
    """``{"index", "now", "tasks"}``: task records after cursor ``since`` (last minute)."""
    answer = await _ask(client, "scatter_magics_tasks", since=since)
    if answer is None:
        return {"index": 0, "now": None, "tasks": []}
    from dask.utils import key_split

    records = [from_dask(key, key_split(key), worker, thread, startstops, status)
               for key, worker, thread, startstops, status in answer["tasks"]]
    return {"index": answer["index"], "now": answer["now"],
            "tasks": [r for r in records if r is not None]}
