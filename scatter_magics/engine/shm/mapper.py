"""Read-only mappings of another process's shared-memory segments (the reader side).

Workers, and clients that gather, map a :class:`~scatter_magics.engine.shm.pool.ShmRef`'s
segment once by name and keep it until the owner says the segment is gone
(``forget-segments``). The owner side is :class:`~scatter_magics.engine.shm.pool.SharedMemoryPool`.
"""

from __future__ import annotations

import mmap
import os
import threading

from .pool import ShmRef
from .space import SHM_DIR


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
