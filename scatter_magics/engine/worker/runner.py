"""A worker's task threads: :class:`TaskRunner` runs tasks by priority, within the worker's
threads and resources, and hands the results back to the event loop.

Tasks wait in one heap, highest priority first (Dask's order: ``submit(priority=1)`` before
``priority=0``, then the order they came in). A thread takes the first task whose
``resources`` (``{"GPU": 1}``) the worker has free, and only while fewer than ``nthreads``
tasks hold a thread's slot. A task that calls ``secede()`` gives its slot back (another
thread takes over, started if none is idle) and ``rejoin()`` waits for a slot again, so
tasks that wait for other tasks cannot starve the worker of threads.

Threads take tasks without waking the event loop; what they finish goes into one queue,
and the loop is woken once per burst to collect every result there.

>>> import asyncio
>>> async def demo():
...     done = asyncio.Event()
...     results = []
...     runner = TaskRunner(1, lambda key, ok, value: (results.append((key, ok, value)),
...                                                    done.set()))
...     runner.run("x", lambda: 6 * 7)
...     await done.wait()
...     runner.close()
...     return results
>>> asyncio.run(demo())
[('x', True, 42)]
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import threading
from typing import Callable

DEFAULT_PRIORITY = (0,)


class TaskRunner:
    """``nthreads`` daemon threads running ``job()``s; ``on_done(key, ok, value)`` runs on
    the loop for each, with the ``key`` it was queued with (anything: the worker passes
    the task's key and what it needs to report); ``ok`` False: ``value`` is what it raised.

    ``resources`` are the worker's (``{"GPU": 2}``): a task needing some runs only while
    that much is free. ``on_thread_start()`` runs first on every thread it starts (the
    worker marks its task threads there). Made on the event loop's thread, which every
    result is delivered to. The threads end with :meth:`close` (a job still running
    finishes first, unreported) or the process.
    """

    def __init__(self, nthreads: int, on_done: Callable[[object, bool, object], None],
                 resources: dict | None = None,
                 on_thread_start: Callable[[], None] | None = None):
        self._loop = asyncio.get_running_loop()
        self._on_done = on_done
        self._on_thread_start = on_thread_start
        self.nthreads = nthreads
        self.free = dict(resources or {})  # what no running task holds
        self._cond = threading.Condition()
        self._ready: list = []  # heap of (priority, order, key, job, resources)
        self._order = itertools.count()
        self._holding = 0  # tasks holding one of the nthreads slots
        self._rejoining = 0  # seceded tasks waiting for a slot again: they come first
        self._threads = 0  # live threads
        self._seceded = 0  # threads whose task gave its slot back
        self._idle = 0  # threads waiting for a task
        self._names = itertools.count()
        self._local = threading.local()  # per thread: .holds_slot (its task does)
        self._done: collections.deque = collections.deque()  # (key, ok, value) to deliver
        self._lock = threading.Lock()
        self._wake_pending = False  # a _deliver is scheduled and has not started yet
        self.closed = False
        with self._cond:
            for _ in range(nthreads):
                self._start_thread()

    # ------------------------------------------------------------ the loop's side ---
    def run(self, key, job: Callable[[], object], priority: tuple = DEFAULT_PRIORITY,
            resources: dict | None = None) -> None:
        """Queue ``job`` by ``priority`` (lower first) for a thread with ``resources`` free."""
        with self._cond:
            heapq.heappush(self._ready, (priority, next(self._order), key, job, resources))
            self._cond.notify()

    def queued(self) -> int:
        """Tasks waiting for a thread (or for resources)."""
        return len(self._ready)

    def close(self) -> None:
        """Stop taking jobs; queued ones are dropped, running ones finish unreported."""
        with self._cond:
            self.closed = True
            self._ready.clear()
            self._cond.notify_all()

    # ------------------------------------------------------------ a task's own thread ---
    def secede(self) -> bool:
        """The calling task gives its thread's slot back; False if it holds none (it is
        not one of this runner's tasks, or seceded already)."""
        with self._cond:
            if not getattr(self._local, "holds_slot", False):
                return False
            self._local.holds_slot = False
            self._holding -= 1
            self._seceded += 1
            if self._idle == 0 and self._threads - self._seceded < self.nthreads:
                self._start_thread()  # the slot needs a thread to run the next task
            self._cond.notify()
            return True

    def rejoin(self) -> bool:
        """A seceded task waits for a slot and takes it; False if it had not seceded."""
        with self._cond:
            if getattr(self._local, "holds_slot", True):
                return False
            self._rejoining += 1
            try:
                while self._holding >= self.nthreads and not self.closed:
                    self._cond.wait()
            finally:
                self._rejoining -= 1
            self._holding += 1
            self._seceded -= 1
            self._local.holds_slot = True
            self._cond.notify_all()  # a surplus thread may go now
            return True

    # ------------------------------------------------------------ the threads ---
    def _start_thread(self) -> None:
        self._threads += 1
        threading.Thread(target=self._work, name=f"task-{next(self._names)}",
                         daemon=True).start()

    def _take(self):
        """The next task for this thread, or None when the thread should end."""
        with self._cond:
            while True:
                if self.closed or self._threads - self._seceded > self.nthreads:
                    self._threads -= 1  # closing, or a surplus after a rejoin
                    return None
                if self._holding + self._rejoining < self.nthreads:
                    item = self._pop_runnable()
                    if item is not None:
                        self._holding += 1
                        return item
                self._idle += 1
                try:
                    self._cond.wait()
                finally:
                    self._idle -= 1

    def _pop_runnable(self):
        """The first ready task (by priority) whose resources are free, taken; or None."""
        skipped, found = [], None
        while self._ready:
            item = heapq.heappop(self._ready)
            needs = item[4]
            if not needs or all(self.free.get(r, 0) >= n for r, n in needs.items()):
                for resource, amount in (needs or {}).items():
                    self.free[resource] -= amount
                found = item
                break
            skipped.append(item)
        for item in skipped:
            heapq.heappush(self._ready, item)
        return found

    def _work(self) -> None:
        if self._on_thread_start is not None:
            self._on_thread_start()
        while (item := self._take()) is not None:
            _, _, key, job, needs = item
            self._local.holds_slot = True
            try:
                result = (key, True, job())
            except BaseException as exc:  # a task's own failure, reported as its result
                result = (key, False, exc)
            del item, job  # (nothing of the task outlives its report)
            self._finished(needs)
            if not self.closed:
                self._deliver_soon(result)

    def _finished(self, needs: dict | None) -> None:
        with self._cond:
            if self._local.holds_slot:
                self._holding -= 1
            else:  # it seceded and never rejoined
                self._seceded -= 1
            self._local.holds_slot = False
            for resource, amount in (needs or {}).items():
                self.free[resource] += amount
            self._cond.notify_all()

    def _deliver_soon(self, result: tuple) -> None:
        self._done.append(result)
        with self._lock:
            if self._wake_pending:
                return  # the loop has not collected yet: it will take this one too
            self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop closed: the worker is ending
            pass

    def _deliver(self) -> None:
        with self._lock:
            self._wake_pending = False
        while self._done and not self.closed:
            self._on_done(*self._done.popleft())
