"""One shared-memory segment: a file in ``/dev/shm`` that the pool writes and maps.

See :class:`Segment` for why it is written the way it is; the pool that owns segments,
reuses and trims them is :class:`~scatter_magics.engine.shm.pool.SharedMemoryPool`.
"""

from __future__ import annotations

import mmap
import os

from .space import SHM_DIR

MAX_WRITE = 1 << 30  # bytes per pwrite call (Linux writes at most 0x7ffff000 at once)


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

    __slots__ = ("name", "size", "mmap", "fd", "holders", "views", "idle_since", "allocated",
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
        self.holders = 0  # keys whose refs point into it (the pieces of a split share one)
        self.views = 0
        self.idle_since = 0.0

    def write(self, offset: int, view: memoryview, copy=None) -> None:
        """Write ``view`` at ``offset``; ``copy(target, source)`` copies into warm pages
        (``copier.ParallelCopy``: on every core), else one thread does."""
        end = offset + view.nbytes
        if end <= self.allocated:
            if copy is None:
                self._warm_writer()[offset:end] = view
            else:
                with memoryview(self._warm_writer()) as whole, whole[offset:end] as target:
                    copy(target, view)
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
