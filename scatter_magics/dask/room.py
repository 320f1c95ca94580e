"""Never send a Dask worker what it cannot hold: room per worker, checked before a scatter.

A Dask worker pauses at 80 % of its ``memory_limit`` and its nanny kills it at 95 %
(``distributed.worker.memory.pause`` / ``.terminate``), taking every key it held, anyone's,
with it. Measured before this check: a 320 MB ``--broadcast`` to 256 MiB workers killed
them and the magic raised a raw ``CommClosedError`` 1.5 s later. So a scatter first asks
what each target worker uses now, and a value goes only where it fits under the pause
threshold; one that fits nowhere is refused with the embedded engine's
:class:`~scatter_magics.errors.MemoryLimitError`, before anything moves.

Sizes are Dask's own estimate (``dask.sizeof``), the one its memory manager uses.

>>> workers = {"tcp://a:1": {"name": "worker-0", "memory_limit": 1000, "memory": 100}}
>>> room_of(workers["tcp://a:1"], pause=0.8)
700
>>> plan({"x-1": 500}, workers, ["tcp://a:1"], broadcast=False, pause=0.8) is None
True
>>> plan({"x-1": 900}, workers, ["tcp://a:1"], broadcast=False, pause=0.8)
Traceback (most recent call last):
...
scatter_magics.errors.MemoryLimitError: cannot scatter 'x-1' (900 B): worker-0 (tcp://a:1) has room for 700 B (it uses 100 B of its memory_limit 1000 B); Dask pauses a worker at 80 % of its memory_limit
"""

from __future__ import annotations

from ..errors import MemoryLimitError
from ..sizes import format_bytes

CHECK_FROM = 2**20  # bytes; smaller scatters skip the check (it costs a scheduler round trip)


def pause_fraction() -> float | None:
    """The fraction of ``memory_limit`` at which Dask pauses a worker (else kills it)."""
    import dask.config

    for name in ("pause", "terminate"):
        fraction = dask.config.get(f"distributed.worker.memory.{name}", default=None)
        if fraction:
            return float(fraction)
    return None


def room_of(worker: dict, pause: float | None) -> float:
    """Bytes ``worker`` can take before Dask pauses it (infinite without a limit)."""
    limit = worker.get("memory_limit") or 0
    if not limit or pause is None:
        return float("inf")
    return int(limit * pause) - (worker.get("memory") or 0)


def plan(sizes: dict, workers: dict, allowed: list[str], broadcast: bool,
         pause: float | None) -> dict[tuple, list] | None:
    """Where each key of ``sizes`` (key -> bytes) may go among ``allowed`` workers.

    ``None`` when every allowed worker has room for all of it (scatter as asked);
    else ``{(addresses...): [keys]}``, each key on the next worker round robin that
    still has room. Raises :class:`MemoryLimitError` when a key fits nowhere (for a
    broadcast: on any allowed worker).
    """
    room = {a: room_of(workers[a], pause) for a in allowed}
    if all(r >= sum(sizes.values()) for r in room.values()):
        return None
    groups: dict[tuple, list] = {}
    turn = 0
    for key, size in sizes.items():
        if broadcast:
            short = [a for a in allowed if room[a] < size]
            if short:
                raise refusal(key, size, workers, short, room, pause)
            chosen = tuple(allowed)
        else:
            order = [allowed[(turn + j) % len(allowed)] for j in range(len(allowed))]
            fit = next((a for a in order if room[a] >= size), None)
            if fit is None:
                raise refusal(key, size, workers, allowed, room, pause)
            turn = allowed.index(fit) + 1
            chosen = (fit,)
        for a in chosen:
            room[a] -= size
        groups.setdefault(chosen, []).append(key)
    return groups


def refusal(key, size: int, workers: dict, short: list, room: dict,
            pause: float | None) -> MemoryLimitError:
    """The error naming the key, its size, and each worker without room, with its room."""
    described = "; ".join(
        f"{workers[a].get('name', a)} ({a}) has room for {format_bytes(max(0, int(room[a])))} "
        f"(it uses {format_bytes(workers[a].get('memory') or 0)} of its memory_limit "
        f"{format_bytes(workers[a]['memory_limit'])})" for a in short)
    return MemoryLimitError(
        f"cannot scatter {str(key)!r} ({format_bytes(size)}): {described}; Dask pauses a "
        f"worker at {round((pause or 1) * 100)} % of its memory_limit")
