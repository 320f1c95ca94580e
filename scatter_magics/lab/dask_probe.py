"""Asking a registered *Dask* cluster what it holds, from the Jupyter server's event loop.

One asynchronous ``distributed.Client`` per cluster, made on first use on the server's own
loop (``distributed`` is imported only when a Dask cluster is registered). The answers have
the same shape as :class:`~scatter_magics.lab.probe.EmbeddedProbe`'s. Dask keeps no type
name per key on the scheduler side that a client can read, so ``type`` is null; a key with
a holder is ``finished``, one without is ``pending``.
"""

from __future__ import annotations

import asyncio

from ..discovery import Entry
from ..errors import ClusterUnreachableError
from ..keys import value_name
from .probe import rounded_memory

CONNECT_TIMEOUT = 3.0  # s
REQUEST_TIMEOUT = 3.0


class DaskProbe:
    """One asynchronous ``distributed.Client`` of a registered Dask scheduler."""

    # After a shutdown the owning kernel lives on and would keep its file until its client
    # closes: the server removes it.
    owner_unregisters = False
    reports_changes = False  # no event stream here: the watcher lists it again each second

    def __init__(self, entry: Entry):
        self.entry = entry
        self._client = None
        self._opening = asyncio.Lock()

    async def _connected(self):
        async with self._opening:
            if self._client is None or self._client.status != "running":
                import distributed

                from ..dask.credentials import security_from_fields

                self.close()
                # A TLS or gateway:// cluster a kernel connected to: the same security
                # (for dask-gateway, importing its class registers its transport).
                security = security_from_fields(self.entry.security)
                self._client = await distributed.Client(
                    self.entry.scheduler_address, asynchronous=True, set_as_default=False,
                    timeout=CONNECT_TIMEOUT, security=security)
            return self._client

    async def _ask(self, call):
        try:
            client = await asyncio.wait_for(self._connected(), CONNECT_TIMEOUT + 1)
            return await asyncio.wait_for(call(client), REQUEST_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            self.close()
            raise ClusterUnreachableError(f"the Dask scheduler at {self.entry.scheduler_address} "
                                          f"did not answer: {type(exc).__name__}") from exc

    async def _state(self, client) -> tuple[dict, dict, dict]:
        info = await client.scheduler.identity(n_workers=-1)
        who_has = await client.who_has()
        nbytes = await client.nbytes(summary=False)
        return info, dict(who_has), dict(nbytes)

    async def overview(self) -> dict:
        info, who_has, nbytes = await self._ask(self._state)
        workers = []
        for address, w in info["workers"].items():
            metrics = w.get("metrics", {})
            held = [k for k, holders in who_has.items() if address in holders]
            workers.append({"address": address, "name": str(w.get("name", address)),
                            "nthreads": w.get("nthreads", 0),
                            "memory_limit": w.get("memory_limit") or 0,
                            "memory": rounded_memory(metrics.get("memory", 0)),
                            "nkeys": len(held),
                            "nbytes": sum(nbytes.get(k, 0) for k in held)})
        workers.sort(key=lambda w: w["name"])
        by_status: dict[str, int] = {}
        for holders in who_has.values():
            status = "finished" if holders else "pending"
            by_status[status] = by_status.get(status, 0) + 1
        return {"workers": workers, "keys": {"count": len(who_has), "by_status": by_status,
                                             "nbytes": sum(nbytes.values()),
                                             "names": len({value_name(k) for k in who_has})}}

    async def keys(self, offset: int, limit: int, status: str | None) -> dict:
        _, who_has, nbytes = await self._ask(self._state)
        items = [{"key": str(k), "status": "finished" if holders else "pending",
                  "nbytes": nbytes.get(k), "type": None, "workers": sorted(holders)}
                 for k, holders in who_has.items()]
        if status:
            items = [i for i in items if i["status"] == status]
        return {"total": len(items), "offset": offset, "keys": items[offset:offset + limit]}

    async def watch(self, on_change) -> bool:
        """Never subscribes (False): a Dask cluster's changes are not pushed to us; the
        watcher asks it again once a second while a sidebar is open (``watch.ListingWatch``)."""
        return False

    def unwatch(self) -> None:
        pass

    async def stop(self) -> None:
        """Shut the scheduler and its workers down (the owning client then sees it closed)."""
        await self._ask(lambda client: client.shutdown())
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            asyncio.ensure_future(client.close())
