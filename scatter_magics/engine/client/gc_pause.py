"""Hold back Python's cyclic garbage collector while a call builds many long-lived objects.

Scattering a 10,000-element list makes a Future, its state and the scheduler's record
(with its two sets) for each element: about 60,000 objects the collector tracks. Every
700 new objects the collector walks the young ones, and every tenth walk the older
ones; those walks find nothing to free, since everything made is kept, and the new
objects push the heap past the point where a full pass over all of it runs. Measured
with ``gc.callbacks`` on 2 cores: 89 young and 8 middle passes (7-14 ms) and, in two
calls of three, a full pass (13-20 ms) per list of 10,000, about 30 of the call's 75 ms.

Paused, the objects wait in the youngest generation; on the way out they are moved to
the oldest one without a walk (see :func:`_promote_young_objects`). The gc module's
docs allow as much: "you can disable the collector if you are sure your program does
not create reference cycles" — here, for the length of one call only.

>>> with paused_collection():      # doctest: +SKIP
...     futures = build_many()
"""

from __future__ import annotations

import contextlib
import gc
import threading

# Calls that build this many objects or more pause the collector; a small call gains
# nothing (a young pass walks at most 700 objects).
BULK = 1_000

_lock = threading.Lock()
_holders = 0  # calls inside paused_collection() right now, in any thread
_was_enabled = False  # the collector's state when the first of them began


@contextlib.contextmanager
def paused_collection(n_objects: int = BULK):
    """No automatic garbage collection inside the block if it builds ``n_objects`` ≥ BULK.

    Re-entrant and thread-safe: the collector comes back when the last of the calls
    holding it paused ends, and only if it was enabled before the first began (a
    caller who disabled it keeps it disabled).
    """
    if n_objects < BULK:
        yield
        return
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                _promote_young_objects()
                gc.enable()


def _promote_young_objects() -> None:
    """Move the objects made while paused to the oldest generation, without a walk."""
    # freeze() moves every tracked object to the permanent generation and unfreeze()
    # moves them all to the oldest one: two list splices, where the young pass that
    # gc.enable() alone lets run at the next allocation walks each object (5-15 ms for
    # a 10,000-element list's 60,000). Only when nothing is frozen already: unfreeze()
    # would also release what a caller froze on purpose (say, before forking).
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
