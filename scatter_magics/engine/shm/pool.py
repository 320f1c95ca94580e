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
(:class:`~scatter_magics.engine.shm.space.ShmSpace`); a buffer that does not fit travels
over the socket instead, with one warning per cluster.

Segment names are ``<prefix><n>`` in ``/dev/shm``, with a prefix ``smg-<owner pid>-<token>-``
unique to the pool. The owner unlinks them on ``close()``; if the owner is killed, its
workers, which know the prefix, unlink them when they notice (see
``engine/worker/lifeline.py``); what owner and workers leave when they die together, the
next pool sweeps (``cleanup.py``).
"""

from __future__ import annotations

import concurrent.futures
import errno
import itertools
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass

from ...errors import SharedMemoryError
from .cleanup import sweep_orphaned_segments
from .segment import Segment
from .space import SHM_DIR, ShmSpace

logger = logging.getLogger(__name__)

THRESHOLD = 1 << 20  # buffers at least this large go through shared memory
MIN_SEGMENT = 1 << 22
MAX_IDLE_BYTES = 1 << 30  # free segments kept for reuse; beyond this they go at once
IDLE_SECONDS = 5.0  # a free segment unused this long is given back to the system
WRITE_AHEAD_MIN = 1 << 23  # bytes; below this, copying while hashing saves too little
FILLED_UP = "it filled up while the buffer was being written"  # a fallback's reason


def available() -> bool:
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


@dataclass(frozen=True)
class ShmRef:
    """Where a buffer lives: ``nbytes`` bytes at ``offset`` in segment ``name``."""

    name: str
    offset: int
    nbytes: int


class _Record:
    """A key's segment and who still needs it.

    ``pins`` counts scatters in flight that will send its refs to workers; ``held`` says
    the scheduler records the key. The segment is reused only when neither is true: the
    scheduler forgetting a key must not free a segment that a scatter of the same
    content is about to point workers at (a gather then returned another key's data).
    """

    __slots__ = ("segment", "refs", "pins", "held", "ready", "error", "size")

    def __init__(self):
        self.size = 0  # bytes of its large buffers, aligned
        self.segment: Segment | None = None
        self.refs: list | None = None  # stays None if the buffers went over the socket
        self.pins = 1
        self.held = False
        self.ready = threading.Event()  # set when the writer is done, either way
        self.error: BaseException | None = None


@dataclass
class Draft:
    """Buffers copied before their key was known (``segment`` None: no room for them)."""

    segment: Segment | None
    refs: list | None
    size: int
    why: str | None  # why there is no segment, if there is none


class SharedMemoryPool:
    """Segments owned by this process, one key's buffers per segment, reused when free.

    ``store`` pins what it returns; the caller ``unpin``s once the scatter is over, and
    the scheduler says which keys it ``recorded`` and which it forgot (``release_key``).

    >>> pool = SharedMemoryPool()                                    # doctest: +SKIP
    >>> refs, pinned = pool.store("x", [bytes(8 << 20)])             # doctest: +SKIP
    >>> pool.recorded(["x"]); pool.unpin(["x"])                      # doctest: +SKIP
    >>> pool.release_key("x")         # the segment is free for reuse  # doctest: +SKIP
    """

    def __init__(self):
        sweep_orphaned_segments()  # once per process
        self.prefix = f"smg-{os.getpid()}-{os.urandom(4).hex()}-"
        self._counter = itertools.count()
        self._segments: dict[str, Segment] = {}
        self._by_key: dict[str, _Record] = {}
        self._free: list[Segment] = []
        self._lock = threading.Lock()  # scatter runs on user threads, release on the loop
        self.on_destroy: list = []  # callbacks(names) when segments are unlinked
        self.space = ShmSpace(SHM_DIR)
        self._over_cap = False  # free segments beyond MAX_IDLE_BYTES, to trim at once
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None  # write_ahead's
        self.closed = False

    # ------------------------------------------------------------ writing ---
    def holds(self, key: str) -> bool:
        return key in self._by_key

    def store(self, key: str, buffers: list, draft: concurrent.futures.Future | None = None,
              on_copied=None) -> tuple[list, bool]:
        """``(buffers, pinned)``: the large ``buffers`` of ``key`` as refs to one segment.

        ``pinned`` says this call holds the segment until :meth:`unpin`. A key stored
        already, or being stored by another thread now, is not copied twice. When
        ``/dev/shm`` cannot hold the copy, the buffers come back unchanged (and
        unpinned) to travel over the socket. ``draft``: the same buffers, copied by
        :meth:`write_ahead` while the key was computed. ``on_copied(nbytes)``, if given,
        is called as each piece of the copy lands (progress bars).
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
        if writer and draft is not None:
            self._adopt(key, record, draft)
        elif writer:
            self._write(key, record, views, on_copied)
        else:
            if draft is not None:
                self.give_back(draft)  # the same content was stored meanwhile
            record.ready.wait()
        error = record.error
        if error is not None and not isinstance(error, Exception):
            raise error  # an interruption (KeyboardInterrupt) stays what it is
        if error is not None:
            raise SharedMemoryError(f"could not put key {key!r} in shared memory: "
                                    f"{error}") from error
        if record.refs is None:
            return buffers, False
        return [b if isinstance(r, int) else r for b, r in zip(buffers, record.refs)], True

    def _write(self, key: str, record: _Record, views: list, on_copied=None) -> None:
        """Copy ``views`` into a segment for ``record``; on no room, leave refs None."""
        size = record.size = sum(_aligned(v.nbytes) for v in views if v.nbytes >= THRESHOLD)
        segment = None
        try:
            segment = self._take(size)
            if segment is None:
                self.space.fell_back(size, key=key)
            else:
                record.refs = self._copy(segment, views, on_copied)
                if record.refs is None:
                    self.space.fell_back(size, key=key, why=FILLED_UP)
                else:
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

    # ------------------------------------------------------------ writing ahead ---
    def write_ahead(self, buffers: list, on_copied=None) -> "concurrent.futures.Future | None":
        """Start copying ``buffers`` into a segment before their key is known.

        The caller hashes the value for its key meanwhile (xxhash and ``pwrite`` both
        release the GIL), then passes the :class:`Draft` to :meth:`store`, or to
        :meth:`give_back`. None when not worth it: small, or a stored key has the same
        size (then the value may be stored already, and a copy would be wasted).
        """
        views = [_bytes_view(b) for b in buffers]
        size = sum(_aligned(v.nbytes) for v in views if v.nbytes >= THRESHOLD)
        with self._lock:
            if size < WRITE_AHEAD_MIN or self.closed or any(
                    r.size == size for r in self._by_key.values()):
                return None
            if self._writer is None:
                self._writer = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="scatter-magics-shm-write")
        return self._writer.submit(self._draft, views, size, on_copied)

    def _draft(self, views: list, size: int, on_copied=None) -> Draft:
        segment = self._take(size)
        if segment is None:
            return Draft(None, None, size, why=None)
        try:
            refs = self._copy(segment, views, on_copied)
        except BaseException:
            with self._lock:
                self._maybe_free(segment)  # a no-op if _copy discarded it
            raise
        return Draft(segment if refs else None, refs, size, why=None if refs else FILLED_UP)

    def _adopt(self, key: str, record: _Record, pending: concurrent.futures.Future) -> None:
        """Make ``record`` the owner of a draft's segment (as :meth:`_write` would)."""
        try:
            draft = pending.result()
            record.size = draft.size
            if draft.refs is None:  # no room: the buffers go over the socket
                self.space.fell_back(draft.size, key=key, why=draft.why)
            else:
                record.refs, record.segment, draft.segment.key = draft.refs, draft.segment, key
        except BaseException as exc:
            record.error = exc
        finally:
            if record.refs is None:
                with self._lock:
                    if self._by_key.get(key) is record:
                        del self._by_key[key]
            record.ready.set()

    def give_back(self, pending: concurrent.futures.Future) -> None:
        """A draft nobody adopted: its segment is free again (once the copy is done)."""
        try:
            draft = pending.result()
        except Exception:  # the copy failed: there is nothing to give back
            return
        if draft.segment is not None:
            with self._lock:
                self._maybe_free(draft.segment)

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
            return None  # /dev/shm filled up meanwhile (another process, or a race)
        return refs

    def _take(self, size: int) -> Segment | None:
        """A free segment that fits, or a new one if ``/dev/shm`` has room; else None."""
        with self._lock:
            fits = [s for s in self._free if size <= s.size <= 2 * size + MIN_SEGMENT]
            if fits:
                # The smallest; of equals, the one freed last: a segment that is not
                # needed in the steady state then stays unused and is trimmed when idle,
                # rather than kept in rotation for good (the 50 MB soak grew 2 -> 3).
                segment = min(fits, key=lambda s: (s.size, -s.idle_since))
                self._free.remove(segment)
                return segment
        size = max(size, MIN_SEGMENT)
        if not self.space.fits(size):
            self.trim(0.0)  # idle segments take room too: give them back and look again
            if not self.space.fits(size):
                return None
        name = f"{self.prefix}{next(self._counter)}"
        try:
            segment = Segment(name, size)
        except OSError as exc:
            raise SharedMemoryError(f"could not create a {size}-byte segment in "
                                    f"{SHM_DIR}: {exc}") from exc
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
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
        with self._lock:
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
