"""A worker's task threads: :class:`TaskRunner` runs jobs there and hands results back.

Handing each task to a ``ThreadPoolExecutor`` through ``run_in_executor`` cost a future,
a done-callback and a wake of the event loop per task: for 1,000 trivial tasks the
loop woke once per task to learn one result. Here the threads take jobs from one queue
without waiting while there are any, and put what they finish in a second one; the
loop is woken once per burst and then collects every result that is there, so a worker
busy with many short tasks reports them together (``Channel.send_soon``).

>>> import asyncio
>>> async def demo():
...     done = asyncio.Event()
...     results = []
...     runner = TaskRunner(1, lambda key, ok, value, ran: (results.append((key, ok, value)),
...                                                         done.set()))
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
import queue
import threading
import time
from typing import Callable, NamedTuple

_STOP = object()


class Ran(NamedTuple):
    """Where and when a job ran, for the task stream (``task_stream.py``): the number of
    the thread (``task-0`` is 0: one lane each) and its ``time.time()`` at start and stop."""

    thread: int
    start: float
    stop: float


def not_run(when: float) -> dict:
    """The timing of a task that failed before a thread ran it (an input that did not
    arrive or unpickle): an instant on lane 0, still marked as an error in the stream."""
    return {"thread": 0, "start": when, "stop": time.time(), "transfers": []}


class TaskRunner:
    """``nthreads`` daemon threads running ``job()``s; ``on_done(key, ok, value, ran)`` on
    the loop for each, with the ``key`` it was queued with (anything: the worker passes the
    task's key, its timer and what it fetched); ``ok`` False: ``value`` is what it raised;
    ``ran``: a :class:`Ran`, the thread and times (two ``time.time()`` calls and a tuple:
    ~1 µs a task on this loaded machine, measured with timeit).

    Made on the event loop's thread, which every result is delivered to. The threads end
    with :meth:`close` (a job still running finishes first, unreported) or the process.
    """

    def __init__(self, nthreads: int, on_done: Callable[[object, bool, object], None]):
        self._loop = asyncio.get_running_loop()
        self._on_done = on_done
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._done: collections.deque = collections.deque()  # (key, ok, value, ran) to deliver
        self._lock = threading.Lock()
        self._wake_pending = False  # a _deliver is scheduled and has not started yet
        self.closed = False
        self._threads = [threading.Thread(target=self._work, args=(i,), name=f"task-{i}",
                                          daemon=True)
                         for i in range(nthreads)]
        for thread in self._threads:
            thread.start()

    def run(self, key, job: Callable[[], object]) -> None:
        """Queue ``job`` for the next free thread (loop thread)."""
        self._jobs.put((key, job))

    def _work(self, number: int) -> None:
        while True:
            item = self._jobs.get()
            if item is _STOP:
                return
            key, job = item
            start = time.time()
            try:
                result = (key, True, job(), Ran(number, start, time.time()))
            except BaseException as exc:  # a task's own failure, reported as its result
                result = (key, False, exc, Ran(number, start, time.time()))
            del item, job  # (nothing of the task outlives its report)
            if self.closed:
                continue
            self._done.append(result)
            with self._lock:
                if self._wake_pending:
                    continue  # the loop has not collected yet: it will take this one too
                self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop closed: the worker is ending
                return

    def _deliver(self) -> None:
        with self._lock:
            self._wake_pending = False
        while self._done and not self.closed:
            self._on_done(*self._done.popleft())

    def close(self) -> None:
        """Stop taking jobs; queued ones are dropped, running ones finish unreported."""
        self.closed = True
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._jobs.put(_STOP)
