"""The pre-authentication surface: fuzzed inputs, silent floods and reset storms.

Nothing a peer sends before proving it knows the secret may be unpickled, may make a
connection hold more than the handshake's bytes, or may log worse than a debug line
when the peer just goes away.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import socket
import struct

import pytest

from scatter_magics.engine.wire import comm, protocol
from scatter_magics.engine.wire.comm import Server, connect
from scatter_magics.engine.wire.loop import new_event_loop

pytestmark = pytest.mark.timeout(90)

FUZZ_INPUTS = 10_000


class FakeTransport(asyncio.Transport):
    """Records what the server writes; reading is driven by the test (no sockets, no sleeps)."""

    def __init__(self):
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data) -> None:
        if self.closed:  # what uvloop does on a closed transport
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name, default=None):
        return ("10.0.0.1", 4242) if name == "peername" else default


def fuzz_inputs(rng: random.Random, secret: str):
    """Byte strings a hostile or broken peer might send after the server's hello."""
    right = protocol.MAGIC + bytes(protocol.NONCE_SIZE) + bytes(protocol.MAC_SIZE)
    message = b"".join(protocol.dumps({"op": "scatter", "data": b"x" * 100}))
    pickle_bomb = struct.pack("<QQ", 1, 1 << 40) + b"\x80\x05"
    seeds = [b"", right, message, pickle_bomb, b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 100_000,
             protocol.MAGIC, protocol.MAGIC + b"\xff" * 1000]
    for i in range(FUZZ_INPUTS):
        kind = i % 4
        if kind == 0:
            yield rng.randbytes(rng.randrange(0, 300))
        elif kind == 1:  # a near-valid hello with a few bytes flipped, cut or extended
            data = bytearray(right)
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield bytes(data[:rng.randrange(len(data) + 1)]) + rng.randbytes(rng.randrange(0, 80))
        elif kind == 2:  # a well-formed message, sent without authenticating first
            yield message[:rng.randrange(len(message) + 1)]
        else:
            yield rng.choice(seeds)


def feed(connection, data: bytes, rng: random.Random) -> int:
    """Deliver ``data`` the way a transport does, in random chunks; the largest buffer seen."""
    largest = connection.decoder.capacity
    while data and not connection.transport.closed:
        buffer = connection.get_buffer(-1)
        n = min(len(buffer), len(data), rng.randrange(1, 128))
        buffer[:n] = data[:n]
        data = data[n:]
        connection.buffer_updated(n)
        largest = max(largest, connection.decoder.capacity)
    return largest


def test_ten_thousand_fuzzed_inputs_never_reach_unpickling(monkeypatch, caplog):
    secret = protocol.new_secret()
    rng = random.Random(11)
    unpickled = []
    monkeypatch.setattr(protocol, "loads", lambda frames: unpickled.append(frames))
    loop_errors = []

    async def run_all():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: loop_errors.append(ctx))
        server = Server(secret, {"scatter": lambda ch, msg: unpickled.append(msg)},
                        on_channel=lambda ch: unpickled.append(ch))
        largest = 0
        for data in fuzz_inputs(rng, secret):
            connection = comm._Connection(on_made=server._accept)
            connection.connection_made(FakeTransport())
            await asyncio.sleep(0)  # the handshake task writes the server hello
            largest = max(largest, feed(connection, data, rng))
            await asyncio.sleep(0)  # it reads what arrived, and rejects it
            if not connection.transport.closed:  # or the peer leaves
                connection.transport.closed = True
                connection.connection_lost(ConnectionResetError())
        for _ in range(20):  # let the last handshakes finish
            await asyncio.sleep(0)
        pending = server.pending_handshakes
        server.close()
        return largest, pending

    loop = new_event_loop()
    caplog.set_level(logging.DEBUG, logger="scatter_magics")
    try:
        largest, pending = loop.run_until_complete(run_all())
    finally:
        loop.close()
    gc.collect()  # a task whose exception nobody retrieved would be reported now
    assert unpickled == []
    assert largest <= protocol.HANDSHAKE_SIZE
    assert pending == 0  # every handshake ended: rejected, or ended by the reset
    assert loop_errors == []
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 1  # one "rejected connection" warning, then debug lines


def test_an_unauthenticated_connection_holds_no_more_than_the_handshake():
    connection = comm._Connection()
    connection.connection_made(FakeTransport())
    assert connection.decoder.capacity == protocol.HANDSHAKE_SIZE
    connection.trusted = True
    assert connection.decoder.capacity == protocol.STAGING_SIZE


async def silent_flood(address: str, count: int) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    host, port = protocol.parse_address(address)
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        socks.append(sock)
    return socks


def test_pending_handshakes_are_capped_and_a_real_peer_still_gets_in(monkeypatch):
    monkeypatch.setattr(comm, "MAX_PENDING_HANDSHAKES", 16)
    secret = protocol.new_secret()

    async def body():
        server = Server(secret, {"echo": lambda ch, msg: msg["data"]})
        address = await server.listen()
        socks = await silent_flood(address, 60)
        try:
            for _ in range(200):  # until the server has accepted them all
                await asyncio.sleep(0.005)
            pending = server.pending_handshakes
            channel = await connect(address, secret, timeout=5)
            reply = await channel.request({"op": "echo", "data": "in"})
            channel.close()
            return pending, reply
        finally:
            for sock in socks:
                sock.close()
            server.close()
            await asyncio.sleep(0.05)  # the cancelled handshakes end (tasks are not left pending)

    loop = new_event_loop()
    try:
        pending, reply = loop.run_until_complete(body())
    finally:
        loop.close()
    assert pending <= 16 and reply == "in"


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    sock.close()


def test_a_connect_reset_storm_logs_nothing_worse_than_debug(caplog):
    """Peers that reset at every step of the handshake; the loop is uvloop where installed."""
    secret = protocol.new_secret()
    loop_errors = []

    async def one(address: str, stage: int) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, protocol.parse_address(address))
            if stage >= 1:
                await loop.sock_recv(sock, protocol.SERVER_HELLO_SIZE)
            if stage >= 2:
                await loop.sock_sendall(sock, protocol.MAGIC + bytes(stage * 8))  # partial hello
        except OSError:
            pass
        finally:
            reset(sock)

    async def body():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: loop_errors.append(ctx))
        server = Server(secret, {"echo": lambda ch, msg: msg["data"]})
        address = await server.listen()
        for batch in range(30):
            await asyncio.gather(*(one(address, (batch + i) % 5) for i in range(50)))
        for _ in range(500):  # until every handshake has ended
            if not server.pending_handshakes:
                break
            await asyncio.sleep(0.01)
        channel = await connect(address, secret, timeout=5)
        reply = await channel.request({"op": "echo", "data": "still serving"})
        channel.close()
        server.close()
        return reply

    caplog.set_level(logging.DEBUG)
    loop = new_event_loop()
    try:
        reply = loop.run_until_complete(body())
    finally:
        loop.close()
    gc.collect()
    assert reply == "still serving"
    assert loop_errors == []
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG] == []
