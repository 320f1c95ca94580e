"""Large buffers through shared memory: written once, mapped by every process that reads them.

The :class:`SharedMemoryPool` lives in the process that owns the cluster. ``scatter``
copies each large buffer once into a pooled segment and sends workers a small
:class:`ShmRef` instead of the bytes; a broadcast to N workers is still one copy. Every
reader maps the segment **read-only**, so one worker can never change another's replica
(a task that wants to modify its input copies it first, as with Ray).

Segments are reused (fresh pages cost a fault or an allocation each): a segment goes
back to the pool when the scheduler forgets its keys, no scatter in flight still points
at it, and no view of it is alive in this process (a gathered array keeps its segment
until it is garbage). Free segments are given back to the system after
:data:`~.reuse.IDLE_SECONDS` idle, and at once beyond :data:`~.reuse.MAX_IDLE_BYTES`
(:class:`~.reuse.SegmentCache`).

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
import logging
import os
import threading
import weakref
from typing import NamedTuple

from ...errors import SharedMemoryError
from .cleanup import sweep_orphaned_segments
from .copier import ParallelCopy
from .layout import aligned, bytes_view, continues, run_offsets, spans, write_in_pieces
from .records import Draft, KeyRecord
from .reuse import IDLE_SECONDS, SegmentCache  # IDLE_SECONDS: LocalCluster paces its trims by it
from .segment import Segment
from .space import SHM_DIR, ShmSpace

logger = logging.getLogger(__name__)

THRESHOLD = 1 << 20  # buffers at least this large go through shared memory
WRITE_AHEAD_MIN = 1 << 23  # bytes; below this, copying while hashing saves too little
FILLED_UP = "it filled up while the buffer was being written"  # a fallback's reason


def available() -> bool:
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


class ShmRef(NamedTuple):
    """Where a buffer lives: ``nbytes`` bytes at ``offset`` in segment ``name``."""
    # (Not a dataclass: importing dataclasses was ~5 ms of the fork server's start.)

    name: str
    offset: int
    nbytes: int


class SharedMemoryPool:
    """Segments owned by this process, reused when free: one key's buffers per segment,
    or the buffers of a run of keys that are slices of one block of memory (``store_run``:
    the pieces of a split array, copied once, together).

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
        self.space = ShmSpace(SHM_DIR)
        self.segments = SegmentCache(self.prefix, self.space)  # made, reused, given back
        self.on_destroy = self.segments.on_destroy  # callbacks(names) when segments go
        self._by_key: dict[str, KeyRecord] = {}
        self._lock = threading.Lock()  # scatter runs on user threads, release on the loop
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None  # write_ahead's
        self._copy_warm = ParallelCopy()  # into pages that exist: on every core
        self.copied_bytes = 0  # bytes written into segments since the pool began
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
        views = [bytes_view(b) for b in buffers]
        if not any(v.nbytes >= THRESHOLD for v in views):
            return buffers, False
        with self._lock:
            record = self._by_key.get(key)
            writer = record is None
            if writer:
                record = self._by_key[key] = KeyRecord()
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

    def _write(self, key: str, record: KeyRecord, views: list, on_copied=None) -> None:
        """Copy ``views`` into a segment for ``record``; on no room, leave refs None."""
        size = record.size = sum(aligned(v.nbytes) for v in views if v.nbytes >= THRESHOLD)
        segment = None
        try:
            segment = self.segments.take(size)
            if segment is None:
                self.space.fell_back(size, key=key)
            else:
                record.refs = self._copy(segment, views, on_copied)
                if record.refs is None:
                    self.space.fell_back(size, key=key, why=FILLED_UP)
                else:
                    record.segment, segment.holders = segment, 1
        except BaseException as exc:  # interrupted too: the segment must not be stranded
            record.error = exc
            with self._lock:
                if segment is not None and not segment.holders:
                    self.segments.free(segment)  # a no-op if _copy discarded it
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
        views = [bytes_view(b) for b in buffers]
        size = sum(aligned(v.nbytes) for v in views if v.nbytes >= THRESHOLD)
        with self._lock:
            if size < WRITE_AHEAD_MIN or self.closed or any(
                    r.size == size for r in self._by_key.values()):
                return None
            if self._writer is None:
                self._writer = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="scatter-magics-shm-write")
        return self._writer.submit(self._draft, views, size, on_copied)

    def _draft(self, views: list, size: int, on_copied=None) -> Draft:
        segment = self.segments.take(size)
        if segment is None:
            return Draft(None, None, size, why=None)
        try:
            refs = self._copy(segment, views, on_copied)
        except BaseException:
            with self._lock:
                self.segments.free(segment)  # a no-op if _copy discarded it
            raise
        return Draft(segment if refs else None, refs, size, why=None if refs else FILLED_UP)

    def _adopt(self, key: str, record: KeyRecord, pending: concurrent.futures.Future) -> None:
        """Make ``record`` the owner of a draft's segment (as :meth:`_write` would)."""
        try:
            draft = pending.result()
            record.size = draft.size
            if draft.refs is None:  # no room: the buffers go over the socket
                self.space.fell_back(draft.size, key=key, why=draft.why)
            else:
                record.refs, record.segment = draft.refs, draft.segment
                draft.segment.holders = 1
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
                self.segments.free(draft.segment)

    def _copy(self, segment: Segment, views: list, on_copied=None) -> list:
        """Refs for ``views`` written into ``segment``; small ones are ints (left inline)."""
        offset, refs = 0, []
        try:
            for view in views:
                if view.nbytes < THRESHOLD:
                    refs.append(0)
                    continue
                write_in_pieces(segment, offset, view, on_copied, self._copy_warm)
                refs.append(ShmRef(segment.name, offset, view.nbytes))
                offset += aligned(view.nbytes)
        except OSError as exc:
            return self._write_failed(segment, exc)
        self._count_copied(sum(r.nbytes for r in refs if r))
        return refs

    def _write_failed(self, segment: Segment, exc: OSError) -> None:
        self.segments.discard(segment)
        if exc.errno != errno.ENOSPC:
            raise exc
        return None  # /dev/shm filled up meanwhile (another process, or a race)

    def _count_copied(self, nbytes: int) -> None:
        with self._lock:
            self.copied_bytes += nbytes

    # ------------------------------------------------------------ runs of pieces ---
    def store_run(self, keys: list, buffers: list[list], on_copied=None) -> list | None:
        """``[(buffers, pinned)]`` per key, as :meth:`store` gives, for keys whose large
        buffers are consecutive slices of one block of memory (``runs.RunStore`` finds them):
        copied once into one segment, laid out as in memory, every key's refs into it.

        None, having done nothing, when a key is stored (or being stored) already or
        appears twice: the caller stores those keys one by one, as usual.
        """
        views = [[bytes_view(b) for b in key_buffers] for key_buffers in buffers]
        found = [spans(v, THRESHOLD) for v in views]
        if len(set(keys)) != len(keys) or any(f is None for f in found) or any(
                not continues(a, b) for a, b in zip(found, found[1:])):
            return None
        size, offsets = run_offsets(found)
        with self._lock:
            if any(key in self._by_key for key in keys):
                return None
            records = [self._by_key.setdefault(key, KeyRecord()) for key in keys]
        try:
            segment = self.segments.take(size)
            if segment is None:
                self.space.fell_back(size, key=keys[0])
            elif self._copy_run(segment, views, offsets, records, on_copied):
                segment.holders = len(keys)
            else:
                self.space.fell_back(size, key=keys[0], why=FILLED_UP)
        except BaseException as exc:  # interrupted too: nobody may wait on these for ever
            for record in records:
                record.error = exc
            raise
        finally:
            with self._lock:
                for key, record in zip(keys, records):
                    if record.refs is None and self._by_key.get(key) is record:
                        del self._by_key[key]
                    record.ready.set()
        if records[0].refs is None:
            return [(key_buffers, False) for key_buffers in buffers]
        return [([b if isinstance(r, int) else r for b, r in zip(key_buffers, record.refs)], True)
                for key_buffers, record in zip(buffers, records)]

    def _copy_run(self, segment: Segment, views: list, offsets: list, records: list,
                  on_copied=None) -> bool:
        """Write each key's large views at its offsets; set the records' refs. False if
        ``/dev/shm`` filled up meanwhile (the segment is then gone)."""
        try:
            for key_views, key_offsets, record in zip(views, offsets, records):
                large = iter(key_offsets)
                refs = []
                for view in key_views:
                    if view.nbytes < THRESHOLD:
                        refs.append(0)
                        continue
                    offset = next(large)
                    write_in_pieces(segment, offset, view, on_copied, self._copy_warm)
                    refs.append(ShmRef(segment.name, offset, view.nbytes))
                record.refs, record.segment = refs, segment
                record.size = sum(aligned(r.nbytes) for r in refs if r)
        except BaseException as exc:
            for record in records:
                record.refs = record.segment = None
            if isinstance(exc, OSError):
                return self._write_failed(segment, exc) is not None
            with self._lock:
                self.segments.free(segment)
            raise
        self._count_copied(sum(r.nbytes for record in records for r in record.refs if r))
        return True

    # ------------------------------------------------------------ reading ---
    def owns(self, name: str) -> bool:
        return self.segments.owns(name)

    def view(self, ref: ShmRef):
        """A read-only view of ``ref``; its segment is not reused while the view lives."""
        import numpy as np  # a numpy array, unlike a memoryview, can carry a finalizer

        segment = self.segments.get(ref.name)
        with self._lock:
            segment.views += 1
        view = np.frombuffer(segment.mmap, np.uint8, ref.nbytes, ref.offset)
        weakref.finalize(view, self._view_dropped, segment)
        return view

    def _view_dropped(self, segment: Segment) -> None:
        with self._lock:
            segment.views -= 1
            self.segments.free(segment)
        self.segments.trim_if_over_cap()

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
        self.segments.trim_if_over_cap()

    def release_key(self, key: str) -> None:
        """The scheduler forgot ``key``: its segment is reused once nothing else needs it."""
        with self._lock:
            record = self._by_key.get(key)
            if record is not None:
                record.held = False
                self._drop_if_unused(key, record)
        self.segments.trim_if_over_cap()

    def _drop_if_unused(self, key: str, record: KeyRecord) -> None:  # with the lock held
        if record.pins == 0 and not record.held and record.ready.is_set():
            del self._by_key[key]
            if record.segment is not None:
                record.segment.holders -= 1
                self.segments.free(record.segment)

    def trim(self, idle_seconds: float | None = None) -> None:
        """Give back free segments idle that long (see :mod:`.reuse`)."""
        self.segments.trim(idle_seconds)

    def stats(self) -> dict:
        """What the pool holds now, and the shared-memory mode (for ``scheduler_info``)."""
        count, total, free = self.segments.sizes()
        return {**self.space.describe(), "keys": len(self._by_key), "segments": count,
                "in_use_bytes": total - free, "idle_bytes": free,
                "copied_bytes": self.copied_bytes}

    def close(self) -> None:
        with self._lock:
            self.closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
        self._copy_warm.close()  # (its helper threads)
        with self._lock:
            self._by_key = {}
        self.segments.close()


def resolve(buffers: list, view_of) -> list:
    """``buffers`` with every :class:`ShmRef` replaced by a read-only view."""
    return [view_of(b) if isinstance(b, ShmRef) else b for b in buffers]
