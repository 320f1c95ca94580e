"""The wire format and the handshake, on bytes alone: no sockets."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from scatter_magics.engine.wire import protocol
from scatter_magics.engine.wire.serialize import Serialized, deserialize, serialize
from scatter_magics.errors import AuthenticationError, ProtocolError


def roundtrip(msg: dict) -> dict:
    head, *buffers = protocol.dumps(msg)
    n, first = protocol.parse_prelude_start(head[:16])
    rest = protocol.parse_frame_lengths(head[16:8 * (n + 1)], n - 1)
    body = head[8 * (n + 1):]
    assert (first, *rest) == (len(body), *(memoryview(b).nbytes for b in buffers))
    return protocol.loads([bytearray(body), *(bytearray(b) for b in buffers)])


def test_large_buffers_travel_as_their_own_frames():
    array = np.arange(1_000_000, dtype="float64")
    serialized = serialize(array)
    assert len(serialized.buffers) == 1
    head, buffer = protocol.dumps({"op": "put-data", "data": {"k": serialized}})
    assert memoryview(buffer).nbytes == array.nbytes
    assert len(head) < 1000  # the array's bytes are not inside the pickle
    back = roundtrip({"op": "put-data", "data": {"k": serialized}})
    np.testing.assert_array_equal(deserialize(back["data"]["k"]), array)


def test_what_pickle_cannot_name_travels_by_value():
    class LocalError(Exception):  # no importable name, like a class made in a notebook cell
        pass

    exc = roundtrip({"op": "task-erred", "exception": LocalError("bad", 3)})["exception"]
    assert type(exc) is LocalError and exc.args == ("bad", 3)


def test_small_buffers_stay_inline():
    assert len(protocol.dumps({"op": "x", "data": serialize(b"small")})) == 1


def test_the_prelude_is_little_endian():
    [head] = protocol.dumps({"op": "ping"})
    assert head[:16] == struct.pack("<QQ", 1, len(head) - 16)


@pytest.mark.parametrize("frames", [[b"not a pickle"], [b"\x80\x05K\x01."]])
def test_undecodable_or_non_message_is_a_protocol_error(frames):
    with pytest.raises(ProtocolError):
        protocol.loads(frames)


@pytest.mark.parametrize("count", [0, protocol.MAX_FRAMES + 1])
def test_frame_counts_are_bounded(count):
    with pytest.raises(ProtocolError, match="frame count"):
        protocol.parse_prelude_start(struct.pack("<QQ", count, 0))


def test_handshake_with_the_right_secret():
    secret = protocol.new_secret()
    hello, server_nonce = protocol.server_hello()
    answer, client_nonce = protocol.client_hello(secret, hello)
    assert len(hello) == protocol.SERVER_HELLO_SIZE and len(answer) == protocol.CLIENT_HELLO_SIZE
    proof = protocol.check_client_hello(secret, server_nonce, answer)
    protocol.check_server_proof(secret, client_nonce, proof)


def test_handshake_with_a_wrong_secret_fails_both_ways():
    hello, server_nonce = protocol.server_hello()
    answer, client_nonce = protocol.client_hello("wrong", hello)
    with pytest.raises(AuthenticationError, match="secret"):
        protocol.check_client_hello("right", server_nonce, answer)
    proof = protocol.check_client_hello("wrong", server_nonce, answer)
    with pytest.raises(AuthenticationError, match="secret"):
        protocol.check_server_proof("right", client_nonce, proof)


def test_handshake_rejects_another_protocol():
    with pytest.raises(AuthenticationError, match="protocol"):
        protocol.client_hello("s", b"HTTP/1.1 200 OK\r\n" + b"x" * 23)


@pytest.mark.parametrize("address, expected", [
    ("tcp://127.0.0.1:8786", ("127.0.0.1", 8786)), ("localhost:1", ("localhost", 1)),
    ("tcp://[::1]:9", ("::1", 9))])
def test_parse_address(address, expected):
    assert protocol.parse_address(address) == expected


def test_malformed_address():
    with pytest.raises(ValueError, match="malformed address"):
        protocol.parse_address("tcp://nohost")


def test_serialized_reports_its_size():
    s = serialize(np.zeros(100_000))
    assert isinstance(s, Serialized) and s.nbytes >= 800_000


# ------------------------------------------------------------ FrameDecoder ---

def feed(decoder: protocol.FrameDecoder, data: bytes, chunk: int) -> list:
    """Deliver ``data`` as a transport would, at most ``chunk`` bytes per receive."""
    messages, view = [], memoryview(data)
    while view:
        buffer = decoder.get_buffer()
        n = min(chunk, len(buffer), len(view))
        assert n > 0, "the decoder offered an empty buffer"
        buffer[:n] = view[:n]
        view = view[n:]
        decoder.filled(n)
        messages += [protocol.loads(frames) for frames in decoder.messages()]
    return messages


def wire(*msgs: dict) -> bytes:
    return b"".join(bytes(memoryview(chunk).cast("B")) for m in msgs for chunk in protocol.dumps(m))


@pytest.mark.parametrize("chunk", [3, 4096, 1 << 22])
def test_decoder_rebuilds_small_and_large_messages_from_any_split(chunk):
    array = np.arange(20_000, dtype="int64")  # 160 kB: a message with a frame of its own
    msgs = [{"op": "a"}, {"op": "big", "data": serialize(array)}, {"op": "b", "n": 2},
            {"op": "c", "text": "x" * 70_000}]  # over the small-message size, in one frame
    out = feed(protocol.FrameDecoder(staging=64), wire(*msgs) * 2, chunk)
    assert [m["op"] for m in out] == ["a", "big", "b", "c"] * 2
    np.testing.assert_array_equal(deserialize(out[1]["data"]), array)
    assert out[3]["text"] == "x" * 70_000


def test_decoder_receives_a_large_frame_in_place():
    decoder = protocol.FrameDecoder()
    head, frame = protocol.dumps({"op": "big", "data": serialize(np.zeros(1 << 20, "uint8"))})
    assert feed(decoder, bytes(head), 1 << 20) == []
    target = decoder.get_buffer()  # the frame's own memory, not the staging buffer
    assert target.nbytes == memoryview(frame).nbytes


def test_handshake_bytes_then_frames_on_one_stream():
    decoder = protocol.FrameDecoder()
    data = b"HELLO" + wire({"op": "after"})
    buffer = decoder.get_buffer()
    buffer[:len(data)] = data
    decoder.filled(len(data))
    assert decoder.take(5) == b"HELLO"
    assert decoder.take(10_000) is None  # not that many bytes yet
    assert [protocol.loads(f)["op"] for f in decoder.messages()] == ["after"]


def test_decoder_rejects_a_bad_prelude():
    with pytest.raises(ProtocolError, match="frame count"):
        feed(protocol.FrameDecoder(), struct.pack("<QQ", 0, 5), 16)


@pytest.mark.parametrize("value", [0, -7, 2**100, 1.5, float("nan"), 1j, True, None, "",
                                   "text é"])
def test_plain_values_pickle_exactly_as_cloudpickle_would(value):
    import cloudpickle

    serialized = serialize(value)
    assert serialized.header == cloudpickle.dumps(value, protocol=5)
    back = deserialize(serialized)
    assert type(back) is type(value) and (back == value or back != back)


def test_a_task_of_a_module_registered_by_value_travels_by_value(tmp_path, monkeypatch):
    """Plain calls are pickled by name only where cloudpickle would pickle them so: a
    function of a module registered with ``register_pickle_by_value`` (edited in the
    session, not installed where the workers run) travels by value and runs in a process
    that cannot import its module; a function of an importable module travels by name."""
    import subprocess
    import sys

    import cloudpickle

    from scatter_magics.engine.wire.serialize import serialize_task

    (tmp_path / "edited_here.py").write_text("def triple(x):\n    return 3 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import edited_here

    cloudpickle.register_pickle_by_value(edited_here)
    try:
        by_value, deps = serialize_task((edited_here.triple, (2,), {}), lambda obj: None)
    finally:
        cloudpickle.unregister_pickle_by_value(edited_here)
        sys.modules.pop("edited_here")
    by_name, _ = serialize_task((abs, (-2,), {}), lambda obj: None)
    call = "import pickle, sys; f, a, k = pickle.loads(sys.stdin.buffer.read()); print(f(*a, **k))"
    for task, expected in ((by_value, b"6"), (by_name, b"2")):
        out = subprocess.run([sys.executable, "-c", call], input=task.header, cwd="/",
                             capture_output=True, check=True, timeout=60).stdout
        assert out.strip() == expected
    assert deps == set() and b"edited_here" not in by_name.header
