"""Channels over real sockets: the handshake, then messages both ways."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
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
