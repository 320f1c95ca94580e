"""Connections inside one process (``inproc://`` addresses): messages handed over as they
are, never pickled, as Dask's inproc transport.

A cluster whose workers are threads of this process (``Client(processes=False)``) runs
its scheduler and workers on one event loop; each :class:`~.comm.Server` may listen here
too (:meth:`Server.listen_inproc <.comm.Server.listen_inproc>`), and :func:`.comm.connect`
to an ``inproc://`` address gives a pair of :class:`InprocChannel` s. Values then travel
as :class:`~.serialize.Unpickled`: the objects themselves. Nothing in another process can
reach such an address; the scheduler still listens on TCP for them.

>>> import asyncio
>>> from scatter_magics.engine.wire.comm import Server, connect
>>> async def demo():
...     server = Server("secret", {"echo": lambda channel, msg: msg["value"]})
...     address = server.listen_inproc()
...     channel = await connect(address, "secret")
...     box = [1, 2]
...     reply = await channel.request({"op": "echo", "value": box})
...     server.close()
...     return address.startswith("inproc://"), reply is box
>>> asyncio.run(demo())
(True, True)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os

from ...errors import CommClosedError
from .comm import Channel

logger = logging.getLogger(__name__)

_listening: dict = {}  # inproc address -> the Server listening there
_numbers = itertools.count()


def listen(server) -> str:
    """A new ``inproc://`` address that reaches ``server`` (until :func:`stop`)."""
    address = f"inproc://{os.getpid()}/{next(_numbers)}"
    _listening[address] = server
    return address


def stop(address: str) -> None:
    _listening.pop(address, None)


def connect(address: str, handlers: dict | None = None) -> "InprocChannel":
    """Our end of a new pair of channels to the server at ``address``."""
    server = _listening.get(address)
    if server is None:
        raise CommClosedError(f"cannot connect to {address}: nothing listens there (it is "
                              "in another process, or closed)")
    ours = InprocChannel(address, handlers)
    theirs = InprocChannel(f"inproc peer of {address}", server.handlers)
    ours.other, theirs.other = theirs, ours
    server.adopt(theirs)
    ours.start()
    return ours


class _NoTransport:
    """What a Channel expects of a transport, for a channel without one."""

    closing = False

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name, default=None):
        return default


class _NoConnection:
    lost = False
    channel = None

    def __init__(self):
        self.transport = _NoTransport()

    def deliver(self) -> None:
        pass


class InprocChannel(Channel):
    """One end of a channel inside this process: what one end sends, the other's
    handlers get on its loop's next turn, in order, as the same objects."""

    def __init__(self, peer: str, handlers: dict | None = None):
        super().__init__(_NoConnection(), peer, handlers)
        self.loop = asyncio.get_running_loop()
        self.other: InprocChannel | None = None

    def _write(self, msg: dict) -> None:  # (Channel.send and send_soon's batches)
        if self.other is None or self.other.closed:
            raise CommClosedError(f"connection to {self.peer} is closed")
        if asyncio.get_running_loop() is self.other.loop:
            self.other.loop.call_soon(self.other._arrive, msg)
        else:
            self.other.loop.call_soon_threadsafe(self.other._arrive, msg)

    def _arrive(self, msg: dict) -> None:
        if self.closed:
            return
        try:
            self._dispatch(msg)
        except Exception:
            logger.exception("dropping connection to %s", self.peer)
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        other = self.other
        if other is not None and not other.closed:  # as a socket's far end sees it close
            other.loop.call_soon_threadsafe(other.close)
