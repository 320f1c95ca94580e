"""When a worker tells the scheduler that a task is running (the event status "running").

A task handed to a worker may wait for a free thread of its pool; it runs once a thread
picks it up. :class:`StartWatch` reports that moment, but only for a task still going
:data:`RUNNING_AFTER` seconds after it was handed over: a quick task costs no extra
message, and no extra wake of the worker's loop (30-40 us on these machines, see
docs/internals.md, "Small-message latency"), and goes from pending straight to finished.

One :class:`StartClock` per worker arms the watches as they come due, on one timer: a
timer per task (``call_later``, then its ``cancel``) was ~2 µs of the worker's loop for
each trivial task, among ~20 (py-spy).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Callable

RUNNING_AFTER = 0.05  # s; a task that ends sooner is never reported as running


class StartWatch:
    """Calls ``report({"op": "task-started", "key": key})`` on the loop once the task
    ``key`` has started and has been seen running.

    ``started()`` runs on the pool thread as it picks the task up; ``arm()`` runs on the
    loop thread :data:`RUNNING_AFTER` seconds after the hand-over (``StartClock.watch``).
    Whichever comes second reports, unless the task ended first (``cancel()``).

    >>> loop = asyncio.new_event_loop()
    >>> seen = []
    >>> watch = StartWatch(loop, seen.append, "x")
    >>> watch.started(); watch.arm(); seen
    [{'op': 'task-started', 'key': 'x'}]
    >>> loop.close()
    """

    __slots__ = ("_loop", "_report", "_key", "_lock", "_started", "_armed", "ended")

    def __init__(self, loop: asyncio.AbstractEventLoop, report: Callable[[dict], None], key):
        self._loop, self._report, self._key = loop, report, key
        self._lock = threading.Lock()
        self._started = self._armed = self.ended = False

    def started(self) -> None:
        with self._lock:
            self._started, armed = True, self._armed
        if armed:
            self._loop.call_soon_threadsafe(self._report, {"op": "task-started", "key": self._key})

    def arm(self) -> None:
        if self.ended:
            return
        with self._lock:
            self._armed, started = True, self._started
        if started:
            self._report({"op": "task-started", "key": self._key})

    def cancel(self) -> None:
        """The task ended (on the loop): nothing more to report."""
        self.ended = True


class StartClock:
    """Arms each :class:`StartWatch` :data:`RUNNING_AFTER` seconds after its task was
    handed over, on one timer of the loop for all of them (hand-overs come in order,
    so the watches come due in order).

    >>> async def demo():
    ...     clock, seen = StartClock(asyncio.get_running_loop()), []
    ...     watch = clock.watch(StartWatch(asyncio.get_running_loop(), seen.append, "x"))
    ...     watch.started()
    ...     await asyncio.sleep(RUNNING_AFTER * 2)
    ...     clock.close()
    ...     return [msg["key"] for msg in seen]
    >>> asyncio.run(demo())
    ['x']
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._due: collections.deque = collections.deque()  # (when, watch), oldest first
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, watch: StartWatch) -> StartWatch:
        """Arm ``watch`` :data:`RUNNING_AFTER` s from now; ``watch.cancel()`` when its task ends."""
        when = self._loop.time() + RUNNING_AFTER
        self._due.append((when, watch))
        if self._timer is None:
            self._timer = self._loop.call_at(when, self._tick)
        return watch

    def _tick(self) -> None:
        self._timer = None
        now, due = self._loop.time(), self._due
        while due and due[0][0] <= now:
            watch = due.popleft()[1]
            if not watch.ended:  # (most: quick tasks, ended long before)
                watch.arm()
        if due:
            self._timer = self._loop.call_at(due[0][0], self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()
