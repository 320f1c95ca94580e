"""Large buffers through shared memory: written once, mapped by every process that reads them.

The :class:`SharedMemoryPool` lives in the process that owns the cluster. ``scatter``
copies each large buffer once into a pooled segment and sends workers a small
:class:`ShmRef` instead of the bytes; a broadcast to N workers is still one copy. Every
reader maps the segment **read-only**, so one worker can never change another's replica
(a task that wants to modify its input copies it first, as with Ray).

Segments are reused (fresh pages cost a fault or an allocation each): a segment goes
back to the pool when the scheduler forgets its key, no scatter in flight still points
at it, and no view of it is alive in this process (a gathered array keeps its segment
until it is garbage). Free segments are given back to the system after
:data:`IDLE_SECONDS` idle, and at once beyond :data:`MAX_IDLE_BYTES`.

``/dev/shm`` may be small (64 MiB in Docker, Binder and most Kubernetes pods) or full:
before taking a new segment the pool asks it how much it can still hold
(:class:`~scatter_magics.engine.shm_space.ShmSpace`); a buffer that does not fit travels
over the socket instead, with one warning per cluster.

Segment names are ``<prefix><n>`` in ``/dev/shm``, with a prefix ``smg-<owner pid>-<token>-``
unique to the pool. The owner unlinks them on ``close()``; if the owner is killed, its
workers, which know the prefix, unlink them when they notice (see
``worker._exit_when_parent_dies``).
"""

from __future__ import annotations

import errno
import glob
import itertools
import logging
import mmap
import os
import threading
import time
import weakref
from dataclasses import dataclass

from ..errors import SharedMemoryError
from .shm_space import SHM_DIR, ShmSpace

logger = logging.getLogger(__name__)

THRESHOLD = 1 << 20  # buffers at least this large go through shared memory
MIN_SEGMENT = 1 << 22
MAX_IDLE_BYTES = 1 << 30  # free segments kept for reuse; beyond this they go at once
IDLE_SECONDS = 5.0  # a free segment unused this long is given back to the system
MAX_WRITE = 1 << 30  # bytes per pwrite call (Linux writes at most 0x7ffff000 at once)


def available() -> bool:
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def unlink_segments(prefix: str) -> None:
    """Remove every segment a (dead) pool left behind."""
    if not prefix.startswith("smg-") or "/" in prefix:
        raise ValueError(f"not a segment prefix: {prefix!r}")
    for path in glob.glob(os.path.join(SHM_DIR, glob.escape(prefix) + "*")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class ShmRef:
    """Where a buffer lives: ``nbytes`` bytes at ``offset`` in segment ``name``."""

    name: str
    offset: int
    nbytes: int


class Segment:
    """One file in ``/dev/shm``, mapped read-only for views; written two ways.

    Pages not allocated yet are written with ``pwrite``: a fresh mapping faults them in one
    at a time (200 MB: 146 ms by ``posix_fallocate`` and a mapped copy, 64 ms by
    ``pwrite`` on this machine), and a write that finds ``/dev/shm`` full fails with
    ``ENOSPC`` instead of killing the process with SIGBUS on a page fault. Pages that
    exist (a reused segment, up to :attr:`allocated`) are written through a writable
    mapping of just those pages, populated once (``MAP_POPULATE``) and kept warm: 19 ms
    for 200 MB against 64 ms by ``pwrite``, which looks up every page again.
    """

    __slots__ = ("name", "size", "mmap", "fd", "key", "views", "idle_since", "allocated",
                 "_writer")

    def __init__(self, name: str, size: int):
        self.name, self.size = name, size
        self.mmap = self._writer = None
        self.allocated = 0  # bytes from the start whose pages exist (written before)
        self.fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(self.fd, size)  # sparse: pages are allocated by the writes
            self.mmap = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        except BaseException:
            self.destroy()
            raise
        self.key: str | None = None
        self.views = 0
        self.idle_since = 0.0

    def write(self, offset: int, view: memoryview) -> None:
        end = offset + view.nbytes
        if end <= self.allocated:
            self._warm_writer()[offset:end] = view
            return
        while view.nbytes:  # pwrite may write less than it was given
            written = os.pwrite(self.fd, view[:MAX_WRITE], offset)
            offset, view = offset + written, view[written:]
        page_end = min(-(-end // mmap.PAGESIZE) * mmap.PAGESIZE, self.size)
        self.allocated = max(self.allocated, page_end)

    def _warm_writer(self) -> mmap.mmap:
        """A writable mapping of the allocated pages (no holes in it: no SIGBUS)."""
        if self._writer is None or len(self._writer) < self.allocated:
            if self._writer is not None:
                self._writer.close()
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            self._writer = mmap.mmap(self.fd, self.allocated, flags=flags)
        return self._writer

    def destroy(self) -> None:
        for mapping in (self.mmap, self._writer):
            if mapping is not None:
                try:
                    mapping.close()
                except BufferError:  # a view is still exported; the mapping goes with it
                    pass
        os.close(self.fd)
        try:
            os.unlink(os.path.join(SHM_DIR, self.name))
        except FileNotFoundError:
            pass


class _Record:
    """A key's segment and who still needs it.

    ``pins`` counts scatters in flight that will send its refs to workers; ``held`` says
    the scheduler records the key. The segment is reused only when neither is true: the
    scheduler forgetting a key must not free a segment that a scatter of the same
    content is about to point workers at (a gather then returned another key's data).
    """

    __slots__ = ("segment", "refs", "pins", "held", "ready", "error")

    def __init__(self):
        self.segment: Segment | None = None
        self.refs: list | None = None  # stays None if the buffers went over the socket
        self.pins = 1
        self.held = False
        self.ready = threading.Event()  # set when the writer is done, either way
        self.error: BaseException | None = None


class SharedMemoryPool:
    """Segments owned by this process, one key's buffers per segment, reused when free.

    ``store`` pins what it returns; the caller ``unpin``s once the scatter is over, and
    the scheduler says which keys it ``recorded`` and which it forgot (``release_key``).

    >>> pool = SharedMemoryPool()                                    # doctest: +SKIP
    >>> refs, pinned = pool.store("x", [bytes(8 << 20)])             # doctest: +SKIP
    >>> pool.recorded(["x"]); pool.unpin(["x"])                      # doctest: +SKIP
    >>> pool.release_key("x")         # the segment is free for reuse  # doctest: +SKIP
    """

    def __init__(self, directory: str = SHM_DIR):
        self.prefix = f"smg-{os.getpid()}-{os.urandom(4).hex()}-"
        self._counter = itertools.count()
        self._segments: dict[str, Segment] = {}
        self._by_key: dict[str, _Record] = {}
        self._free: list[Segment] = []
        self._lock = threading.Lock()  # scatter runs on user threads, release on the loop
        self.on_destroy: list = []  # callbacks(names) when segments are unlinked
        self.space = ShmSpace(directory)
        self._over_cap = False  # free segments beyond MAX_IDLE_BYTES, to trim at once
        self.closed = False

    # ------------------------------------------------------------ writing ---
    def holds(self, key: str) -> bool:
        return key in self._by_key

    def store(self, key: str, buffers: list, on_copied=None) -> tuple[list, bool]:
        """``(buffers, pinned)``: the large ``buffers`` of ``key`` as refs to one segment.

        ``pinned`` says this call holds the segment until :meth:`unpin`. A key stored
        already, or being stored by another thread now, is not copied twice. When
        ``/dev/shm`` cannot hold the copy, the buffers come back unchanged (and
        unpinned) to travel over the socket. ``on_copied(nbytes)``, if given, is called
        as each piece of the copy lands (progress bars).
        """
        views = [_bytes_view(b) for b in buffers]
        if not any(v.nbytes >= THRESHOLD for v in views):
            return buffers, False
        with self._lock:
            record = self._by_key.get(key)
            writer = record is None
            if writer:
                record = self._by_key[key] = _Record()
            else:
                record.pins += 1
        if writer:
            self._write(key, record, views, on_copied)
        else:
            record.ready.wait()
        error = record.error
        if error is not None and (isinstance(error, SharedMemoryError)
                                  or not isinstance(error, Exception)):
            raise error  # names the key already, or an interruption (KeyboardInterrupt)
        if error is not None:
            raise SharedMemoryError(f"could not put key {key!r} in shared memory: "
                                    f"{error}") from error
        if record.refs is None:
            return buffers, False
        return [b if isinstance(r, int) else r for b, r in zip(buffers, record.refs)], True

    def _write(self, key: str, record: _Record, views: list, on_copied=None) -> None:
        """Copy ``views`` into a segment for ``record``; on no room, leave refs None."""
        size = sum(_aligned(v.nbytes) for v in views if v.nbytes >= THRESHOLD)
        segment = None
        try:
            segment = self._take(key, size)
            if segment is not None:
                record.refs = self._copy(segment, views, on_copied)
                record.segment, segment.key = segment, key
        except BaseException as exc:  # interrupted too: the segment must not be stranded
            record.error = exc
            with self._lock:
                if segment is not None and segment.key is None:
                    self._maybe_free(segment)  # a no-op if _copy discarded it
        finally:
            if record.refs is None:  # no room, or failed: nobody may find this record
                with self._lock:
                    if self._by_key.get(key) is record:
                        del self._by_key[key]
            record.ready.set()

    def _copy(self, segment: Segment, views: list, on_copied=None) -> list:
        """Refs for ``views`` written into ``segment``; small ones are ints (left inline)."""
        offset, refs = 0, []
        try:
            for view in views:
                if view.nbytes < THRESHOLD:
                    refs.append(0)
                    continue
                _write_in_pieces(segment, offset, view, on_copied)
                refs.append(ShmRef(segment.name, offset, view.nbytes))
                offset += _aligned(view.nbytes)
        except OSError as exc:
            self._discard(segment)
            if exc.errno != errno.ENOSPC:
                raise
            self.space.fell_back(offset + view.nbytes, why="it filled up while writing")
            return None
        return refs

    def _take(self, key: str, size: int) -> Segment | None:
        """A free segment that fits, or a new one if ``/dev/shm`` has room; else None."""
        with self._lock:
            fits = [s for s in self._free if size <= s.size <= 2 * size + MIN_SEGMENT]
            if fits:
                segment = min(fits, key=lambda s: s.size)
                self._free.remove(segment)
                return segment
        size = max(size, MIN_SEGMENT)
        if not self.space.fits(size):
            self.trim(0.0)  # idle segments take room too: give them back and look again
            if not self.space.fits(size):
                self.space.fell_back(size, key=key)
                return None
        name = f"{self.prefix}{next(self._counter)}"
        try:
            segment = Segment(name, size)
        except OSError as exc:
            raise SharedMemoryError(f"could not create a {size}-byte segment in {SHM_DIR} "
                                    f"for key {key!r}: {exc}") from exc
        with self._lock:
            self._segments[name] = segment
        return segment

    def _discard(self, segment: Segment) -> None:
        with self._lock:
            self._segments.pop(segment.name, None)
        segment.destroy()
        self._announce([segment])

    # ------------------------------------------------------------ reading ---
    def owns(self, name: str) -> bool:
        return name in self._segments

    def view(self, ref: ShmRef):
        """A read-only view of ``ref``; its segment is not reused while the view lives."""
        import numpy as np  # a numpy array, unlike a memoryview, can carry a finalizer

        with self._lock:
            segment = self._segments[ref.name]
            segment.views += 1
        view = np.frombuffer(segment.mmap, np.uint8, ref.nbytes, ref.offset)
        weakref.finalize(view, self._view_dropped, segment)
        return view

    def _view_dropped(self, segment: Segment) -> None:
        with self._lock:
            segment.views -= 1
            self._maybe_free(segment)
        self._trim_if_over_cap()

    # ------------------------------------------------------------ releasing ---
    def recorded(self, keys) -> None:
        """The scheduler records ``keys`` (their refs are on workers now)."""
        with self._lock:
            for key in keys:
                record = self._by_key.get(key)
                if record is not None:
                    record.held = True

    def unpin(self, keys) -> None:
        """Scatters of ``keys`` that :meth:`store` pinned are over (sent, or failed)."""
        with self._lock:
            for key in keys:
                record = self._by_key.get(key)
                if record is not None and record.pins > 0:
                    record.pins -= 1
                    self._drop_if_unused(key, record)
        self._trim_if_over_cap()

    def release_key(self, key: str) -> None:
        """The scheduler forgot ``key``: its segment is reused once nothing else needs it."""
        with self._lock:
            record = self._by_key.get(key)
            if record is not None:
                record.held = False
                self._drop_if_unused(key, record)
        self._trim_if_over_cap()

    def _drop_if_unused(self, key: str, record: _Record) -> None:  # with the lock held
        if record.pins == 0 and not record.held and record.ready.is_set():
            del self._by_key[key]
            if record.segment is not None:
                record.segment.key = None
                self._maybe_free(record.segment)

    def _maybe_free(self, segment: Segment) -> None:  # called with the lock held
        if segment.key is None and segment.views == 0 and segment.name in self._segments \
                and segment not in self._free:
            segment.idle_since = time.monotonic()
            self._free.append(segment)
            self._over_cap = sum(s.size for s in self._free) > MAX_IDLE_BYTES

    def _trim_if_over_cap(self) -> None:  # called without the lock
        if self._over_cap:
            self._over_cap = False
            self.trim()

    def trim(self, idle_seconds: float | None = None) -> None:
        """Give back free segments idle ``idle_seconds`` (default :data:`IDLE_SECONDS`) or
        more, and the longest idle beyond :data:`MAX_IDLE_BYTES`."""
        idle_seconds = IDLE_SECONDS if idle_seconds is None else idle_seconds
        now = time.monotonic()
        with self._lock:
            doomed = [s for s in self._free if now - s.idle_since >= idle_seconds]
            kept = sorted((s for s in self._free if s not in doomed), key=lambda s: s.idle_since)
            while sum(s.size for s in kept) > MAX_IDLE_BYTES:
                doomed.append(kept.pop(0))  # the longest idle first
            self._free = kept
            for segment in doomed:
                self._segments.pop(segment.name, None)
        for segment in doomed:
            segment.destroy()
        self._announce(doomed)

    def _announce(self, segments: list) -> None:
        if segments:
            for callback in self.on_destroy:
                callback([s.name for s in segments])

    def stats(self) -> dict:
        """What the pool holds now, and the shared-memory mode (for ``scheduler_info``)."""
        with self._lock:
            free = sum(s.size for s in self._free)
            total = sum(s.size for s in self._segments.values())
            keys = len(self._by_key)
        return {**self.space.describe(), "keys": keys, "segments": len(self._segments),
                "in_use_bytes": total - free, "idle_bytes": free}

    def close(self) -> None:
        with self._lock:
            self.closed = True
            segments, self._segments = list(self._segments.values()), {}
            self._free, self._by_key = [], {}
        for segment in segments:
            segment.destroy()


def _bytes_view(buffer) -> memoryview:
    view = memoryview(buffer)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


COPY_CHUNK = 64 << 20  # bytes written between progress reports (and chances for Ctrl-C)


def _write_in_pieces(segment: Segment, offset: int, view: memoryview, on_copied) -> None:
    if on_copied is None:
        segment.write(offset, view)
        return
    for start in range(0, view.nbytes, COPY_CHUNK):
        piece = view[start:start + COPY_CHUNK]
        segment.write(offset + start, piece)
        on_copied(piece.nbytes)


def _aligned(n: int) -> int:
    return (n + 63) & ~63  # keep every buffer cache-line (and SIMD) aligned


def resolve(buffers: list, view_of) -> list:
    """``buffers`` with every :class:`ShmRef` replaced by a read-only view."""
    return [view_of(b) if isinstance(b, ShmRef) else b for b in buffers]
