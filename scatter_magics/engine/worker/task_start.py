"""When a worker tells the scheduler that a task is running (the event status "running").

A task handed to a worker may wait for a free thread of its pool; it runs once a thread
picks it up. :class:`StartWatch` reports that moment, but only for a task still going
:data:`RUNNING_AFTER` seconds after it was handed over: a quick task costs no extra
message, and no extra wake of the worker's loop (30-40 us on these machines, see
docs/internals.md, "Small-message latency"), and goes from pending straight to finished.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

RUNNING_AFTER = 0.05  # s; a task that ends sooner is never reported as running


class StartWatch:
    """Calls ``report()`` on the loop once the task has started and has been seen running.

    ``started()`` runs on the pool thread as it picks the task up; ``arm()`` runs on the
    loop thread :data:`RUNNING_AFTER` seconds after the hand-over (``watch``). Whichever
    comes second reports.

    >>> loop = asyncio.new_event_loop()
    >>> seen = []
    >>> watch = StartWatch(loop, lambda: seen.append("running"))
    >>> watch.started(); watch.arm(); seen
    ['running']
    >>> loop.close()
    """

    __slots__ = ("_loop", "_report", "_lock", "_started", "_armed")

    def __init__(self, loop: asyncio.AbstractEventLoop, report: Callable[[], None]):
        self._loop, self._report = loop, report
        self._lock = threading.Lock()
        self._started = self._armed = False

    def watch(self) -> asyncio.TimerHandle:
        """Arm after :data:`RUNNING_AFTER` seconds; cancel the handle when the task ends."""
        return self._loop.call_later(RUNNING_AFTER, self.arm)

    def started(self) -> None:
        with self._lock:
            self._started, armed = True, self._armed
        if armed:
            self._loop.call_soon_threadsafe(self._report)

    def arm(self) -> None:
        with self._lock:
            self._armed, started = True, self._started
        if started:
            self._report()
