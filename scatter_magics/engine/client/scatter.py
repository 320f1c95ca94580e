"""A scatter's journey from the caller's data to the workers' memory.

:meth:`Scattering.pack` makes the keys, the futures and the payload (on the calling
thread); then either :meth:`Scattering.send_ahead` queues a few small values for the
loop and returns at once (``send_ahead.py``), or the :meth:`Scattering.send` coroutine
carries the payload to the workers, directly or through the scheduler, and finishes
the futures' states.

>>> batch = scattering.pack([1, 2], True, None, client)              # doctest: +SKIP
>>> scattering.send_ahead(batch, 30.0) or loop.sync(scattering.send(
...     batch, None, False, False, 30.0, False, no_progress))          # doctest: +SKIP
>>> batch.result                                                     # doctest: +SKIP
[<Future: finished, type: int, key: int-…>, <Future: finished, type: int, key: int-…>]
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from ...progress_callback import Progress, no_progress
from ...progress_callback import counter as _counter
from ...tokenize import reporting
from ..scheduler.placing import place
from ..wire.peers import WorkerPool
from ..wire.serialize import Unpickled, for_message
from .future import Future
from .scatter_copy import owned_by, serialize_for_scatter, write_ahead
from .scatter_input import keyed_items
from .send_ahead import LOCAL_COPY_LIMIT, SendAhead

logger = logging.getLogger("scatter_magics.engine.client.client")

TAKE_BACK_TIMEOUT = 5.0  # s; a failed direct scatter asks the scheduler what to delete


class ScatterBatch:
    """One scatter's futures and payload, and what the caller gets back."""

    __slots__ = ("futures", "payload", "pinned", "types", "result")

    def __init__(self, futures: dict, payload: dict, pinned: list, types: dict, result):
        self.futures = futures  # key → Future
        self.payload = payload  # key → Serialized (or its pickle)
        self.pinned = pinned  # keys whose shared memory this scatter holds until it is over
        self.types = types  # key → type name
        self.result = result  # the futures, in the shape of the data scattered


class Scattering:
    """Scatters for one client.

    ``link`` is its link to the scheduler, ``workers`` its channels to the workers,
    ``pool`` the cluster's shared memory (None when remote), ``local`` whether the
    workers run on this machine, ``ahead`` its scatters sent ahead, ``state_of(key)``
    the key's current ``FutureState`` (or None once no Future holds it), and
    ``in_process`` whether the workers are threads of this process (values go unpickled).
    """

    def __init__(self, link, workers: WorkerPool, pool, local: bool, ahead: SendAhead,
                 state_of: Callable, in_process: bool = False):
        self.link, self.workers, self.pool, self.local = link, workers, pool, local
        self.ahead, self.state_of = ahead, state_of
        self.in_process = in_process  # workers share this process: nothing is pickled

    def pack(self, data, hash: bool, progress: Progress | None, client) -> ScatterBatch:
        """Keys, ``client``'s futures and the payload for ``data``."""
        early = write_ahead(self.pool, data, progress) if hash else None
        try:
            with reporting(_counter(progress, "hash") if progress else None):
                items, rebuild = keyed_items(data, hash)  # hashing, while `early` copies
            futures = Future.for_keys(items, client)
            if self.in_process:
                payload, pinned = {key: Unpickled(v) for key, v in items.items()}, []
            else:
                payload, pinned = serialize_for_scatter(items, self.pool, self.local, early,
                                                        progress)
        finally:
            if early is not None:
                early.close()
        types = {key: type(value).__name__ for key, value in items.items()}
        return ScatterBatch(futures, payload, pinned, types, rebuild(futures))

    def send_ahead(self, batch: ScatterBatch, wait: float) -> bool:
        """Finish ``batch``'s futures now and send it in the background, if it may go
        ahead (see ``send_ahead.py``); False: nothing was done."""
        states = [f._state for f in batch.futures.values()]
        payload, types = batch.payload, batch.types
        return self.ahead.send(payload, types, states, lambda: self.transfer(
            payload, types, None, False, False, wait, False))

    async def send(self, batch: ScatterBatch, workers, broadcast: bool, direct: bool,
                   wait: float | None, confirm: bool, report: Progress) -> None:
        """Carry ``batch`` to the workers and finish its keys' states.

        ``wait`` bounds the wait for workers; ``confirm`` waits for the workers'
        acknowledgements too (see :meth:`transfer`).
        """
        payload, types = batch.payload, batch.types
        # A sum over every value: only for someone watching (10,000-element scatters).
        total = sum(s.nbytes for s in payload.values()) if report is not no_progress else 0
        report("transfer", 0, total)
        try:
            await self.transfer(payload, types, workers, broadcast, direct, wait, confirm)
            report("transfer", total, total)
        finally:  # sent (the scheduler has recorded the keys) or failed: unpin either way
            if batch.pinned:
                self.pool.unpin(batch.pinned)
        state_of, pool = self.state_of, self.pool
        for key, serialized in payload.items():
            state = state_of(key)
            if state is not None:
                # The pickle alone (bytes): no object for the garbage collector per key.
                # kept_locally(), inlined: a call less per element of a long list.
                if serialized.buffers:  # in our pool: its segment stays while the key does
                    local = serialized if owned_by(pool, serialized) else None
                else:
                    small = len(serialized.header) <= LOCAL_COPY_LIMIT
                    local = serialized.header if small else None
                state.finish(types[key], local)

    async def transfer(self, payload: dict, types: dict, workers, broadcast: bool,
                       direct: bool, wait: float | None, confirm: bool) -> None:
        """Send ``payload`` to workers: ``direct``ly, or through the scheduler."""
        payload, nbytes, shared = for_message(payload)
        if direct:
            await self._transfer_direct(payload, nbytes, shared, types, workers, broadcast, wait)
        else:
            # An explicit timeout asks to know the data arrived within it: then the
            # scheduler waits for the workers' acknowledgements (see ScatterOps.scatter).
            await self.link.request({"op": "scatter", "data": payload, "workers": workers,
                                     "broadcast": broadcast, "nbytes": nbytes, "types": types,
                                     "shared": shared, "timeout": wait, "confirm": confirm})

    async def _transfer_direct(self, payload, nbytes, shared, types, workers, broadcast,
                               wait) -> None:
        async def choose(keys, exclude):
            return await self.link.request({
                "op": "choose-workers", "n": len(keys), "workers": workers,
                "broadcast": broadcast, "timeout": wait, "exclude": exclude,
                "nbytes": {k: nbytes[k] for k in keys}})

        async def put(address, keys):
            return await self.workers.request(
                address, {"op": "put-data", "data": {k: payload[k] for k in keys}})

        async def record(placement):
            return await self.link.request({"op": "update-data", "placement": placement,
                                            "nbytes": nbytes, "types": types,
                                            "shared": shared, "broadcast": broadcast,
                                            "workers": workers,
                                            "copies": {k: payload[k] for k in shared}})
        await place(list(payload), choose, put, record, self._take_back)

    async def _take_back(self, by_worker: dict) -> None:
        """Delete what a failed direct scatter may have left on workers, unrecorded.

        The scheduler names the keys it does not record there (the same content may be
        held from an earlier scatter); the deletes go over our own channel to each
        worker, so they arrive after our put-data, never before it.
        """
        keys = {address: list(data) for address, data in by_worker.items()}
        try:
            orphans = await asyncio.wait_for(
                self.link.request({"op": "unrecorded", "by_worker": keys}), TAKE_BACK_TIMEOUT)
        except Exception as exc:  # the scheduler is gone or stuck: nothing to reconcile with
            logger.warning("could not take back a failed scatter's data: %r", exc)
            return
        for address, orphan_keys in orphans.items():
            self.workers.send(address, {"op": "delete-keys", "keys": orphan_keys})
