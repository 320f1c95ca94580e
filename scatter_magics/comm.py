"""Authenticated, framed connections: :class:`Channel`, :func:`connect`, :class:`Server`.

A ``Channel`` carries messages both ways over one tornado ``IOStream``. Each side can
``send`` a message, or ``request`` one and await the reply; incoming messages are handed
to a table of handlers keyed by ``op``. All methods run on the event-loop thread.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import socket
from typing import Awaitable, Callable

from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient
from tornado.tcpserver import TCPServer

from . import protocol
from .errors import AuthenticationError, CommClosedError, ProtocolError, portable

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds a peer gets to prove it knows the secret
SMALL_FRAMES = 1 << 16  # below this total, read all frames in one call
MAX_BUFFER = 1 << 62  # tornado needs a number; frames of many GB are legitimate

Handler = Callable[["Channel", dict], "object | Awaitable[object]"]


class Channel:
    """Messages over one authenticated stream.

    ``handlers`` maps an op to ``handler(channel, msg)``; what it returns (or awaits to)
    is the reply when the message came from :meth:`request`. An exception in a handler
    is sent back to the requester, which re-raises it.
    """

    def __init__(self, stream: IOStream, peer: str, handlers: dict[str, Handler] | None = None):
        self.stream = stream
        self.peer = peer
        self.handlers = handlers or {}
        self.on_close: list[Callable[[Channel], None]] = []
        self._replies: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task] = set()
        self._reader: asyncio.Task | None = None
        self.closed = False

    def start(self) -> None:
        self._reader = asyncio.ensure_future(self._read_loop())

    # ---------------------------------------------------------- sending ---
    def send(self, msg: dict) -> None:
        """Queue ``msg`` for the peer; raise CommClosedError if the stream is gone."""
        if self.closed:
            raise CommClosedError(f"connection to {self.peer} is closed")
        try:
            for frame in protocol.dumps(msg):
                self.stream.write(frame)
        except StreamClosedError as exc:
            raise CommClosedError(f"connection to {self.peer} is closed") from exc

    async def request(self, msg: dict):
        """Send ``msg`` and wait for the peer's reply."""
        msg["id"] = request_id = next(self._ids)
        reply = self._replies[request_id] = asyncio.get_running_loop().create_future()
        try:
            self.send(msg)
            return await reply
        finally:
            self._replies.pop(request_id, None)

    # ---------------------------------------------------------- receiving ---
    async def _read_frames(self) -> list:
        n, first = protocol.parse_prelude_start(await self.stream.read_bytes(16))
        if n == 1:
            return [await self.stream.read_bytes(first)] if first else [b""]
        rest = protocol.parse_frame_lengths(await self.stream.read_bytes(8 * (n - 1)), n - 1)
        lengths = (first, *rest)
        total = sum(lengths)
        if total <= SMALL_FRAMES:
            data = memoryview(await self.stream.read_bytes(total)) if total else memoryview(b"")
            offsets = itertools.accumulate(lengths, initial=0)
            return [data[a:a + n] for a, n in zip(offsets, lengths)]
        frames = []
        for length in lengths:
            buf = bytearray(length)
            if length:
                await self.stream.read_into(buf)
            frames.append(buf)
        return frames

    async def _read_loop(self) -> None:
        try:
            while True:
                self._dispatch(protocol.loads(await self._read_frames()))
        except StreamClosedError:
            pass
        except ProtocolError as exc:
            logger.warning("dropping connection to %s: %s", self.peer, exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("dropping connection to %s", self.peer)
        finally:
            self.close()

    def _dispatch(self, msg: dict) -> None:
        op = msg["op"]
        if op == "reply":
            reply = self._replies.get(msg["id"])
            if reply is not None and not reply.done():
                if "error" in msg:
                    reply.set_exception(msg["error"])
                else:
                    reply.set_result(msg.get("result"))
            return
        handler = self.handlers.get(op)
        if handler is None:
            self._reply_error(msg, ProtocolError(f"unknown op {op!r} from {self.peer}"))
            return
        try:
            result = handler(self, msg)
        except Exception as exc:
            self._reply_error(msg, exc)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._finish(msg, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif "id" in msg:
            self._reply(msg, {"op": "reply", "id": msg["id"], "result": result})

    async def _finish(self, msg: dict, awaitable) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._reply_error(msg, exc)
        else:
            if "id" in msg:
                self._reply(msg, {"op": "reply", "id": msg["id"], "result": result})

    def _reply_error(self, msg: dict, exc: Exception) -> None:
        if "id" not in msg:
            logger.error("error handling %r from %s", msg["op"], self.peer, exc_info=exc)
            return
        self._reply(msg, {"op": "reply", "id": msg["id"], "error": portable(exc)})

    def _reply(self, msg: dict, reply: dict) -> None:
        try:
            self.send(reply)
        except CommClosedError:
            logger.debug("peer %s left before its reply to %r", self.peer, msg["op"])
        except Exception as exc:  # the result itself could not be pickled
            self.send({"op": "reply", "id": msg["id"], "error": portable(exc)})

    # ---------------------------------------------------------- closing ---
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stream.close()
        error = CommClosedError(f"connection to {self.peer} closed")
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(error)
        for task in list(self._tasks):
            task.cancel()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        for callback in self.on_close:
            try:
                callback(self)
            except Exception:
                logger.exception("error in on_close callback for %s", self.peer)


def _tune(stream: IOStream) -> None:
    stream.set_nodelay(True)
    stream.max_buffer_size = MAX_BUFFER  # large frames are normal here
    stream.max_write_buffer_size = None


async def connect(address: str, secret: str, handlers: dict | None = None,
                  timeout: float = HANDSHAKE_TIMEOUT) -> Channel:
    """Open an authenticated :class:`Channel` to ``address``."""
    host, port = protocol.parse_address(address)
    try:
        stream = await asyncio.wait_for(TCPClient().connect(host, port), timeout)
    except (OSError, StreamClosedError) as exc:
        raise CommClosedError(f"cannot connect to {address}: {exc}") from exc
    _tune(stream)
    try:
        async def handshake():
            hello, nonce = protocol.client_hello(
                secret, await stream.read_bytes(protocol.SERVER_HELLO_SIZE))
            await stream.write(hello)
            protocol.check_server_proof(secret, nonce, await stream.read_bytes(protocol.MAC_SIZE))
        await asyncio.wait_for(handshake(), timeout)
    except StreamClosedError as exc:
        stream.close()
        raise CommClosedError(f"{address} closed the connection during the handshake: a wrong "
                              "cluster secret, or the peer died") from exc
    except BaseException:
        stream.close()
        raise
    channel = Channel(stream, address, handlers)
    channel.start()
    return channel


class Server(TCPServer):
    """Accepts authenticated connections on loopback and hands each a :class:`Channel`."""

    def __init__(self, secret: str, handlers: dict, on_channel: Callable[[Channel], None] | None = None):
        super().__init__(max_buffer_size=MAX_BUFFER)
        self.secret = secret
        self.handlers = handlers
        self.on_channel = on_channel
        self.channels: set[Channel] = set()
        self.address = ""

    def listen_on(self, host: str = "127.0.0.1", port: int = 0) -> str:
        sockets = self._bind(host, port)
        self.add_sockets(sockets)
        self.address = protocol.format_address(host, sockets[0].getsockname()[1])
        return self.address

    @staticmethod
    def _bind(host: str, port: int) -> list[socket.socket]:
        from tornado.netutil import bind_sockets

        return bind_sockets(port, address=host, family=socket.AF_INET if ":" not in host
                            else socket.AF_INET6)

    async def handle_stream(self, stream: IOStream, address) -> None:
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        _tune(stream)
        try:
            await asyncio.wait_for(self._handshake(stream), HANDSHAKE_TIMEOUT)
        except (AuthenticationError, StreamClosedError, asyncio.TimeoutError) as exc:
            logger.warning("rejected connection from %s: %s", peer, exc or type(exc).__name__)
            stream.close()
            return
        channel = Channel(stream, peer, self.handlers)
        self.channels.add(channel)
        channel.on_close.append(self.channels.discard)
        if self.on_channel is not None:
            self.on_channel(channel)
        channel.start()

    async def _handshake(self, stream: IOStream) -> None:
        hello, nonce = protocol.server_hello()
        await stream.write(hello)
        answer = await stream.read_bytes(protocol.CLIENT_HELLO_SIZE)
        await stream.write(protocol.check_client_hello(self.secret, nonce, answer))

    def close(self) -> None:
        self.stop()
        for channel in list(self.channels):
            channel.close()
