"""Waiting on futures: ``wait`` and ``as_completed``, and on anything with a timeout."""

from __future__ import annotations

import asyncio
from queue import Queue

from ...structure import find_futures
from .future import Future, settled

NO_DEFAULT = "__no_default__"  # a timeout= not given (None means "no timeout")


async def within(coro, timeout):
    """``await coro``, or ``TimeoutError`` after ``timeout`` s (None, NO_DEFAULT: no bound)."""
    if timeout is None or timeout is NO_DEFAULT:
        return await coro
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"operation did not finish within {timeout} s") from None


class DoneAndNotDone(tuple):
    __slots__ = ()

    def __new__(cls, done: set, not_done: set):
        return super().__new__(cls, (done, not_done))

    done = property(lambda self: self[0])
    not_done = property(lambda self: self[1])


def wait(fs, timeout: float | None = None, return_when: str = "ALL_COMPLETED") -> DoneAndNotDone:
    """Block until all (or the first of) ``fs`` are done; TimeoutError after ``timeout``."""
    futures = find_futures(fs, Future)
    if not futures:
        return DoneAndNotDone(set(), set())
    first = return_when == "FIRST_COMPLETED"
    futures[0].client.sync(_until_settled, [f._state for f in futures], first,
                           asynchronous=False, callback_timeout=timeout)
    return DoneAndNotDone({f for f in futures if f.done()}, {f for f in futures if not f.done()})


async def _until_settled(states: list, first: bool) -> None:
    pending = [asyncio.ensure_future(settled(state)) for state in states]
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED if first
                           else asyncio.ALL_COMPLETED)
    finally:
        for p in pending:
            p.cancel()


class as_completed:
    """Iterate over futures in the order they finish.

    >>> for future in as_completed(futures):     # doctest: +SKIP
    ...     print(future.result())
    """

    def __init__(self, futures=(), with_results: bool = False):
        self._done: Queue = Queue()
        self._count = 0
        self.with_results = with_results
        for future in find_futures(list(futures), Future):
            self.add(future)

    def add(self, future: Future) -> None:
        self._count += 1
        future.client.loop.call_soon(future._state.on_done,
                                     lambda state, f=future: self._done.put(f))

    def count(self) -> int:
        return self._count

    def __iter__(self):
        return self

    def __next__(self):
        if self._count == 0:
            raise StopIteration
        future = self._done.get()
        self._count -= 1
        return (future, future.result()) if self.with_results else future
