"""One TCP connection as an asyncio protocol: :class:`Connection`, which a
:class:`~.comm.Channel` adopts once both ends proved they know the secret (``comm.py``)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

from ...errors import CommClosedError, ProtocolError
from . import protocol

logger = logging.getLogger("scatter_magics.engine.wire.comm")

_SCRATCH = bytearray(64)  # where bytes an untrusted peer sends too many go, unread


class Connection(asyncio.BufferedProtocol):
    """One TCP connection: fixed-size reads for the handshake, then whole messages.

    Until a :class:`Channel` adopts it, bytes are only buffered, for :meth:`read_exactly`;
    nothing is unpickled before both ends have proved they know the secret, and until
    then the connection holds at most :data:`protocol.HANDSHAKE_SIZE` bytes: a peer that
    sends more than the handshake before it is trusted is cut off.
    """

    def __init__(self, on_made: Callable[["Connection"], None] | None = None):
        self.decoder = protocol.FrameDecoder(staging=protocol.HANDSHAKE_SIZE)
        self.transport: asyncio.Transport | None = None
        self.channel = None  # the comm.Channel that adopted it
        self._on_made = on_made
        self._waiter: tuple[int, asyncio.Future] | None = None
        self._trusted = False
        self._overflow = False  # an untrusted peer sent more than the handshake holds
        self.lost = False

    @property
    def trusted(self) -> bool:
        """The peer proved it knows the secret; only then may buffers grow."""
        return self._trusted

    @trusted.setter
    def trusted(self, value: bool) -> None:
        self._trusted = value
        if value:
            self.decoder.grow()

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        try:
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # reset already; connection_lost follows
            logger.debug("connection reset before it was set up", exc_info=True)
        if self._on_made is not None:
            self._on_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self.decoder.get_buffer(grow=self._trusted)
        if view is None:  # an untrusted peer sent more than the handshake
            self._overflow = True
            return memoryview(_SCRATCH)  # read into a throwaway buffer, then close
        return view

    def buffer_updated(self, nbytes: int) -> None:
        if self._overflow:
            self.close_quietly("sent more than the handshake before authenticating")
            return
        self.decoder.filled(nbytes)
        if self.channel is not None:
            self.deliver()
        elif self._waiter is not None:
            n, waiter = self._waiter
            data = self.decoder.take(n)
            if data is not None and not waiter.done():
                self._waiter = None
                waiter.set_result(data)

    def write(self, data: bytes) -> None:
        """Write handshake bytes; a connection closed meanwhile raises CommClosedError."""
        if self.lost or self.transport.is_closing():
            raise CommClosedError("connection closed")
        try:
            self.transport.write(data)
        except RuntimeError as exc:  # uvloop: "unable to perform operation on ... closed"
            raise CommClosedError("connection closed") from exc

    def close_quietly(self, why: str) -> None:
        logger.debug("closing a connection: %s", why)
        self.transport.close()

    def deliver(self) -> None:
        """Hand every whole message received so far to the channel."""
        try:
            for frames in self.decoder.messages():
                if self.channel.closed:
                    return
                self.channel._receive(frames)
        except ProtocolError as exc:
            self.channel._drop(exc)

    async def read_exactly(self, n: int) -> bytes:
        """The next ``n`` bytes, for the handshake."""
        data = self.decoder.take(n)
        if data is not None:
            return data
        if self.lost:
            raise CommClosedError("connection closed")
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = (n, waiter)
        return await waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._waiter is not None and not self._waiter[1].done():
            self._waiter[1].set_exception(CommClosedError("connection closed"))
        if self.channel is not None:
            self.channel.close()
