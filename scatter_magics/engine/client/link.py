"""How a client reaches its scheduler: in-process calls, or a TCP :class:`Channel`.

Both links offer the same three methods, all used on the client's loop thread:
``await request(msg)``, ``send(msg)`` and ``close()``. Reports from the scheduler
(``key-update``, ``events``, ``task-output``, and from an in-process scheduler ``scheduler-closing``) go
to the ``on_report(msg)`` callback; a remote link calls ``on_lost(reason)`` when its
scheduler goes away. :func:`releaser` sends the releases of dropped futures.
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

    def close(self, cluster_ending: bool = False) -> None:
        """Leave the scheduler; its keys are released unless the cluster ends next."""
        if not self.closed:
            self.closed = True
            self.scheduler.remove_client(self.client_id, release_keys=not cluster_ending)


class RemoteSchedulerLink:
    """A scheduler in another process, over an authenticated channel.

    Its channel can close under it: the scheduler's process closed the cluster (it says
    why first, in a ``scheduler-closing`` message), died, or the network failed. Then
    ``on_lost(reason)`` runs once, on the loop thread; never when :meth:`close` closed it.
    """

    def __init__(self, address: str):
        self.address = address
        self.channel: Channel | None = None
        self.client_id = ""
        self.closing_reason: str | None = None  # what the scheduler said before it closed
        self._closed_by_us = False

    @classmethod
    async def open(cls, address: str, secret: str, on_report: Callable[[dict], None],
                   timeout: float, on_lost: Callable[[str], None] | None = None,
                   ) -> "RemoteSchedulerLink":
        link, report = cls(address), _weakly(on_report)
        handlers = {op: (lambda ch, msg: report(msg)) for op in ("key-update", "events",
                                                                 "worker-unresponsive",
                                                                 "task-output", "resend")}
        handlers["scheduler-closing"] = link._on_closing
        link.channel = await connect(address, secret, handlers, timeout=timeout)
        if on_lost is not None:
            lost = _weakly(on_lost)
            link.channel.on_close.append(lambda channel: link._closed_by_us or lost(link.reason))
        reply = await link.channel.request({"op": "register-client"})
        link.client_id = reply["client_id"]
        return link

    def _on_closing(self, channel: Channel, msg: dict) -> None:
        reason = msg.get("reason")
        self.closing_reason = reason if isinstance(reason, str) and reason else None

    @property
    def reason(self) -> str:
        """Why the channel closed, as a user should read it (``not live: <reason>``)."""
        return self.closing_reason or (f"the connection to the scheduler at {self.address} "
                                       f"was lost: its process died, or the network failed")

    @property
    def closed(self) -> bool:
        return self.channel.closed

    async def request(self, msg: dict):
        return await self.channel.request(msg)

    def send(self, msg: dict) -> None:
        self.channel.send(msg)

    def close(self, cluster_ending: bool = False) -> None:
        """Leave the scheduler (which releases our keys when the channel closes)."""
        self._closed_by_us = True
        self.channel.close()


def releaser(link, on_release: Callable[[list], None] | None = None) -> Callable[[list], None]:
    """``send_release(keys)``: tell the scheduler through ``link`` that no Future of
    ours holds ``keys`` now (nothing, once the link is closed), after ``on_release(keys)``
    (what else this client drops with them: its copies kept for re-sending)."""
    def send_release(keys: list) -> None:
        if on_release is not None:
            on_release(keys)
        if not link.closed:
            link.send({"op": "release-keys", "keys": keys})
    return send_release


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
