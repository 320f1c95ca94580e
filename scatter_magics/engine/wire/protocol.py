"""The wire format, written down once.

A **message** is a ``dict`` with an ``"op"`` entry. On the wire it is a prelude followed
by frames::

    prelude:  <Q n_frames> <Q len(frame_0)> ... <Q len(frame_n-1)>     little-endian
    frame 0:  the message, pickled with protocol 5
    frame i:  the i-th out-of-band buffer of that pickle (numpy data, bytes, ...)

A reader takes the first 16 bytes at once: for the common one-frame message that is
all of the prelude. :class:`FrameDecoder` does the reading, on bytes alone.

Large buffers are never copied into one big bytes object: they are written as separate
frames and received straight into memory allocated for each frame.

Before any frame is exchanged, both ends prove they know the cluster's secret
(:func:`server_hello` … :func:`check_server_proof`), with fixed-size reads, so a peer that
does not know the secret never gets a single byte unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import pickle
import struct

from ...errors import AuthenticationError, ProtocolError

MAGIC = b"SMAG\x00\x00\x00\x01"  # protocol name and version
NONCE_SIZE = 32
MAC_SIZE = 32
SERVER_HELLO_SIZE = len(MAGIC) + NONCE_SIZE
CLIENT_HELLO_SIZE = len(MAGIC) + NONCE_SIZE + MAC_SIZE
HANDSHAKE_SIZE = max(CLIENT_HELLO_SIZE, SERVER_HELLO_SIZE + MAC_SIZE)  # all either side reads
MAX_FRAMES = 1 << 20  # a bound on the prelude a peer can make us allocate
INLINE_BUFFER_LIMIT = 1 << 16  # buffers smaller than this stay inside the pickle
STAGING_SIZE = 1 << 16  # a reader's reusable buffer for small messages
SMALL_MESSAGE = 1 << 16  # larger messages are received into a buffer per frame


# ---------------------------------------------------------------- handshake ---

def new_secret() -> str:
    """A fresh cluster secret (hex text, so it can travel through environments)."""
    return os.urandom(32).hex()


def _mac(secret: str, role: bytes, nonce: bytes) -> bytes:
    return hmac.new(secret.encode(), role + nonce, hashlib.sha256).digest()


def server_hello() -> tuple[bytes, bytes]:
    """What a server sends first, and the nonce it must remember."""
    nonce = os.urandom(NONCE_SIZE)
    return MAGIC + nonce, nonce


def client_hello(secret: str, server_hello_bytes: bytes) -> tuple[bytes, bytes]:
    """The client's answer to a server hello, and the nonce it must remember."""
    if server_hello_bytes[: len(MAGIC)] != MAGIC:
        raise AuthenticationError("peer does not speak the scatter_magics protocol")
    server_nonce = server_hello_bytes[len(MAGIC):]
    nonce = os.urandom(NONCE_SIZE)
    return MAGIC + nonce + _mac(secret, b"client", server_nonce), nonce


def check_client_hello(secret: str, server_nonce: bytes, hello: bytes) -> bytes:
    """Verify a client hello; return the server's proof to send back."""
    magic, rest = hello[: len(MAGIC)], hello[len(MAGIC):]
    client_nonce, mac = rest[:NONCE_SIZE], rest[NONCE_SIZE:]
    if magic != MAGIC:
        raise AuthenticationError("peer does not speak the scatter_magics protocol")
    if not hmac.compare_digest(mac, _mac(secret, b"client", server_nonce)):
        raise AuthenticationError("peer does not know the cluster secret")
    return _mac(secret, b"server", client_nonce)


def check_server_proof(secret: str, client_nonce: bytes, proof: bytes) -> None:
    if not hmac.compare_digest(proof, _mac(secret, b"server", client_nonce)):
        raise AuthenticationError("server does not know the cluster secret")


# ------------------------------------------------------------------- frames ---

def _keep_large_out_of_band(buffers: list):
    def callback(buf: pickle.PickleBuffer):
        if buf.raw().nbytes < INLINE_BUFFER_LIMIT:
            return True  # true means: serialize in-band
        buffers.append(buf)
        return False
    return callback


def dumps(msg: dict) -> list:
    """A message as a list of byte-like chunks to write: prelude and body, then buffers.

    The prelude and the (small) pickled body travel as one chunk, so a small message
    costs one write.
    """
    buffers: list[pickle.PickleBuffer] = []
    try:
        body = pickle.dumps(msg, protocol=5, buffer_callback=_keep_large_out_of_band(buffers))
    except Exception:
        # Something pickle can only refer to by name, and that name does not import
        # elsewhere: a class or function made in a notebook cell or inside a function
        # (a task's own exception, say). cloudpickle sends those by value, as Dask does;
        # trying pickle first keeps the common message free of a CloudPickler's cost.
        buffers.clear()
        body = cloudpickle_module().dumps(msg, protocol=5,
                                         buffer_callback=_keep_large_out_of_band(buffers))
    frames = [b.raw() for b in buffers]
    lengths = [len(body)] + [f.nbytes for f in frames]
    prelude = struct.pack(f"<Q{len(lengths)}Q", len(lengths), *lengths)
    return [prelude + body, *frames]


def cloudpickle_module():
    """cloudpickle, imported on first need: a worker that never meets a value pickle
    cannot take by name never pays for it (~6 ms of the workers' template start-up,
    with the platform, uuid and dataclasses modules it brings)."""
    import cloudpickle

    return cloudpickle


def parse_prelude_start(data: bytes) -> tuple[int, int]:
    """The frame count and the first frame's length, from the first 16 bytes."""
    n, first = struct.unpack("<QQ", data)
    if not 1 <= n <= MAX_FRAMES:
        raise ProtocolError(f"bad frame count {n}")
    return n, first


def loads(frames: list) -> dict:
    """The message from its frames (prelude excluded)."""
    try:
        msg = pickle.loads(frames[0], buffers=frames[1:])
    except Exception as exc:
        raise ProtocolError(f"cannot decode message: {exc!r}") from exc
    if not isinstance(msg, dict) or "op" not in msg:
        raise ProtocolError(f"message is not a dict with an 'op': {type(msg).__name__}")
    return msg


def parse_frame_lengths(data: bytes, n: int) -> tuple[int, ...]:
    return struct.unpack(f"<{n}Q", data)


class FrameDecoder:
    """Bytes in, each message's frames out; shaped for ``asyncio.BufferedProtocol``.

    The transport receives into :meth:`get_buffer` and reports with :meth:`filled`;
    :meth:`messages` then returns the frame lists received whole. Small messages land in
    one staging buffer and are cut out of it; a message over :data:`SMALL_MESSAGE` gets a
    buffer per frame, which the transport then fills directly (no second copy of a large
    array).
    :meth:`take` reads a fixed number of raw bytes, for the handshake before any frame.
    """

    def __init__(self, staging: int = STAGING_SIZE):
        # Before authentication a connection's decoder is made with ``staging=HANDSHAKE_SIZE``
        # and grows (:meth:`grow`) only once the peer is trusted: 1,000 pending
        # unauthenticated connections cost 68.5 MB with 64 KiB each (issue 11).
        self._buf = bytearray(staging)
        self._start = self._end = 0  # the unread bytes are _buf[_start:_end]
        self._need = 16  # bytes the next step waits for, counted from _start
        self._large: list[bytearray] | None = None  # frames of the large message in flight
        self._index = self._filled = 0  # the frame being filled, and how far
        self._ready: list[list] = []  # messages completed by filled(), not yet returned

    @property
    def buffered(self) -> int:
        return self._end - self._start

    @property
    def capacity(self) -> int:
        """Bytes of the staging buffer (what an idle connection costs)."""
        return len(self._buf)

    def grow(self, staging: int = STAGING_SIZE) -> None:
        """Use a staging buffer of ``staging`` bytes from now on (the peer is trusted)."""
        if len(self._buf) < staging:
            unread = self._buf[self._start:self._end]
            self._buf = bytearray(staging)
            self._buf[:len(unread)] = unread
            self._start, self._end = 0, len(unread)

    def get_buffer(self, grow: bool = True) -> memoryview | None:
        """Where the next bytes go; None if that needs a larger buffer and not ``grow``."""
        if self._large is not None:
            return memoryview(self._large[self._index])[self._filled:]
        if self._start == self._end:
            self._start = self._end = 0
        if len(self._buf) - self._start < max(self._need, 1) or self._end == len(self._buf):
            size = max(len(self._buf), self._need, 2 * self.buffered)
            if size > len(self._buf) and not grow:
                return None
            self._restage(size)
        return memoryview(self._buf)[self._end:]

    def _restage(self, size: int) -> None:
        # A new buffer rather than a resize: the transport may still hold a view of the old.
        unread = self._buf[self._start:self._end]
        self._buf = bytearray(size)
        self._buf[:len(unread)] = unread
        self._start, self._end = 0, len(unread)

    def filled(self, nbytes: int) -> None:
        """Account for ``nbytes`` received into the last buffer :meth:`get_buffer` gave."""
        if self._large is None:
            self._end += nbytes
            return
        self._filled += nbytes
        if self._advance_large():
            self._ready.append(self._finish_large())

    def messages(self) -> list[list]:
        """The frame lists of every message received whole and not yet returned."""
        while (frames := self._next_message()) is not None:
            self._ready.append(frames)
        ready, self._ready = self._ready, []
        return ready

    def take(self, n: int) -> bytes | None:
        """``n`` raw bytes if that many are buffered (for the handshake), else None."""
        self._need = n
        if self.buffered < n:
            return None
        data = bytes(self._buf[self._start:self._start + n])
        self._start += n
        self._need = 16
        return data

    def _next_message(self) -> list | None:
        buf, start, available = self._buf, self._start, self.buffered
        if available < 16:
            self._need = 16
            return None
        n, first = parse_prelude_start(buf[start:start + 16])
        head = 8 * (n + 1)
        if available < head:
            self._need = head
            return None
        lengths = (first, *parse_frame_lengths(buf[start + 16:start + head], n - 1))
        total = sum(lengths)
        if total > SMALL_MESSAGE:
            self._start += head
            return self._begin_large(lengths)
        if available < head + total:
            self._need = head + total
            return None
        # Copied out: the staging buffer is reused for the next message.
        body = memoryview(bytes(memoryview(buf)[start + head:start + head + total]))
        self._start += head + total
        self._need = 16
        offsets = itertools.accumulate(lengths, initial=0)
        return [body[a:a + length] for a, length in zip(offsets, lengths)]

    def _begin_large(self, lengths: tuple) -> list | None:
        self._large = [bytearray(length) for length in lengths]
        self._index = self._filled = 0
        while self.buffered and self._index < len(self._large):
            frame = self._large[self._index]
            n = min(len(frame) - self._filled, self.buffered)
            frame[self._filled:self._filled + n] = self._buf[self._start:self._start + n]
            self._start += n
            self._filled += n
            self._advance_large()
        return self._finish_large() if self._advance_large() else None

    def _advance_large(self) -> bool:
        """Step past full (or empty) frames; true once every frame is full."""
        while self._index < len(self._large) and self._filled == len(self._large[self._index]):
            self._index += 1
            self._filled = 0
        return self._index == len(self._large)

    def _finish_large(self) -> list:
        frames, self._large = self._large, None
        self._need = 16
        return frames


# --------------------------------------------------------------- addresses ---

def parse_address(address: str) -> tuple[str, int]:
    """``"tcp://host:port"`` (or ``"host:port"``) → ``(host, port)``."""
    if not isinstance(address, str):
        raise TypeError(f"address must be a string like 'tcp://127.0.0.1:8786', got {address!r}")
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"malformed address {address!r}: expected 'tcp://host:port'")
    return host.strip("[]"), int(port)


def format_address(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"
