"""A scatter's buffers into the pool as they come, the pieces of one array copied together.

:class:`RunStore` stores each item's large buffers in the
:class:`~scatter_magics.engine.shm.pool.SharedMemoryPool` (replacing them with refs), but
holds an item back while the next one may continue its buffers in memory: consecutive
items whose buffers are consecutive slices of one block (``%scatter arr --split``, or
``client.scatter(np.array_split(arr, 8))``) are one run, copied once into one segment
(:meth:`~scatter_magics.engine.shm.pool.SharedMemoryPool.store_run`). At most the item
held back waits, so a scatter of unrelated values keeps no more memory than before.

>>> store = RunStore(pool)                                 # doctest: +SKIP
>>> for key, serialized in payload.items():                # doctest: +SKIP
...     store.add(key, serialized)      # serialized.buffers become refs, now or later
>>> store.flush(); store.pinned                            # doctest: +SKIP
['arr[0/8]-…', …]
"""

from __future__ import annotations

from .layout import bytes_view, continues, spans
from .pool import THRESHOLD


class RunStore:
    """Stores ``holder.buffers`` (anything with a ``buffers`` list) key by key, or a run of
    keys at once; :attr:`pinned` are the keys the pool pinned for this scatter."""

    def __init__(self, pool, on_copied=None):
        self.pool = pool
        self.on_copied = on_copied  # on_copied(nbytes) as copies land (progress bars)
        self.pinned: list = []
        self._run: list = []  # [(key, holder, spans)] held back, each continuing the last

    def add(self, key, holder, draft=None) -> None:
        """Store ``holder.buffers`` for ``key`` now, or with the items that continue them.

        ``draft``: the same buffers copied ahead (``pool.write_ahead``): stored at once.
        """
        found = spans([bytes_view(b) for b in holder.buffers], THRESHOLD)
        if found is None or draft is not None:
            self._store(key, holder, draft)  # nothing to copy, or copied already
        elif self._run and continues(self._run[-1][2], found):
            self._run.append((key, holder, found))
        else:
            self.flush()
            self._run = [(key, holder, found)]

    def flush(self) -> None:
        """Store what is held back: a run of two or more at once, else one by one."""
        run, self._run = self._run, []
        if len(run) > 1:
            stored = self.pool.store_run([key for key, _, _ in run],
                                         [holder.buffers for _, holder, _ in run], self.on_copied)
            if stored is not None:
                for (key, holder, _), (buffers, pinned) in zip(run, stored):
                    holder.buffers = buffers
                    if pinned:
                        self.pinned.append(key)
                return
        for key, holder, _ in run:  # stored already (the same content), or a lone item
            self._store(key, holder)

    def _store(self, key, holder, draft=None) -> None:
        holder.buffers, pinned = self.pool.store(key, holder.buffers, draft, self.on_copied)
        if pinned:
            self.pinned.append(key)
