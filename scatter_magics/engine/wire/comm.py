"""Authenticated, framed connections: :class:`Channel`, :func:`connect`, :class:`Server`.

A ``Channel`` carries messages both ways over one TCP connection. Each side can
``send`` a message, or ``request`` one and await the reply; incoming messages are handed
to a table of handlers keyed by ``op``. All methods run on the event-loop thread.

One-way messages sent with :meth:`Channel.send_soon` in one turn of the loop travel
together as one ``{"op": "batch", "messages": [...]}``: one pickle, one write and one
wake of the peer for a burst (the reports of 500 tasks a worker finished, a scheduler's
compute messages), dispatched on arrival one by one, in order, as if sent one by one.

Connections are asyncio ``BufferedProtocol``s on the loop thread's loop rather than tornado
``IOStream``s: a small request and its reply between two processes took 108 µs through
``IOStream.read_bytes`` and 19 µs through a protocol on this kind of machine, and the
round trip of every scatter and gather is made of such requests. Large frames are still
received in place, into memory allocated for them (see ``protocol.FrameDecoder``).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import socket
import time
from typing import Awaitable, Callable

from ...errors import CommClosedError, ProtocolError, portable
from . import protocol
from .connection import Connection as _Connection  # (the name tests and inproc use)

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds a peer gets to prove it knows the secret
MAX_PENDING_HANDSHAKES = 128  # beyond this, the oldest unauthenticated connection is dropped
REJECTION_LOG_INTERVAL = 60.0  # s; rejected peers are logged as a warning at most this often

Handler = Callable[["Channel", dict], "object | Awaitable[object]"]
BATCH_OP = "batch"  # one-way messages queued in one turn of the loop, sent as one


class Channel:
    """Messages over one authenticated connection.

    ``handlers`` maps an op to ``handler(channel, msg)``; what it returns (or awaits to)
    is the reply when the message came from :meth:`request`. An exception in a handler
    is sent back to the requester, which re-raises it.
    """

    def __init__(self, connection: _Connection, peer: str,
                 handlers: dict[str, Handler] | None = None):
        self._connection = connection
        self.transport = connection.transport
        self.peer = peer
        self.handlers = handlers or {}
        self.on_close: list[Callable[[Channel], None]] = []
        self._replies: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task] = set()
        self._queued: list[dict] = []  # send_soon's messages of this turn of the loop
        self.closed = False
        # While a batch's messages are dispatched: handlers may hold back what they
        # would send until ``after_batch(channel)``, which runs once the batch is done.
        self.in_batch = False
        self.after_batch: Callable[[Channel], None] | None = None

    def start(self) -> None:
        """Begin handling messages, including any that arrived with the handshake."""
        self._connection.channel = self
        if self._connection.lost:
            self.close()
        else:
            self._connection.deliver()

    # ---------------------------------------------------------- sending ---
    def send(self, msg: dict) -> None:
        """Queue ``msg`` for the peer; raise CommClosedError if the connection is gone."""
        if self.closed or self.transport.is_closing():
            raise CommClosedError(f"connection to {self.peer} is closed")
        if self._queued:
            self._flush()  # what send_soon queued goes first: order holds
        self._write(msg)

    def send_soon(self, msg: dict) -> None:
        """Send the one-way ``msg`` at the end of this turn of the loop, in one message
        with every other one queued meanwhile; raise CommClosedError if the connection is
        gone. Any :meth:`send` or request sends what is queued first."""
        if self.closed or self.transport.is_closing():
            raise CommClosedError(f"connection to {self.peer} is closed")
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append(msg)

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        if not queued or self.closed or self.transport.is_closing():
            return  # (sent already by a send(); or the peer is gone, and the messages too)
        msg = queued[0] if len(queued) == 1 else {"op": BATCH_OP, "messages": queued}
        try:
            self._write(msg)
        except CommClosedError:  # (an in-process peer closed this turn: they are gone too)
            pass

    def _write(self, msg: dict) -> None:
        for frame in protocol.dumps(msg):  # one write each: writelines() may join (copy) them
            self.transport.write(frame)

    async def request(self, msg: dict):
        """Send ``msg`` and wait for the peer's reply."""
        reply = self.send_request(msg)
        try:
            return await reply
        finally:
            self._replies.pop(msg["id"], None)

    def send_request(self, msg: dict) -> asyncio.Future:
        """Send ``msg`` now, in order with every other send; return a future of the reply."""
        msg["id"] = request_id = next(self._ids)
        reply = self._replies[request_id] = asyncio.get_running_loop().create_future()
        try:
            self.send(msg)
        except BaseException:
            self._replies.pop(request_id, None)
            raise
        return reply

    def fail_pending(self, error: Exception) -> None:
        """Fail every request still waiting for a reply; the connection stays open.

        For a peer that stopped answering: a late reply finds no one waiting.
        """
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(error)

    # ---------------------------------------------------------- receiving ---
    def _receive(self, frames: list) -> None:
        try:
            msg = protocol.loads(frames)
        except ProtocolError as exc:
            self._drop(exc)
            return
        try:
            self._dispatch(msg)
        except Exception:
            logger.exception("dropping connection to %s", self.peer)
            self.close()

    def _drop(self, exc: ProtocolError) -> None:
        logger.warning("dropping connection to %s: %s", self.peer, exc)
        self.close()

    def _dispatch(self, msg: dict) -> None:
        op = msg["op"]
        if op == BATCH_OP:
            self.in_batch = True
            try:
                for one in msg["messages"]:
                    self._dispatch(one)
            finally:
                self.in_batch = False
                if self.after_batch is not None:
                    self.after_batch(self)
            return
        if op == "reply":
            reply = self._replies.pop(msg["id"], None)
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
        if result is not None and inspect.isawaitable(result):  # (most return None)
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
        try:
            self._flush()  # what was queued before the close still goes
        except Exception:  # (the connection broke meanwhile)
            pass
        self.closed = True
        self.transport.close()
        error = CommClosedError(f"connection to {self.peer} closed")
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(error)
        for task in list(self._tasks):
            task.cancel()
        for callback in self.on_close:
            try:
                callback(self)
            except Exception:
                logger.exception("error in on_close callback for %s", self.peer)


async def connect(address: str, secret: str, handlers: dict | None = None,
                  timeout: float = HANDSHAKE_TIMEOUT) -> Channel:
    """Open an authenticated :class:`Channel` to ``address`` (``inproc://``: a server of
    this process, see ``inproc.py``; nothing to prove there)."""
    if address.startswith("inproc://"):
        from . import inproc

        return inproc.connect(address, handlers)
    host, port = protocol.parse_address(address)
    loop = asyncio.get_running_loop()
    try:
        transport, connection = await asyncio.wait_for(
            loop.create_connection(_Connection, host, port), timeout)
    except TimeoutError:  # (wait_for's own message is empty)
        raise TimeoutError(f"connecting to {address} timed out after {timeout} s") from None
    except OSError as exc:
        raise CommClosedError(f"cannot connect to {address}: {exc}") from exc
    try:
        await asyncio.wait_for(_client_handshake(connection, secret), timeout)
    except TimeoutError:
        transport.close()
        raise TimeoutError(f"{address} accepted the connection but did not answer the "
                           f"handshake within {timeout} s: is a scatter_magics scheduler "
                           "listening there?") from None
    except CommClosedError as exc:
        transport.close()
        raise CommClosedError(f"{address} closed the connection during the handshake: a wrong "
                              "cluster secret, or the peer died") from exc
    except BaseException:
        transport.close()
        raise
    channel = Channel(connection, address, handlers)
    channel.start()
    return channel


async def _client_handshake(connection: _Connection, secret: str) -> None:
    hello, nonce = protocol.client_hello(
        secret, await connection.read_exactly(protocol.SERVER_HELLO_SIZE))
    connection.write(hello)
    protocol.check_server_proof(secret, nonce, await connection.read_exactly(protocol.MAC_SIZE))
    connection.trusted = True


def _ip_family(host: str) -> socket.AddressFamily | None:
    """``AF_INET`` or ``AF_INET6`` for an IP address, ``None`` for a host name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except OSError:
            pass
    return None


class Server:
    """Accepts authenticated connections and hands each a :class:`Channel`."""

    def __init__(self, secret: str, handlers: dict,
                 on_channel: Callable[[Channel], None] | None = None):
        self.secret = secret
        self.handlers = handlers
        self.on_channel = on_channel
        self.channels: set[Channel] = set()
        self.address = ""
        self.inproc_address = ""  # also reachable from this process (listen_inproc)
        self._server: asyncio.AbstractServer | None = None
        # Pending handshakes, oldest first: at MAX_PENDING_HANDSHAKES the oldest is
        # dropped, so a flood of silent connections costs bounded memory and a real
        # peer (whose handshake takes one round trip) still gets in.
        self._handshakes: dict[asyncio.Task, _Connection] = {}
        self._last_rejection_warning = -REJECTION_LOG_INTERVAL

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start accepting on ``host:port`` (0: a free port); return the address."""
        loop = asyncio.get_running_loop()
        family = _ip_family(host)
        if family is None:  # a name: the loop resolves it
            where = {"host": host, "port": port}
        else:
            # An IP address needs no resolving, but uvloop's create_server resolves it
            # in libuv's thread pool all the same, whose first use starts its threads:
            # ~2 ms of a worker's start (4 on a loaded machine), on a cold start's path.
            where = {"sock": socket.create_server((host, port), family=family)}
        try:
            self._server = await loop.create_server(
                lambda: _Connection(on_made=self._accept), **where)
        except BaseException:
            if "sock" in where:
                where["sock"].close()
            raise
        self.address = protocol.format_address(host, self._server.sockets[0].getsockname()[1])
        return self.address

    def listen_inproc(self) -> str:
        """Also accept connections from this process, unpickled (``inproc.py``)."""
        from . import inproc

        self.inproc_address = inproc.listen(self)
        return self.inproc_address

    @property
    def pending_handshakes(self) -> int:
        return len(self._handshakes)

    def _accept(self, connection: _Connection) -> None:
        if len(self._handshakes) >= MAX_PENDING_HANDSHAKES:
            oldest = next(iter(self._handshakes))
            self._handshakes.pop(oldest).close_quietly("too many pending handshakes")
            oldest.cancel()
        task = asyncio.ensure_future(self._welcome(connection))
        self._handshakes[task] = connection
        task.add_done_callback(lambda t: self._handshakes.pop(t, None))

    async def _welcome(self, connection: _Connection) -> None:
        peername = connection.transport.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        try:
            await asyncio.wait_for(self._handshake(connection), HANDSHAKE_TIMEOUT)
        except ProtocolError as exc:  # AuthenticationError: junk, or a wrong secret
            self._log_rejection(peer, exc)
            connection.transport.close()
            return
        except (CommClosedError, OSError, asyncio.TimeoutError) as exc:  # reset, gone, silent
            logger.debug("handshake with %s ended: %r", peer, exc)
            connection.transport.close()
            return
        except asyncio.CancelledError:
            connection.transport.close()
            raise
        self.adopt(Channel(connection, peer, self.handlers))

    def adopt(self, channel: Channel) -> None:
        """Serve ``channel``, a connection that has proved itself (or needs not)."""
        self.channels.add(channel)
        channel.on_close.append(self.channels.discard)
        if self.on_channel is not None:
            self.on_channel(channel)
        channel.start()

    def _log_rejection(self, peer: str, exc: Exception) -> None:
        # A warning tells the user a wrong secret is in use; a port scan or a fuzzer
        # must not fill the log, so further ones within the interval are debug lines.
        now = time.monotonic()
        if now - self._last_rejection_warning >= REJECTION_LOG_INTERVAL:
            self._last_rejection_warning = now
            logger.warning("rejected connection from %s: %s (further rejections within "
                           "%.0f s are logged at debug level)", peer, exc, REJECTION_LOG_INTERVAL)
        else:
            logger.debug("rejected connection from %s: %s", peer, exc)

    async def _handshake(self, connection: _Connection) -> None:
        hello, nonce = protocol.server_hello()
        connection.write(hello)
        answer = await connection.read_exactly(protocol.CLIENT_HELLO_SIZE)
        proof = protocol.check_client_hello(self.secret, nonce, answer)
        # Trusted before the proof leaves: the peer may send messages as soon as it
        # reads it, before this coroutine resumes to hand the connection to a Channel.
        connection.trusted = True
        connection.write(proof)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.inproc_address:
            from . import inproc

            inproc.stop(self.inproc_address)
        for task in list(self._handshakes):
            task.cancel()
        for channel in list(self.channels):
            channel.close()
