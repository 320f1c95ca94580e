"""A worker's ``memory_limit`` in bytes, from what ``LocalCluster`` (or ``Client``) is given,
with Dask's meaning (``distributed.worker_memory.parse_memory_limit``).

>>> parse_memory_limit("2GiB", 4), parse_memory_limit(None, 4), parse_memory_limit(0, 4)
(2147483648, 0, 0)
>>> parse_memory_limit(0.5, 4) == total_memory() // 2    # a fraction of the machine's
True
"""

from __future__ import annotations

import numbers
import os

from ...sizes import parse_bytes


def parse_memory_limit(limit, n_workers: int) -> int:
    """Bytes per worker (0: no limit) from ``"auto"`` (the machine's memory shared out),
    ``None`` or 0 (no limit), a number up to 1 (as in Dask: that fraction of the machine's
    memory, for each worker), bytes, or text like ``"2GiB"`` (``sizes.parse_bytes``)."""
    if limit is None or limit == 0:
        return 0
    if limit == "auto":
        return total_memory() // n_workers
    fraction = _fraction(limit)
    if fraction is not None:
        return int(fraction * total_memory())
    try:
        return parse_bytes(limit)
    except ValueError:
        raise ValueError(f"memory_limit {limit!r} is not a size: use \"auto\", a fraction "
                         "of the memory (0.5), bytes, or a number with a unit such as "
                         "'2GiB'") from None


def _fraction(limit) -> float | None:
    """``limit`` as a fraction of the memory, if it is a number (or numeric text) in
    (0, 1], as Dask reads it (so ``1`` is all of it, not one byte); else None."""
    if isinstance(limit, bool):
        return None
    try:
        value = float(limit) if isinstance(limit, (numbers.Real, str)) else None
    except ValueError:  # text with a unit: bytes
        return None
    if value is None or value > 1:
        return None
    if value < 0:
        raise ValueError(f"memory_limit {limit!r} is negative: use a fraction in (0, 1], "
                         "bytes, or None for no limit")
    return value


def total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
