"""How a client reaches its scheduler: in-process calls, or a TCP :class:`Channel`.

Both links offer the same three methods, all used on the client's loop thread:
``await request(msg)``, ``send(msg)`` and ``close()``. Reports from the scheduler
(``key-update``, ``events``) go to the ``on_report(msg)`` callback.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from typing import Callable

from .comm import Channel, connect
from ..errors import CommClosedError
from ..structure import gather_all

logger = logging.getLogger(__name__)


class LocalSchedulerLink:
    """A scheduler in this process, on the same loop: messages are plain calls."""

    def __init__(self, scheduler, on_report: Callable[[dict], None]):
        self.scheduler = scheduler
        self.ops = scheduler.client_ops()
        self.client_id = scheduler.local_client(_weakly(on_report))
        self.closed = False

    async def request(self, msg: dict):
        if self.closed:
            raise CommClosedError("the client's link to the scheduler is closed")
        result = self.ops[msg["op"]](self.client_id, msg)
        return await result if inspect.isawaitable(result) else result

    def send(self, msg: dict) -> None:
        if self.closed:
            return
        try:
            result = self.ops[msg["op"]](self.client_id, msg)
        except Exception:
            logger.exception("scheduler failed on %r", msg["op"])
            return
        if inspect.isawaitable(result):
            raise TypeError(f"op {msg['op']!r} must be requested, not sent")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.scheduler.remove_client(self.client_id)


class RemoteSchedulerLink:
    """A scheduler in another process, over an authenticated channel."""

    def __init__(self, channel: Channel, client_id: str):
        self.channel = channel
        self.client_id = client_id

    @classmethod
    async def open(cls, address: str, secret: str, on_report: Callable[[dict], None],
                   timeout: float) -> "RemoteSchedulerLink":
        report = _weakly(on_report)
        handlers = {op: (lambda ch, msg: report(msg)) for op in ("key-update", "events",
                                                                 "worker-unresponsive")}
        channel = await connect(address, secret, handlers, timeout=timeout)
        reply = await channel.request({"op": "register-client"})
        return cls(channel, reply["client_id"])

    @property
    def closed(self) -> bool:
        return self.channel.closed

    async def request(self, msg: dict):
        return await self.channel.request(msg)

    def send(self, msg: dict) -> None:
        self.channel.send(msg)

    def close(self) -> None:
        self.channel.close()


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


def _weakly(method: Callable[[dict], None]) -> Callable[[dict], None]:
    """``method`` without keeping its object alive.

    The scheduler and the loop thread outlive a client the user dropped; a strong
    reference from them would keep the client (and its cluster) alive forever.
    """
    ref = weakref.WeakMethod(method)

    def call(msg: dict) -> None:
        target = ref()
        if target is not None:
            target(msg)
    return call


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
