"""How a client reaches its scheduler: in-process calls, or a TCP :class:`Channel`.

Both links offer the same three methods, all used on the client's loop thread:
``await request(msg)``, ``send(msg)`` and ``close()``. Reports from the scheduler
(``key-update``, ``events``) go to the ``on_report(msg)`` callback.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from typing import Callable

from ...errors import CommClosedError
from ..wire.comm import Channel, connect

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
                                                                 "worker-unresponsive",
                                                                 "task-output")}
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
