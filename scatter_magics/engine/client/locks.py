"""Named ``Lock``, ``Semaphore`` and ``Event``, shared by every client of one cluster, as Dask's.

The scheduler keeps their state (``engine/scheduler/locks.py``). A lease belongs to the
object that took it: release it there. The scheduler gives back the leases of a client
that leaves, so a task on a worker that dies does not hold a lock for ever.

>>> with Lock("db"):                    # one holder at a time, cluster-wide  # doctest: +SKIP
...     write_to_database()
>>> sem = Semaphore(max_leases=2, name="api")                                # doctest: +SKIP
>>> sem.acquire(timeout=1)                                                   # doctest: +SKIP
True
"""

from __future__ import annotations

import collections
import numbers

from ...keys import random_token
from .coordination import Shared


class Semaphore(Shared):
    """At most ``max_leases`` holders at a time of the semaphore called ``name``."""

    kind = "semaphore"

    def __init__(self, max_leases: int = 1, name=None, client=None, scheduler_rpc=None,
                 loop=None, register: bool = True):
        if not isinstance(max_leases, numbers.Integral) or max_leases < 1:
            raise ValueError(f"max_leases must be a whole number >= 1, got {max_leases!r}")
        super().__init__(name, client)
        self.max_leases = int(max_leases)
        self._leases: collections.deque = collections.deque()  # lease ids this object holds

    def acquire(self, timeout=None):
        """Take a lease; waits for one (False after ``timeout`` s without)."""
        lease = random_token()
        return self._ask("semaphore-acquire", timeout, lambda ok: self._granted(lease, ok),
                         lease=lease, max_leases=self.max_leases)

    def _granted(self, lease: str, ok: bool) -> bool:
        if ok:
            self._leases.append(lease)
        return ok

    def release(self):
        """Give back the oldest lease this object holds; RuntimeError if it holds none."""
        if not self._leases:
            raise RuntimeError("Released too often")
        return self._ask("semaphore-release", lease=self._leases.popleft())

    def get_value(self) -> int:
        """How many leases are held now, by anyone."""
        return self._ask("semaphore-value")

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    async def __aenter__(self):
        await self.acquire()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.release()

    def __reduce__(self):
        return type(self), (self.max_leases, self.name)


class Lock(Semaphore):
    """The lock called ``name``: one holder at a time across the cluster."""

    kind = "lock"

    def __init__(self, name=None, client=None, scheduler_rpc=None, loop=None):
        super().__init__(1, name, client)

    def acquire(self, blocking: bool = True, timeout=None):
        """Take the lock; waits for it (False after ``timeout`` s, or at once if not
        ``blocking``)."""
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        return super().acquire(timeout)

    def locked(self) -> bool:
        return self._ask("semaphore-value", then=lambda held: held >= 1)

    def __reduce__(self):
        return Lock, (self.name,)


class Event(Shared):
    """The event called ``name``: clients and tasks wait until someone sets it."""

    kind = "event"

    def set(self) -> None:
        return self._ask("event-set")

    def clear(self) -> None:
        return self._ask("event-clear")

    def is_set(self) -> bool:
        return self._ask("event-is-set")

    def wait(self, timeout=None) -> bool:
        """Wait until the event is set: True, or False after ``timeout`` s."""
        return self._ask("event-wait", timeout)

    def __reduce__(self):
        return Event, (self.name,)
