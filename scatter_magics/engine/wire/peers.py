"""Talking to workers directly: a pool of channels, and reads from whichever holder answers.

Clients (``direct=True`` scatters and gathers), the scheduler (gathers on a client's
behalf) and workers (fetching a task's inputs from peers) all read data from the
workers that hold it the same way.
"""

from __future__ import annotations

import asyncio

from ...errors import CommClosedError
from ...structure import gather_all
from .comm import Channel, connect


class WorkerPool:
    """Open channels to workers, for ``direct=True`` transfers; one per worker."""

    def __init__(self, secret: str):
        self.secret = secret
        self.channels: dict[str, Channel] = {}

    async def request(self, address: str, msg: dict):
        channel = self.channels.get(address)
        if channel is None or channel.closed:
            channel = self.channels[address] = await connect(address, self.secret)
        return await channel.request(msg)

    def fail_pending(self, address: str, error: Exception) -> None:
        """Fail our requests waiting on ``address`` (it stopped answering)."""
        channel = self.channels.get(address)
        if channel is not None:
            channel.fail_pending(error)

    def send(self, address: str, msg: dict) -> None:
        """Send over the open channel to ``address``, if there is one; never connects."""
        channel = self.channels.get(address)
        if channel is not None and not channel.closed:
            try:
                channel.send(msg)
            except CommClosedError:
                pass

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.channels.clear()


async def fetch_from_holders(keys: list, locate, request, attempts: int = 3) -> dict:
    """``{key: Serialized}`` read from the workers that hold ``keys``.

    ``locate(keys)`` gives ``{key: [addresses]}`` (and raises for lost keys);
    ``request(address, msg)`` asks one worker. A holder that dies mid-read is retried
    once the scheduler knows it is gone: the next replica answers, or the key's own
    ``FutureLostError`` is raised.
    """
    out: dict = {}
    for attempt in range(attempts):
        missing = [k for k in keys if k not in out]
        by_worker: dict[str, list] = {}
        for key, addresses in (await locate(missing)).items():
            by_worker.setdefault(addresses[0], []).append(key)
        replies = await gather_all(_ask(request, a, ks) for a, ks in by_worker.items())
        failures = [r for r in replies if isinstance(r, CommClosedError)]
        for reply in replies:
            if not isinstance(reply, CommClosedError):
                out.update(reply)
        if not failures:
            return out
        if attempt == attempts - 1:
            raise failures[0]
        await asyncio.sleep(0)  # let the closed connection's cleanup run first
    return out


async def _ask(request, address: str, keys: list):
    try:
        return await request(address, {"op": "get-data", "keys": keys})
    except CommClosedError as exc:
        return exc
