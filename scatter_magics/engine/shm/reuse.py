"""The pool's segments: made when ``/dev/shm`` has room, kept for reuse once free, given
back to the system when idle.

Fresh pages cost an allocation each, so a free segment is reused for the next buffer
that fits; one unused for :data:`IDLE_SECONDS` is given back, and at once beyond
:data:`MAX_IDLE_BYTES` of free segments. :class:`SegmentCache` knows segments, not
keys: the :class:`~scatter_magics.engine.shm.pool.SharedMemoryPool` that holds it says
when one is free (no key's refs and no view point into it).
"""

from __future__ import annotations

import itertools
import threading
import time

from ...errors import SharedMemoryError
from .segment import Segment
from .space import SHM_DIR, ShmSpace

MIN_SEGMENT = 1 << 22
MAX_IDLE_BYTES = 1 << 30  # free segments kept for reuse; beyond this they go at once
IDLE_SECONDS = 5.0  # a free segment unused this long is given back to the system


class SegmentCache:
    """Every segment of one pool by name, and the free ones, reused smallest first.

    Thread-safe; the pool calls :meth:`free` with its own lock held (its lock, then
    this one: never the other way round).
    """

    def __init__(self, prefix: str, space: ShmSpace):
        self.prefix = prefix
        self.space = space
        self.on_destroy: list = []  # callbacks(names) when segments are unlinked
        self._counter = itertools.count()
        self._segments: dict[str, Segment] = {}
        self._free: list[Segment] = []
        self._lock = threading.Lock()
        self._over_cap = False  # free segments beyond MAX_IDLE_BYTES, to trim at once

    def take(self, size: int) -> Segment | None:
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

    def get(self, name: str) -> Segment:
        with self._lock:
            return self._segments[name]

    def owns(self, name: str) -> bool:
        return name in self._segments

    def discard(self, segment: Segment) -> None:
        """Unlink ``segment`` now (its write failed)."""
        with self._lock:
            self._segments.pop(segment.name, None)
        segment.destroy()
        self._announce([segment])

    def free(self, segment: Segment) -> None:
        """Keep ``segment`` for reuse if no key and no view needs it (and it is still ours)."""
        with self._lock:
            if not segment.holders and segment.views == 0 and \
                    segment.name in self._segments and segment not in self._free:
                segment.idle_since = time.monotonic()
                self._free.append(segment)
                self._over_cap = sum(s.size for s in self._free) > MAX_IDLE_BYTES

    def trim_if_over_cap(self) -> None:
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

    def sizes(self) -> tuple[int, int, int]:
        """``(segments, bytes in all, bytes free)``."""
        with self._lock:
            return (len(self._segments), sum(s.size for s in self._segments.values()),
                    sum(s.size for s in self._free))

    def close(self) -> None:
        """Unlink every segment."""
        with self._lock:
            segments, self._segments, self._free = list(self._segments.values()), {}, []
        for segment in segments:
            segment.destroy()
