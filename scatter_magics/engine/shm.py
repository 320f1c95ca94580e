"""Large buffers through shared memory: written once, mapped by every process that reads them.

The :class:`SharedMemoryPool` lives in the process that owns the cluster. ``scatter``
copies each large buffer once into a pooled segment and sends workers a small
:class:`ShmRef` instead of the bytes; a broadcast to N workers is still one copy. Every
reader maps the segment **read-only**, so one worker can never change another's replica
(a task that wants to modify its input copies it first, as with Ray).

Fresh memory is slow to fault in on these machines (well under 1 GB/s, against ~9 GB/s
for a copy into memory already touched), so segments are reused: a segment goes back to
the pool when its key is forgotten by the scheduler *and* no view of it is alive in this
process (a gathered array keeps its segment until it is garbage).

Segment names are ``<prefix><n>`` in ``/dev/shm``, with a prefix ``smg-<owner pid>-<token>-``
unique to the pool. The owner unlinks them on ``close()``; if the owner is killed, its
workers, which know the prefix, unlink them when they notice (see
``worker._exit_when_parent_dies``).
"""

from __future__ import annotations

import glob
import itertools
import logging
import mmap
import os
import threading
import weakref
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
THRESHOLD = 1 << 20  # buffers at least this large go through shared memory
MIN_SEGMENT = 1 << 22
MAX_IDLE_BYTES = 4 << 30  # free segments kept for reuse; beyond this they are unlinked


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
    __slots__ = ("name", "size", "mmap", "fd", "key", "views")

    def __init__(self, name: str, size: int):
        self.name, self.size = name, size
        self.fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            # Allocating every page now is several times faster than faulting them in
            # one by one during the first copy.
            os.posix_fallocate(self.fd, 0, size)
            self.mmap = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED)
        except BaseException:
            os.close(self.fd)
            os.unlink(os.path.join(SHM_DIR, name))
            raise
        self.key: str | None = None
        self.views = 0

    def destroy(self) -> None:
        try:
            self.mmap.close()
        except BufferError:  # a view is still exported; the mapping goes with it
            pass
        os.close(self.fd)
        try:
            os.unlink(os.path.join(SHM_DIR, self.name))
        except FileNotFoundError:
            pass


class SharedMemoryPool:
    """Segments owned by this process, one key's buffers per segment, reused when free."""

    def __init__(self):
        self.prefix = f"smg-{os.getpid()}-{os.urandom(4).hex()}-"
        self._counter = itertools.count()
        self._segments: dict[str, Segment] = {}
        self._by_key: dict[str, Segment] = {}
        self._free: list[Segment] = []
        self._lock = threading.Lock()  # scatter runs on user threads, release on the loop
        self.on_destroy: list = []  # callbacks(names) when segments are unlinked
        self.closed = False

    # ------------------------------------------------------------ writing ---
    def holds(self, key: str) -> bool:
        return key in self._by_key

    def store(self, key: str, buffers: list, on_copied=None) -> list:
        """Copy the large ``buffers`` of ``key`` into one segment; return them as refs.

        A key already stored (the same data scattered again) is not copied twice.
        ``on_copied(nbytes)``, if given, is called as each piece lands (progress bars).
        """
        with self._lock:
            if key in self._by_key:
                return self._by_key[key][1]
        large = [memoryview(b).cast("B") for b in buffers
                 if memoryview(b).nbytes >= THRESHOLD]
        if not large:
            return buffers
        segment = self._take(sum(_aligned(b.nbytes) for b in large))
        offset = 0
        out = []
        for b in buffers:
            view = memoryview(b).cast("B")
            if view.nbytes < THRESHOLD:
                out.append(b)
                continue
            _copy(segment.mmap, offset, view, on_copied)
            out.append(ShmRef(segment.name, offset, view.nbytes))
            offset += _aligned(view.nbytes)
        with self._lock:
            segment.key = key
            self._by_key[key] = (segment, out)
        return out

    def _take(self, size: int) -> Segment:
        with self._lock:
            fits = [s for s in self._free if size <= s.size <= 2 * size + MIN_SEGMENT]
            if fits:
                segment = min(fits, key=lambda s: s.size)
                self._free.remove(segment)
                return segment
        name = f"{self.prefix}{next(self._counter)}"
        segment = Segment(name, max(size, MIN_SEGMENT))
        with self._lock:
            self._segments[name] = segment
        return segment

    # ------------------------------------------------------------ reading ---
    def owns(self, name: str) -> bool:
        return name in self._segments

    def view(self, ref: ShmRef):
        """A read-only view of ``ref``; its segment is not reused while the view lives."""
        import numpy as np  # a numpy array, unlike a memoryview, can carry a finalizer

        segment = self._segments[ref.name]
        view = np.frombuffer(segment.mmap, np.uint8, ref.nbytes, ref.offset)
        view.flags.writeable = False
        with self._lock:
            segment.views += 1
        weakref.finalize(view, self._view_dropped, segment)
        return view

    def _view_dropped(self, segment: Segment) -> None:
        with self._lock:
            segment.views -= 1
            self._maybe_free(segment)

    # ------------------------------------------------------------ releasing ---
    def release_key(self, key: str) -> None:
        """The scheduler forgot ``key``: its segment may be reused once no view is alive."""
        with self._lock:
            segment, _ = self._by_key.pop(key, (None, None))
            if segment is not None:
                segment.key = None
                self._maybe_free(segment)

    def _maybe_free(self, segment: Segment) -> None:  # called with the lock held
        if segment.key is None and segment.views == 0 and segment.name in self._segments \
                and segment not in self._free:
            self._free.append(segment)
            self._trim()

    def _trim(self) -> None:
        idle = sum(s.size for s in self._free)
        doomed = []
        while idle > MAX_IDLE_BYTES and self._free:
            segment = max(self._free, key=lambda s: s.size)
            self._free.remove(segment)
            self._segments.pop(segment.name, None)
            idle -= segment.size
            doomed.append(segment)
        for segment in doomed:
            segment.destroy()
        if doomed:
            for callback in self.on_destroy:
                callback([s.name for s in doomed])

    def close(self) -> None:
        with self._lock:
            self.closed = True
            segments, self._segments = list(self._segments.values()), {}
            self._free, self._by_key = [], {}
        for segment in segments:
            segment.destroy()


class SegmentMapper:
    """Read-only mappings of other processes' segments, opened once and cached."""

    def __init__(self):
        self._maps: dict[str, mmap.mmap] = {}
        self._lock = threading.Lock()

    def view(self, ref: ShmRef) -> memoryview:
        with self._lock:
            mapping = self._maps.get(ref.name)
            if mapping is None:
                fd = os.open(os.path.join(SHM_DIR, ref.name), os.O_RDONLY)
                try:
                    mapping = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
                finally:
                    os.close(fd)
                self._maps[ref.name] = mapping
        return memoryview(mapping)[ref.offset:ref.offset + ref.nbytes]

    def forget(self, names) -> None:
        with self._lock:
            for name in names:
                mapping = self._maps.pop(name, None)
                if mapping is not None:
                    try:
                        mapping.close()
                    except BufferError:  # still viewed; unmapped when the views go
                        pass

    def spans(self) -> list[tuple[int, int]]:
        """``(start, end)`` addresses of the mappings, to tell if an array points inside."""
        import numpy as np  # only asked about numpy results, so numpy is loaded already

        with self._lock:
            out = []
            for m in self._maps.values():
                start = np.frombuffer(m, np.uint8, 1).__array_interface__["data"][0]
                out.append((start, start + len(m)))
            return out

    def close(self) -> None:
        self.forget(list(self._maps))


COPY_CHUNK = 64 << 20  # bytes copied between progress reports (and chances for Ctrl-C)


def _copy(target, offset: int, view: memoryview, on_copied) -> None:
    if on_copied is None:
        target[offset:offset + view.nbytes] = view
        return
    for start in range(0, view.nbytes, COPY_CHUNK):
        piece = view[start:start + COPY_CHUNK]
        target[offset + start:offset + start + piece.nbytes] = piece
        on_copied(piece.nbytes)


def _aligned(n: int) -> int:
    return (n + 63) & ~63  # keep every buffer cache-line (and SIMD) aligned


def resolve(buffers: list, view_of) -> list:
    """``buffers`` with every :class:`ShmRef` replaced by a read-only view."""
    return [view_of(b) if isinstance(b, ShmRef) else b for b in buffers]
