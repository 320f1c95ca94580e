"""Never send a Dask worker what it cannot hold: room per worker, checked before a scatter.

A Dask worker pauses at 80 % of its ``memory_limit`` and its nanny kills it at 95 %
(``distributed.worker.memory.pause`` / ``.terminate``), taking every key it held, anyone's,
with it. Measured before this check: a 320 MB ``--broadcast`` to 256 MiB workers killed
them and the magic raised a raw ``CommClosedError`` 1.5 s later. So a scatter first asks
what each target worker uses now, and a value goes only where it fits under the pause
threshold and where receiving it stays under the kill threshold; one that fits nowhere is
refused with the embedded engine's :class:`~scatter_magics.errors.MemoryLimitError`,
before anything moves.

Receiving costs more than holding: a worker reads a message into one buffer, then builds
the value from it. Measured (peak RSS, ``VmHWM``, of a worker at 63 MiB receiving 50, 100,
150 MB; distributed 2026.8): ``bytes`` peak at 2.0x their size (95, 190, 286 MiB over the
start: copied out of the buffer), NumPy arrays at 1.0x (kept in it). So a 143 MiB ``bytes``
sent to a 256 MiB worker at 61 MiB fitted under the pause threshold (204.8 MiB) and its
nanny killed it at 243 MiB while it read; Dask's scheduler then closed the client's
connection too. The check budgets :data:`RECEIVE_PEAK` times the size against the kill
threshold, the worst case, since which serialization a value takes is Dask's to choose.

Sizes are Dask's own estimate (``dask.sizeof``), the one its memory manager uses.

>>> workers = {"tcp://a:1": {"name": "worker-0", "memory_limit": 1000, "memory": 100}}
>>> room_of(workers["tcp://a:1"], pause=0.8)
700
>>> room_of(workers["tcp://a:1"], pause=0.8, terminate=0.95)  # (950 - 100) / 2
425
>>> plan({"x-1": 400}, workers, ["tcp://a:1"], broadcast=False, pause=0.8,
...      terminate=0.95) is None
True
>>> plan({"x-1": 500}, workers, ["tcp://a:1"], broadcast=False, pause=0.8, terminate=0.95)
Traceback (most recent call last):
...
scatter_magics.errors.MemoryLimitError: cannot scatter 'x-1' (500 B): worker-0 (tcp://a:1) has room for 425 B (it uses 100 B of its memory_limit 1000 B); Dask pauses a worker at 80 % of its memory_limit, and its nanny kills it at 95 %, which a worker reading a value can reach first: it briefly holds up to 2 times the value's size
"""

from __future__ import annotations

from ..errors import MemoryLimitError
from ..sizes import format_bytes

CHECK_FROM = 2**20  # bytes; smaller scatters skip the check (it costs a scheduler round trip)
RECEIVE_PEAK = 2  # a worker reading a value holds up to this times its size (measured above)


def thresholds() -> tuple[float | None, float | None]:
    """The fractions of ``memory_limit`` at which Dask pauses a worker and its nanny kills
    it (``None``: that one is off); without a pause threshold the kill one holds for both."""
    import dask.config

    pause, terminate = (dask.config.get(f"distributed.worker.memory.{name}", default=None)
                        for name in ("pause", "terminate"))
    terminate = float(terminate) if terminate else None
    return (float(pause) if pause else terminate), terminate


def room_of(worker: dict, pause: float | None, terminate: float | None = None) -> float:
    """Bytes ``worker`` can take: held, under the pause threshold; while it reads them
    (:data:`RECEIVE_PEAK` times as much), under the kill one (infinite without a limit)."""
    limit = worker.get("memory_limit") or 0
    used = worker.get("memory") or 0
    room = float("inf")
    if limit and pause is not None:
        room = int(limit * pause) - used
    if limit and terminate is not None:
        room = min(room, (int(limit * terminate) - used) // RECEIVE_PEAK)
    return room


def plan(sizes: dict, workers: dict, allowed: list[str], broadcast: bool,
         pause: float | None, terminate: float | None = None) -> dict[tuple, list] | None:
    """Where each key of ``sizes`` (key -> bytes) may go among ``allowed`` workers.

    ``None`` when every allowed worker has room for all of it (scatter as asked);
    else ``{(addresses...): [keys]}``, each key on the next worker round robin that
    still has room. Raises :class:`MemoryLimitError` when a key fits nowhere (for a
    broadcast: on any allowed worker).
    """
    room = {a: room_of(workers[a], pause, terminate) for a in allowed}
    if all(r >= sum(sizes.values()) for r in room.values()):
        return None
    groups: dict[tuple, list] = {}
    turn = 0
    for key, size in sizes.items():
        if broadcast:
            short = [a for a in allowed if room[a] < size]
            if short:
                raise refusal(key, size, workers, short, room, pause, terminate)
            chosen = tuple(allowed)
        else:
            order = [allowed[(turn + j) % len(allowed)] for j in range(len(allowed))]
            fit = next((a for a in order if room[a] >= size), None)
            if fit is None:
                raise refusal(key, size, workers, allowed, room, pause, terminate)
            turn = allowed.index(fit) + 1
            chosen = (fit,)
        for a in chosen:
            room[a] -= size
        groups.setdefault(chosen, []).append(key)
    return groups


def refusal(key, size: int, workers: dict, short: list, room: dict,
            pause: float | None, terminate: float | None = None) -> MemoryLimitError:
    """The error naming the key, its size, and each worker without room, with its room."""
    described = "; ".join(
        f"{workers[a].get('name', a)} ({a}) has room for {format_bytes(max(0, int(room[a])))} "
        f"(it uses {format_bytes(workers[a].get('memory') or 0)} of its memory_limit "
        f"{format_bytes(workers[a]['memory_limit'])})" for a in short)
    killed = (f", and its nanny kills it at {round(terminate * 100)} %, which a worker reading a "
              f"value can reach first: it briefly holds up to {RECEIVE_PEAK} times the "
              f"value's size") if terminate is not None else ""
    return MemoryLimitError(
        f"cannot scatter {str(key)!r} ({format_bytes(size)}): {described}; Dask pauses a "
        f"worker at {round((pause or terminate or 1) * 100)} % of its memory_limit{killed}")
