"""Channels over real sockets: the handshake, then messages both ways."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import psutil
import pytest

from scatter_magics.engine.wire import protocol
from scatter_magics.engine.wire.comm import Channel, Server, _Connection, connect
from scatter_magics.engine.wire.loop import new_event_loop
from scatter_magics.engine.wire.serialize import deserialize, serialize
from scatter_magics.errors import ProtocolError

pytestmark = pytest.mark.timeout(60)


def run(coro):
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def with_server(body):
    secret = protocol.new_secret()
    server = Server(secret, {"echo": lambda ch, msg: msg["data"]})
    address = await server.listen()
    try:
        return await body(address, secret)
    finally:
        server.close()


def test_small_and_large_messages_round_trip():
    array = np.arange(2_000_000, dtype="float64")  # 16 MB: frames received in place

    async def body(address, secret):
        channel = await connect(address, secret)
        try:
            small = await channel.request({"op": "echo", "data": [1, "two"]})
            large = await channel.request({"op": "echo", "data": serialize(array)})
            return small, deserialize(large)
        finally:
            channel.close()

    small, large = run(with_server(body))
    assert small == [1, "two"]
    np.testing.assert_array_equal(large, array)


@pytest.mark.parametrize("trusted", [True, False])
def test_bytes_before_a_channel_adopts_the_connection(trusted):
    # Once the handshake has checked the peer, a server writes its proof and only then
    # hands the connection to a Channel: a large first message landing in between must
    # wait for the channel. Before the check, that much data is junk and is dropped.
    async def body():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        transport, connection = await loop.connect_accepted_socket(_Connection, ours)
        connection.trusted = trusted
        message = protocol.dumps({"op": "echo", "data": b"x" * 100_000})
        await loop.run_in_executor(None, theirs.sendall, b"".join(message))
        for _ in range(1000):  # until the bytes are in, or the connection is dropped
            if connection.lost or connection.decoder.buffered >= 100_000:
                break
            await asyncio.sleep(0.005)
        received = []
        if not connection.lost:
            Channel(connection, "peer", {"echo": lambda ch, msg: received.append(msg)}).start()
        transport.close()
        theirs.close()
        return connection.lost, received

    lost, received = run(body())
    if trusted:
        assert not lost and received[0]["data"] == b"x" * 100_000
    else:
        assert lost and not received


def test_an_unknown_op_is_answered_with_a_protocol_error():
    async def body(address, secret):
        channel = await connect(address, secret)
        try:
            with pytest.raises(ProtocolError, match="unknown op 'nope'"):
                await channel.request({"op": "nope"})
            return await channel.request({"op": "echo", "data": "still open"})
        finally:
            channel.close()

    assert run(with_server(body)) == "still open"


class CountingTransport:
    """A channel's transport that counts what is written through it."""

    def __init__(self, transport):
        self.transport, self.writes = transport, 0

    def write(self, data) -> None:
        self.writes += 1
        self.transport.write(data)

    def __getattr__(self, name):
        return getattr(self.transport, name)


def test_a_batch_ends_with_one_after_batch_call_even_when_a_handler_fails():
    """What one batch's messages make can go out together (the scheduler sends what a
    burst of task reports made in one pass): handlers see ``in_batch``, and
    ``after_batch(channel)`` runs once when the batch is done, after every message of
    it, a failing one included; a message on its own is not a batch."""
    log: list = []

    def note(ch, msg):
        ch.after_batch = lambda ch: log.append(("after", ch.in_batch))
        if msg["n"] == 1:
            raise ValueError("a handler fails: the batch goes on")
        log.append((msg["n"], ch.in_batch))

    async def body():
        secret = protocol.new_secret()
        server = Server(secret, {"note": note, "ask": lambda ch, msg: list(log)})
        try:
            channel = await connect(await server.listen(), secret)
            for n in range(4):
                channel.send_soon({"op": "note", "n": n})
            assert await channel.request({"op": "ask"}) == [
                (0, True), (2, True), (3, True), ("after", False)]
            channel.send({"op": "note", "n": 4})
            assert (await channel.request({"op": "ask"}))[-1] == (4, False)
            channel.close()
        finally:
            server.close()

    run(body())


def test_messages_sent_soon_travel_as_one_batch_in_order_with_every_other_send():
    """send_soon's one-way messages of one turn of the loop go as one message, dispatched
    one by one on arrival; a request after them goes after them, and a close sends what
    was queued."""
    seen: list = []

    async def body():
        secret = protocol.new_secret()
        handlers = {"note": lambda ch, msg: seen.append(msg["n"]),
                    "ask": lambda ch, msg: list(seen)}
        server = Server(secret, handlers)
        try:
            address = await server.listen()
            channel = await connect(address, secret)
            counting = channel.transport = CountingTransport(channel.transport)
            for n in range(5):
                channel.send_soon({"op": "note", "n": n})
            assert seen == [] and counting.writes == 0  # nothing left within the turn
            assert await channel.request({"op": "ask"}) == [0, 1, 2, 3, 4]
            assert counting.writes == 2  # the five notes as one message, then the request
            for n in range(5, 8):
                channel.send_soon({"op": "note", "n": n})
            await asyncio.sleep(0)  # the turn ends: one message with all three
            assert counting.writes == 3
            channel.send_soon({"op": "note", "n": 8})
            channel.close()  # still sent
            assert counting.writes == 4
            for _ in range(100):
                if len(seen) == 9:
                    break
                await asyncio.sleep(0.01)
        finally:
            server.close()

    run(body())
    assert seen == list(range(9))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_a_server_listens_on_an_ip_address_or_a_name_and_answers_there(host):
    # An IP address is bound by the server itself (no resolver: issue 18's cold start),
    # a name by the loop; both serve, and the address says where.
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def body():
        secret = protocol.new_secret()
        server = Server(secret, {"echo": lambda ch, msg: msg["data"]})
        try:
            address = await server.listen(host, 0)
        except OSError as exc:  # e.g. IPv6 disabled in this container
            pytest.skip(f"cannot listen on {host}: {exc}")
        try:
            assert address.startswith(f"tcp://{host}:")
            channel = await connect(address, secret)
            assert await channel.request({"op": "echo", "data": host}) == host
            channel.close()
        finally:
            server.close()

    run(body())


def test_listening_on_a_port_in_use_raises_and_keeps_no_socket():
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]

    def sockets_on_port() -> int:  # this process's sockets bound to the port (ours only)
        return sum(1 for c in psutil.Process().net_connections(kind="tcp")
                   if c.laddr and c.laddr.port == port)

    async def body():
        server = Server(protocol.new_secret(), {})
        with pytest.raises(OSError):
            await server.listen("127.0.0.1", port)
        server.close()

    try:
        run(body())
        assert sockets_on_port() == 1  # the one that took it
    finally:
        taken.close()
