"""Named semaphores (and locks: one lease) and events kept by the scheduler for every
client of the cluster (Dask's ``Semaphore``, ``Lock``, ``Event``; the client side is
``engine/client/locks.py``).

A lease is held by the client that took it: when that client leaves (closed, or its
worker died), its leases are given back, so a task that died holding a lock does not
hold it for ever. Waits end with their timeout (then ``acquire`` answers False) or when
the client gives up (``coordination.Waits``).

>>> semaphores = Semaphores(scheduler, waits)                        # doctest: +SKIP
"""

from __future__ import annotations

import collections
from typing import Callable

from .coordination import Waits, take_turn, wake


class Semaphores:
    """Per name: its number of leases, who holds them (lease id -> client), who waits."""

    def __init__(self, scheduler, waits: Waits):
        self.waits = waits
        self.max_leases: dict[str, int] = {}
        self.leases: dict[str, dict[str, str]] = {}
        self.waiting: dict[str, collections.deque] = {}

    def ops(self) -> dict[str, Callable]:
        return {"semaphore-acquire": self.acquire, "semaphore-release": self.release,
                "semaphore-value": self.value}

    async def acquire(self, client_id, msg) -> bool:
        """Take a lease for ``msg["lease"]``: True, or False after the timeout."""
        name, lease = msg["name"], msg["lease"]
        limit = self._limit(name, msg.get("max_leases", 1))
        held = self.leases.setdefault(name, {})
        line = self.waiting.setdefault(name, collections.deque())
        if len(held) < limit and not any(not w.done() for w in line):
            held[lease] = client_id
            return True
        while True:
            if not await take_turn(line, msg, self.waits):
                return False
            if len(held) < limit:  # (one that came meanwhile may have taken it)
                held[lease] = client_id
                return True

    def _limit(self, name: str, max_leases: int) -> int:
        known = self.max_leases.setdefault(name, max_leases)
        if known != max_leases:
            raise ValueError(f"Inconsistent max leases for {name!r}: it has {known}, "
                             f"this one asks for {max_leases}")
        return known

    def release(self, client_id, msg) -> bool:
        """Give the lease back; False if it was not held (given back when its client left)."""
        held = self.leases.get(msg["name"], {})
        if held.pop(msg["lease"], None) is None:
            return False
        wake(self.waiting.get(msg["name"], collections.deque()))
        return True

    def value(self, client_id, msg) -> int:
        return len(self.leases.get(msg["name"], {}))

    def client_left(self, client_id: str) -> None:
        """Give back every lease ``client_id`` held."""
        for name, held in self.leases.items():
            for lease in [lease for lease, owner in held.items() if owner == client_id]:
                del held[lease]
                wake(self.waiting.get(name, collections.deque()))


class Events:
    """Per name: whether the event is set, and who waits for it."""

    def __init__(self, scheduler, waits: Waits):
        self.waits = waits
        self.flags: dict[str, bool] = {}
        self.waiting: dict[str, collections.deque] = {}

    def ops(self) -> dict[str, Callable]:
        return {"event-set": self.set, "event-clear": self.clear,
                "event-is-set": self.is_set, "event-wait": self.wait}

    def set(self, client_id, msg) -> None:
        self.flags[msg["name"]] = True
        line = self.waiting.pop(msg["name"], collections.deque())
        while wake(line):
            pass

    def clear(self, client_id, msg) -> None:
        self.flags.pop(msg["name"], None)

    def is_set(self, client_id, msg) -> bool:
        return self.flags.get(msg["name"], False)

    async def wait(self, client_id, msg) -> bool:
        """True once the event is set (or if it is); False after the timeout."""
        if self.flags.get(msg["name"]):
            return True
        line = self.waiting.setdefault(msg["name"], collections.deque())
        return await take_turn(line, msg, self.waits)
