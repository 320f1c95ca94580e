"""Asking a registered *Dask* cluster what it holds, from the Jupyter server's event loop.

One asynchronous ``distributed.Client`` per cluster, made on first use on the server's own
loop (``distributed`` is imported only when a Dask cluster is registered). The answers have
the same shape as :class:`~scatter_magics.lab.probe.EmbeddedProbe`'s, made by
:mod:`scatter_magics.dask.views` (the same functions ``%cluster`` on Dask uses), from
the recorder plugin it installs on first use.
"""

from __future__ import annotations

import asyncio

from ..discovery import Entry
from ..errors import ClusterUnreachableError
from ..key_pages import page_of
from .probe import shown

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

    async def overview(self) -> dict:
        """The summary every view shows (``dask.views.overview``), published datasets
        included."""
        from ..dask import views

        return shown(await self._ask(views.overview))

    async def history(self, step: int = 1) -> dict:
        from ..dask import views

        return await self._ask(lambda client: views.history(client, step))

    async def tasks(self, since: int) -> dict:
        from ..dask import views

        return await self._ask(lambda client: views.tasks(client, since))

    async def keys(self, offset: int, limit: int, status: str | None, name: str | None = None,
                   sort: str | None = None, descending: bool = False) -> dict:
        from ..dask import views

        return page_of(await self._ask(views.key_items), offset, limit, status, name, sort,
                       descending)

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

