"""A worker's task threads: :class:`TaskRunner` runs jobs there and hands results back.

Handing each task to a ``ThreadPoolExecutor`` through ``run_in_executor`` cost a future,
a done-callback and a wake of the event loop per task: for 1,000 trivial tasks the
loop woke once per task to learn one result. Here the threads take jobs from one queue
without waiting while there are any, and put what they finish in a second one; the
loop is woken once per burst and then collects every result that is there, so a worker
busy with many short tasks reports them together (``Channel.send_soon``).

Most tasks ask for nothing more (``submit()`` without ``priority=`` or ``resources=``):
they go through that queue alone, a ``queue.SimpleQueue`` with no lock of ours (1,000
trivial tasks through the runner alone: 0.75 ms here, 0.6 ms before tasks had options;
a heap under a ``threading.Condition`` for every task took 3.5-5 ms). The others wait in a heap, by priority (Dask's order: ``priority=1`` before
``priority=0``, then the order they came in) and for the worker's ``resources``
(``{"GPU": 1}``) to be free; a token in the queue wakes a thread to look there, and while
the heap holds tasks a thread compares the queue's next task with the heap's first.

A task that calls ``secede()`` gives its thread's slot back: another thread starts and
takes jobs meanwhile, so tasks that wait for other tasks cannot starve the worker of
threads. ``rejoin()`` waits until a thread between two tasks leaves in its favour.

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
import heapq
import itertools
import queue
import threading
import time
from typing import Callable, NamedTuple

DEFAULT_PRIORITY = (0,)  # (-user priority, ...): what the scheduler sends, lower first
_STOP = object()  # a thread ends
_LOOK = object()  # a thread looks at the heap, or leaves for a rejoining task


class Ran(NamedTuple):
    """Where and when a job ran, for the task stream (``task_stream.py``): the number of
    the thread (``task-0`` is 0: one lane each; a thread started for a seceded task gets
    the next number) and its ``time.time()`` at start and stop."""

    thread: int
    start: float
    stop: float


def not_run(when: float) -> dict:
    """The timing of a task that failed before a thread ran it (an input that did not
    arrive or unpickle): an instant on lane 0, still marked as an error in the stream."""
    return {"thread": 0, "start": when, "stop": time.time(), "transfers": []}


class TaskRunner:
    """``nthreads`` daemon threads running ``job()``s; ``on_done(key, ok, value, ran)`` runs
    on the loop for each, with the ``key`` it was queued with (anything: the worker passes
    the task's key and what it needs to report); ``ok`` False: ``value`` is what it raised;
    ``ran``: a :class:`Ran`, the thread and times (two ``time.time()`` calls and a tuple:
    ~1 µs a task on this loaded machine, measured with timeit).

    ``resources`` are the worker's (``{"GPU": 2}``): a task needing some runs only while
    that much is free. ``on_thread_start()`` runs first on every thread it starts (the
    worker marks its task threads there). Made on the event loop's thread, which every
    result is delivered to. The threads end with :meth:`close` (a job still running
    finishes first, unreported) or the process.
    """

    def __init__(self, nthreads: int, on_done: Callable[[object, bool, object, Ran], None],
                 resources: dict | None = None,
                 on_thread_start: Callable[[], None] | None = None):
        self._loop = asyncio.get_running_loop()
        self._on_done = on_done
        self._on_thread_start = on_thread_start
        self.nthreads = nthreads
        self.free = dict(resources or {})  # what no running task holds
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()  # plain items, _LOOK, _STOP
        self._heap: list = []  # (priority, order, key, job, resources), under _lock
        self._order = itertools.count()
        self._lock = threading.Lock()  # the heap, free, _threads, _rejoining
        self._threads = 0  # live threads: nthreads, plus one per seceded task
        self._rejoining: collections.deque = collections.deque()  # events of rejoin()s
        self._names = itertools.count()
        self._local = threading.local()  # per thread: .seceded (its task did)
        self._done: collections.deque = collections.deque()  # (key, ok, value, ran) to deliver
        self._wake_lock = threading.Lock()
        self._wake_pending = False  # a _deliver is scheduled and has not started yet
        self.closed = False
        with self._lock:
            for _ in range(nthreads):
                self._start_thread()

    # ------------------------------------------------------------ the loop's side ---
    def run(self, key, job: Callable[[], object], priority: tuple = DEFAULT_PRIORITY,
            resources: dict | None = None) -> None:
        """Queue ``job`` by ``priority`` (lower first) for a thread with ``resources`` free."""
        item = (priority, next(self._order), key, job, resources)
        if resources or priority[0]:
            with self._lock:
                heapq.heappush(self._heap, item)
            self._jobs.put(_LOOK)
        else:
            self._jobs.put(item)

    def queued(self) -> int:
        """Tasks waiting for a thread (or for resources)."""
        return len(self._heap) + self._jobs.qsize()  # (a wake-up token counts as one)

    def close(self) -> None:
        """Stop taking jobs; queued ones are dropped, running ones finish unreported."""
        with self._lock:
            self.closed = True
            self._heap.clear()
            while self._rejoining:
                self._rejoining.popleft().set()
            threads = self._threads
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        for _ in range(threads):
            self._jobs.put(_STOP)

    # ------------------------------------------------------------ a task's own thread ---
    def secede(self) -> bool:
        """The calling task gives its thread's slot back; False if it holds none (it is
        not one of this runner's tasks, or seceded already)."""
        if not hasattr(self._local, "seceded") or self._local.seceded:
            return False
        self._local.seceded = True
        with self._lock:
            if not self.closed:
                self._start_thread()  # takes jobs in this one's place
        return True

    def rejoin(self) -> bool:
        """A seceded task waits for a slot and takes it; False if it had not seceded."""
        if not getattr(self._local, "seceded", False):
            return False
        left = threading.Event()
        with self._lock:
            if self.closed:
                return True
            self._rejoining.append(left)
        self._jobs.put(_LOOK)  # an idle thread leaves at once; else the next to finish
        left.wait()
        self._local.seceded = False
        return True

    # ------------------------------------------------------------ the threads ---
    def _start_thread(self) -> None:
        self._threads += 1
        number = next(self._names)
        threading.Thread(target=self._work, args=(number,), name=f"task-{number}",
                         daemon=True).start()

    def _work(self, number: int) -> None:
        if self._on_thread_start is not None:
            self._on_thread_start()
        self._local.seceded = False
        while True:
            if self._rejoining and self._leave_for_rejoin():
                return
            item = self._from_heap(None) if self._heap else None
            if item is None:
                item = self._jobs.get()
                if item is _STOP:
                    return
                if self._heap or item is _LOOK:
                    item = self._from_heap(item)
                    if item is None:
                        continue
            _, _, key, job, needs = item
            start = time.time()
            try:
                result = (key, True, job(), Ran(number, start, time.time()))
            except BaseException as exc:  # a task's own failure, reported as its result
                result = (key, False, exc, Ran(number, start, time.time()))
            del item, job  # (nothing of the task outlives its report)
            if needs:
                self._give_back(needs)
            if not self.closed:
                self._deliver_soon(result)
            if self._local.seceded:  # its slot went to another thread meanwhile
                with self._lock:
                    self._threads -= 1
                return

    def _from_heap(self, item):
        """The task to run: ``item`` (a plain one from the queue, or _LOOK or None) or a
        task of the heap that comes before it and whose resources are free; or None."""
        with self._lock:
            if item is None or item is _LOOK:
                return self._pop_runnable()
            heapq.heappush(self._heap, item)
            found = self._pop_runnable()
        if found is not item:  # it waits in the heap now: an idle thread may take it
            self._jobs.put(_LOOK)
        return found

    def _pop_runnable(self):
        """The first task (by priority) whose resources are free, taken; or None."""
        skipped, found = [], None
        while self._heap:
            item = heapq.heappop(self._heap)
            needs = item[4]
            if not needs or all(self.free.get(r, 0) >= n for r, n in needs.items()):
                for resource, amount in (needs or {}).items():
                    self.free[resource] -= amount
                found = item
                break
            skipped.append(item)
        for item in skipped:
            heapq.heappush(self._heap, item)
        return found

    def _give_back(self, needs: dict) -> None:
        with self._lock:
            for resource, amount in needs.items():
                self.free[resource] += amount
            waiting = min(len(self._heap), self.nthreads)
        for _ in range(waiting):  # tasks that waited for these may run now
            self._jobs.put(_LOOK)

    def _leave_for_rejoin(self) -> bool:
        """This thread, between two tasks, ends in favour of a rejoining task."""
        with self._lock:
            if not self._rejoining or self._local.seceded:
                return False
            self._rejoining.popleft().set()
            self._threads -= 1
            return True

    def _deliver_soon(self, result: tuple) -> None:
        self._done.append(result)
        with self._wake_lock:
            if self._wake_pending:
                return  # the loop has not collected yet: it will take this one too
            self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop closed: the worker is ending
            pass

    def _deliver(self) -> None:
        with self._wake_lock:
            self._wake_pending = False
        while self._done and not self.closed:
            self._on_done(*self._done.popleft())
