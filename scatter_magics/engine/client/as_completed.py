"""``as_completed``: futures in the order they finish, with Dask's whole API.

Futures are added (``add``, ``update``) from any thread; each one's state calls back on
its client's loop thread when it is done, and the future moves from *waiting* to
*ready*. A thread iterating (``for``, ``next_batch``, ``batches``) waits on a
condition; an ``async for`` waits on an asyncio future of its own loop, woken from the
client's loop with ``call_soon_threadsafe`` (the user's loop is never the client's).

>>> for future in as_completed(client.map(inc, range(3))):      # doctest: +SKIP
...     print(future.result())
>>> async for future, value in as_completed(futures, with_results=True):  # doctest: +SKIP
...     print(value)
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time

from .future import Future, rebuilt_traceback, remote_exception
from .task_options import parse_timedelta

FAILED = frozenset({"error", "cancelled", "lost"})  # statuses whose value is an error


class as_completed:
    """An iterator of ``futures`` in the order they finish; more can be added meanwhile.

    As Dask's (``distributed.as_completed``): ``with_results=True`` yields ``(future,
    value)``; a failed future then raises its exception, or (``raise_errors=False``)
    comes as ``(future, (type, exception, traceback))``, and a cancelled one as
    ``(future, its CancelledError)``. ``timeout`` (seconds, or text such as ``"5s"``)
    counts from construction: a ``next`` still waiting then raises ``TimeoutError``. A
    future added twice is yielded twice. ``loop`` is accepted for Dask's signature: each
    future is watched on its own client's loop.
    """

    def __init__(self, futures=None, loop=None, with_results: bool = False,
                 raise_errors: bool = True, *, timeout=None):
        self.with_results, self.raise_errors = with_results, raise_errors
        self._timeout = None if timeout is None else parse_timedelta(timeout)
        self._deadline = None if timeout is None else time.monotonic() + self._timeout
        self._changed = threading.Condition()  # guards the three below
        self._waiting: dict[Future, int] = {}  # future → times added, not done yet
        self._ready: collections.deque[Future] = collections.deque()  # done, not yielded
        self._wakers: list[tuple] = []  # (asyncio loop, asyncio future) of async waiters
        if futures:
            self.update(futures)

    # ------------------------------------------------------------ adding ---
    def update(self, futures) -> None:
        """Add each of ``futures`` (an iterable of Futures); yielded once it finishes."""
        for future in futures:
            if not isinstance(future, Future):
                raise TypeError(f"Input must be a future, got {future}")
            with self._changed:
                self._waiting[future] = self._waiting.get(future, 0) + 1
            future.client.loop.call_soon(future._state.on_done,
                                         lambda state, f=future: self._arrived(f))

    def add(self, future: Future) -> None:
        """Add one future; yielded once it finishes."""
        self.update((future,))

    def _arrived(self, future: Future) -> None:
        """On the future's client's loop: it is done, so ready (unless cleared meanwhile)."""
        with self._changed:
            times = self._waiting.get(future, 0)
            if not times:
                return
            if times == 1:
                del self._waiting[future]
            else:
                self._waiting[future] = times - 1
            self._ready.append(future)
            self._changed.notify_all()
            wakers, self._wakers = self._wakers, []
        for loop, waiter in wakers:
            loop.call_soon_threadsafe(_wake, waiter)

    def clear(self) -> None:
        """Forget every future added: those waiting and those ready."""
        with self._changed:
            self._waiting.clear()
            self._ready.clear()

    # ------------------------------------------------------------ looking ---
    def count(self) -> int:
        """How many futures are yet to be returned: still computing, or ready."""
        with self._changed:
            return sum(self._waiting.values()) + len(self._ready)

    def is_empty(self) -> bool:
        """No future computing or ready."""
        return not self.count()

    def has_ready(self) -> bool:
        """Some future is done and not yet returned."""
        return bool(self._ready)

    def __repr__(self) -> str:
        return (f"<as_completed: waiting={sum(self._waiting.values())} "
                f"done={len(self._ready)}>")

    # ------------------------------------------------------------ iterating ---
    def __iter__(self):
        return self

    def __next__(self):
        return self._returned(self._take(), self.raise_errors)

    next = __next__

    def next_batch(self, block: bool = True) -> list:
        """Every future ready now (``block``: at least one, waiting for it). As in
        Dask, only the first (the one waited for) raises its error."""
        batch = [next(self)] if block else []
        while True:
            with self._changed:
                if not self._ready:
                    return batch
                future = self._ready.popleft()
            batch.append(self._returned(future, raise_errors=False))

    def batches(self):
        """Lists of the futures (or ``(future, value)``) ready together, until none is left."""
        while True:
            try:
                yield self.next_batch(block=True)
            except StopIteration:
                return

    def _take(self) -> Future:
        """The next ready future, waiting in this thread; StopIteration when none is left."""
        with self._changed:
            while not self._ready:
                if not self._waiting:
                    raise StopIteration
                if not self._changed.wait(self._left()):
                    self._timed_out()
            return self._ready.popleft()

    def _returned(self, future: Future, raise_errors: bool):
        if not self.with_results:
            return future
        if future.status in FAILED:
            return future, self._failure(future, raise_errors)
        return future, future.result()

    # ------------------------------------------------------------ async for ---
    def __aiter__(self):
        return self

    async def __anext__(self):
        future = await self._take_async()
        if not self.with_results or future.status in FAILED:
            return self._returned(future, self.raise_errors)
        return future, await future.client.gather(future, asynchronous=True)

    async def _take_async(self) -> Future:
        loop = asyncio.get_running_loop()
        while True:
            with self._changed:
                if self._ready:
                    return self._ready.popleft()
                if not self._waiting:
                    raise StopAsyncIteration
                waiter = loop.create_future()
                self._wakers.append((loop, waiter))
            try:
                await asyncio.wait_for(waiter, self._left())
            except TimeoutError:
                self._timed_out()

    # ------------------------------------------------------------ shared ---
    def _left(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def _timed_out(self):
        raise TimeoutError(f"as_completed(timeout={self._timeout} s): no future was "
                           f"ready {self._timeout} s after it was made")

    @staticmethod
    def _failure(future: Future, raise_errors: bool):
        """A failed, cancelled or lost future's error: raised (if it failed and
        ``raise_errors``), else as Dask gives it (a failure's ``(type, exc, tb)``)."""
        state = future._state
        if state.status != "error":
            return state.exception  # cancelled or lost: never raised, as in Dask
        exc = remote_exception(state.exception, state.traceback)
        if raise_errors:
            raise exc
        return type(exc), exc, rebuilt_traceback(state.traceback)


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
