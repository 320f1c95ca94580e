"""The Client's house-keeping on its loop: functions on workers and the scheduler, files,
versions, restarting and waiting for workers (Dask's ``run``, ``run_on_scheduler``,
``upload_file``, ``get_versions``, ``restart``, ``wait_for_workers``, ``rebalance``).

Functions given to ``run`` travel pickled apart from their message (a
:class:`~scatter_magics.engine.wire.serialize.Serialized`), so one that cannot be
unpickled over there fails that call with its own error and leaves the connection alone.
Calls to workers go straight to them, all at once, over the client's connections.

>>> house = Housekeeping(link, worker_pool)                       # doctest: +SKIP
>>> loop.sync(house.run(os.getpid, (), {}, None, True, "raise"))  # doctest: +SKIP
{'tcp://127.0.0.1:40125': 4242, 'tcp://127.0.0.1:40127': 4243}
"""

from __future__ import annotations

import asyncio
import os
import warnings
from typing import Callable

from ... import versions
from ...errors import VersionMismatchWarning
from ..wire.peers import WorkerPool
from ..wire.serialize import PICKLED

ON_ERROR = ("raise", "return", "ignore")


class Housekeeping:
    """Cluster-wide calls for one client: ``link`` to its scheduler, ``workers`` its
    connections to the workers, ``codec`` how functions travel (``serialize.Codec``)."""

    def __init__(self, link, workers: WorkerPool, codec=PICKLED):
        self.link, self.workers, self.codec = link, workers, codec

    async def addresses(self, workers=None) -> list[str]:
        """The addresses of the live workers ``workers`` names (default: all of them)."""
        return await self.link.request({"op": "worker-addresses", "workers": workers})

    async def run(self, function, args: tuple, kwargs: dict, workers, wait: bool,
                  on_error: str, nanny: bool = False) -> dict:
        """``{address: function(*args, **kwargs)}`` on each worker (see ``Client.run``)."""
        if nanny:
            raise NotImplementedError("run(nanny=True): the workers have no nanny (the "
                                      "cluster's supervisor, in the client's process, "
                                      "restarts them)")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        msg = {"op": "run", "call": self.codec.serialize((function, tuple(args), kwargs)), "wait": wait}
        results = await self._on_workers(msg, workers, on_error)
        return results if wait else None  # (left running: nothing to give, as in Dask)

    async def _on_workers(self, msg: dict, workers, on_error: str = "raise") -> dict:
        targets = await self.addresses(workers)
        replies = await asyncio.gather(*(self.workers.request(a, dict(msg)) for a in targets),
                                       return_exceptions=True)
        out = {}
        for address, reply in zip(targets, replies):
            if isinstance(reply, BaseException):
                if on_error == "raise":
                    raise reply
                if on_error == "ignore":
                    continue
            out[address] = reply
        return out

    async def run_on_scheduler(self, function, args: tuple, kwargs: dict, wait: bool = True):
        """``function(*args, **kwargs)`` on the scheduler's loop (``dask_scheduler=``: it)."""
        return await self.link.request({"op": "run-on-scheduler", "wait": wait,
                                        "call": self.codec.serialize((function, tuple(args), kwargs))})

    async def upload_file(self, filename: str, load: bool) -> None:
        """Send the file at ``filename`` to every worker, now and joining later."""
        with open(filename, "rb") as f:  # (a missing file raises here, naming it)
            data = f.read()
        await self.link.request({"op": "upload-file", "filename": os.path.basename(filename),
                                 "data": data, "load": load})

    async def versions(self, check: bool, packages) -> dict:
        """``{"scheduler": ..., "workers": {address: ...}, "client": ...}`` (``versions.py``)."""
        packages = list(packages or ())
        scheduler = await self.link.request({"op": "versions", "packages": packages})
        workers = await self._on_workers({"op": "versions", "packages": packages}, None,
                                         "ignore")
        found = {"scheduler": scheduler, "workers": workers,
                 "client": versions.get_versions(packages)}
        if check:
            error, warning = versions.mismatches(found)
            if warning:
                warnings.warn(warning, VersionMismatchWarning, stacklevel=4)
            if error:
                raise ValueError(error)
        return found

    async def restart(self, timeout: float | None, wait_for_workers: bool,
                      cancel_all: Callable[[], None]) -> None:
        """Fresh workers; every key forgotten and (``cancel_all()``) every future cancelled."""
        await self.link.request({"op": "restart", "timeout": timeout,
                                 "wait_for_workers": wait_for_workers})
        cancel_all()

    async def wait_for_workers(self, n_workers: int, timeout: float | None) -> None:
        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
            raise ValueError(f"`n_workers` must be a positive integer. Instead got {n_workers}.")
        await self.link.request({"op": "wait-for-workers", "n": n_workers, "timeout": timeout})

    async def rebalance(self, keys, workers) -> None:
        """Move data between ``workers`` until each holds about the same bytes."""
        await self.link.request({"op": "rebalance", "keys": keys, "workers": workers})

