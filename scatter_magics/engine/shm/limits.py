"""Memory limits that mean something: where data may go, and what is refused.

A worker's ``memory_limit`` bounds the bytes the scheduler records on it (``nbytes``,
the sizes of the keys it holds, shared-memory keys included) plus what scatters in
flight have reserved there. A scatter goes to workers with room, or is refused before
anything moves, naming the key, its size, the workers and their limits. A scatter on
this machine is also refused when it needs more memory than the machine has free.

>>> from scatter_magics.engine.scheduler.state import WorkerInfo
>>> w = {"tcp://a:1": WorkerInfo("tcp://a:1", "worker-0", 1, memory_limit=200)}
>>> place(w, ["tcp://a:1"], {"x": 150}, broadcast=False, start=0)
{'x': ['tcp://a:1']}
>>> w["tcp://a:1"].nbytes = 100
>>> place(w, ["tcp://a:1"], {"x": 150}, broadcast=False, start=0)
Traceback (most recent call last):
...
scatter_magics.errors.MemoryLimitError: cannot place key 'x' (150 B): worker-0 (tcp://a:1) holds 100 B of its memory_limit 200 B
"""

from __future__ import annotations

from ...errors import MemoryLimitError
from ...sizes import format_bytes


def room(ws, adding: int = 0) -> float:
    """Bytes ``ws`` can still take under its limit (infinite without one)."""
    if not ws.memory_limit:
        return float("inf")
    return ws.memory_limit - ws.nbytes - ws.reserved - adding


def thread_slots(workers: dict, addresses: list) -> list[str]:
    """Each address once per thread of its worker, the workers taken in turns: two
    workers of 2 threads give ``[a, b, a, b]``, not ``[a, a, b, b]``, so that fewer
    items than threads (``--split 2`` on them) still go to different workers.

    >>> class W:
    ...     def __init__(self, nthreads): self.nthreads = nthreads
    >>> thread_slots({"a": W(1), "b": W(3)}, ["a", "b"])
    ['a', 'b', 'b', 'b']
    """
    most = max((workers[a].nthreads for a in addresses), default=0)
    return [a for turn in range(most) for a in addresses if workers[a].nthreads > turn]


def place(workers: dict, allowed: list, nbytes: dict, broadcast: bool,
          start: int) -> dict[str, list[str]]:
    """``{key: [addresses]}`` for ``nbytes`` (key → size), round-robin from ``start``.

    Weighted by threads; a worker without room is skipped. A key a worker already
    holds costs it nothing. Raises :class:`MemoryLimitError` when a key fits nowhere.
    """
    slots = thread_slots(workers, allowed)
    total = sum(size or 0 for size in nbytes.values())
    if slots and all(room(workers[a]) >= total for a in allowed):
        # Every worker has room for all of it: what the loop below would choose, without
        # its checks per key (13 ms for a 10,000-element list, against 0.4 ms).
        if broadcast:
            return dict.fromkeys(nbytes, list(allowed))
        one_list_each = {a: [a] for a in allowed}  # shared and read-only: none per key
        return {key: one_list_each[slots[(start + i) % len(slots)]]
                for i, key in enumerate(nbytes)}
    adding = dict.fromkeys(allowed, 0)
    placement = {}
    for i, (key, size) in enumerate(nbytes.items()):
        def cost(a):
            return 0 if key in workers[a].keys else size or 0
        if broadcast:
            short = [a for a in allowed if room(workers[a], adding[a]) < cost(a)]
            if short:
                raise _refusal(key, size, workers, short, adding)
            chosen = list(allowed)
        else:
            order = (slots[(start + i + j) % len(slots)] for j in range(len(slots)))
            fit = next((a for a in order if room(workers[a], adding[a]) >= cost(a)), None)
            if fit is None:
                raise _refusal(key, size, workers, allowed, adding)
            chosen = [fit]
        for a in chosen:
            adding[a] += cost(a)
        placement[key] = chosen
    return placement


def _refusal(key: str, size: int, workers: dict, short: list, adding: dict) -> MemoryLimitError:
    held = "; ".join(
        f"{workers[a].name} ({a}) holds {format_bytes(workers[a].nbytes + workers[a].reserved + adding[a])} "
        f"of its memory_limit {format_bytes(workers[a].memory_limit)}" for a in short)
    return MemoryLimitError(f"cannot place key {key!r} ({format_bytes(size)}): {held}")


def result_refusal(key: str, size: int, name: str, address: str, held: int,
                   limit: int) -> MemoryLimitError:
    """The error of a task whose result would put its worker over ``memory_limit``."""
    return MemoryLimitError(
        f"task {key!r} returned {format_bytes(size)}, which would put worker {name} "
        f"({address}) over its memory_limit: it holds {format_bytes(held)} of "
        f"{format_bytes(limit)}. Return less, or start the cluster with a larger memory_limit")


def available_memory() -> int:
    """Bytes the machine can still give without swapping (``MemAvailable``; 0: unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def check_machine_memory(key: str, size: int, total: int, free: int) -> None:
    """Refuse a scatter whose ``total`` new bytes (``size`` of them for ``key``) exceed
    ``free``, what this machine had free when the scatter began (0: unknown)."""
    if free and total > free:
        raise MemoryLimitError(
            f"cannot scatter key {key!r} ({format_bytes(size)}; {format_bytes(total)} in this "
            f"scatter): this machine has {format_bytes(free)} of memory free")
