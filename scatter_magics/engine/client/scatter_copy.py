"""A scatter's values as the payload it sends: pickled, large buffers in shared memory once.

On a :class:`~scatter_magics.engine.cluster.local.LocalCluster` each large buffer is copied
once into the cluster's :class:`~scatter_magics.engine.shm.pool.SharedMemoryPool`, after the
machine's free memory is checked. For one large value with a content-hash key, the copy
starts before the key is known (:func:`write_ahead`): hashing (~11 ms for 200 MB here)
and copying into fresh memory (~64 ms) both release the GIL, so they overlap.

>>> early = write_ahead(pool, array)                    # doctest: +SKIP
>>> items = {tokenize(array): array}   # hashing, while the copy runs   # doctest: +SKIP
>>> payload, pinned = serialize_for_scatter(items, pool, True, early)  # doctest: +SKIP
>>> early.close()                      # gives the copy back if nobody took it  # doctest: +SKIP
"""

from __future__ import annotations

import collections.abc
import concurrent.futures
import queue

from ...errors import MemoryLimitError
from ...progress_callback import counter
from ...sizes import format_bytes
from ..shm import limits
from ..shm.pool import THRESHOLD, ShmRef
from ..shm.runs import RunStore
from ..wire.serialize import serialize, serialize_plain

CHECK_FROM = 1 << 20  # bytes a scatter needs before the machine's free memory is read
CONTAINERS = (dict, list, tuple, set, frozenset, range, collections.abc.Iterator, queue.Queue)


class EarlyCopy:
    """A value's pickle and shared-memory copy, made before its key is known; adopted or
    given back. ``draft`` is None when nothing needed copying: the pickle is still reused."""

    def __init__(self, pool, value, serialized, draft: concurrent.futures.Future | None,
                 free: int | None):
        self.pool, self.value, self.serialized = pool, value, serialized
        self.free = free  # the machine's free memory before the copy began
        self._draft: concurrent.futures.Future | None = draft

    def take(self) -> concurrent.futures.Future | None:
        """The draft, for ``pool.store``; from now on the store owns it."""
        draft, self._draft = self._draft, None
        return draft

    def close(self) -> None:
        """Give the copy back if nobody took it (the scatter failed before storing)."""
        if self._draft is not None:
            draft, self._draft = self._draft, None
            self.pool.give_back(draft)


def write_ahead(pool, data, report=None) -> EarlyCopy | None:
    """For one value (not a container) and a pool: pickle it, and start the copy of its
    large buffers now; else None.

    A value larger than the machine's free memory is refused here, before it is hashed
    for its key (hashing 50 GB takes seconds; the copy could never be made).
    ``report(stage, done, total)`` (``progress_callback.Progress``) hears the copy as it goes.
    """
    if pool is None or isinstance(data, CONTAINERS) or hasattr(data, "_fields"):
        return None
    try:
        serialized = serialize(data)
    except Exception:
        return None  # scatter() raises it, the usual way
    if not serialized.buffers:  # nothing to copy; serialize_for_scatter checks the memory
        return EarlyCopy(pool, data, serialized, None, None)
    # Only a value of a MiB or more reads /proc/meminfo: that read was a fifth of a
    # small scatter's round trip.
    free = limits.available_memory() if serialized.nbytes >= CHECK_FROM else None
    if free and serialized.nbytes > free:  # refused now, not after hashing all of it
        raise MemoryLimitError(
            f"cannot scatter this {type(data).__name__} ({format_bytes(serialized.nbytes)}): "
            f"this machine has {format_bytes(free)} of memory free")
    if report is None:
        draft = pool.write_ahead(serialized.buffers)
    else:
        copied = counter(report, "copy", large_bytes(serialized.buffers))
        draft = pool.write_ahead(serialized.buffers, on_copied=copied)
    # No copy started (the pool declined): None, so the scatter copies it the usual way.
    return None if draft is None else EarlyCopy(pool, data, serialized, draft, free)


def serialize_for_scatter(items: dict, pool, local: bool, early: EarlyCopy | None = None,
                          report=None) -> tuple[dict, list]:
    """``(payload, pinned)``: each value pickled; large buffers in ``pool`` (if any).

    ``local``: the workers are on this machine, so the scatter needs that much free
    memory here. ``pinned`` are the keys whose segments this scatter holds until it is
    over (``pool.unpin``). If a later item fails (cannot be pickled, no memory), the
    earlier items' segments are given back at once rather than kept until close.
    Consecutive items whose buffers are consecutive slices of one array (a split) are
    copied once, together, into one segment (``RunStore``).
    ``report(stage, done, total)`` hears the pickling and the copying as they go.
    """
    if early is None and report is None:  # numbers and strings: nothing to copy or pin
        payload = serialize_plain(items)
        # Less than a MiB in all, so no memory check could refuse it (else: the loop
        # below, which names the value that does not fit).
        if payload is not None and (not local or sum(
                len(s.header) for s in payload.values()) < CHECK_FROM):
            return payload, []
    payload: dict = {}
    store: RunStore | None = None  # made at the first copy: the pieces of one array, together
    new_bytes = done = 0  # memory this scatter takes on this machine; bytes pickled
    copied = None  # one running count of the bytes copied, made at the first copy
    # Measured once: each copy made below lowers what the machine reports as free. And
    # only once the scatter needs a MiB: reading /proc/meminfo was a sixth of a small
    # scatter, and no machine that runs this is short of one MiB.
    free = early.free if early is not None else None
    try:
        for key, value in items.items():
            ahead = early is not None and value is early.value
            serialized = payload[key] = early.serialized if ahead else serialize(value)
            if report is not None:
                done += serialized.nbytes
                report("serialize", done, None)
            if not local:
                continue  # the workers may be on another machine
            if pool is None or not pool.holds(key):
                new_bytes += serialized.nbytes
                if new_bytes >= CHECK_FROM:
                    free = limits.available_memory() if free is None else free
                    limits.check_machine_memory(key, serialized.nbytes, new_bytes, free)
            if pool is not None and serialized.buffers:
                if report is not None and copied is None and not ahead:
                    # One value: its size is the total; several: counted as they come.
                    total = large_bytes(serialized.buffers) if len(items) == 1 else None
                    copied = counter(report, "copy", total)
                store = store or RunStore(pool, copied)
                store.add(key, serialized, early.take() if ahead else None)
        if store is not None:
            store.flush()  # the last run held back
    except BaseException:
        if store is not None and store.pinned:
            pool.unpin(store.pinned)
        raise
    return payload, store.pinned if store is not None else []


def large_bytes(buffers) -> int:
    """The bytes of ``buffers`` that a shared-memory pool copies."""
    return sum(n for n in (memoryview(b).nbytes for b in buffers) if n >= THRESHOLD)


def owned_by(pool, serialized) -> bool:
    """Whether every buffer of ``serialized`` lies in ``pool``'s own segments (this
    process's shared memory, readable here without asking anyone)."""
    return pool is not None and all(type(b) is ShmRef and pool.owns(b.name)
                                    for b in serialized.buffers)
