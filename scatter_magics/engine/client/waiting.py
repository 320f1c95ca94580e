"""Waiting on futures: ``wait`` (``as_completed`` is its own module, re-exported here),
and on anything with a timeout (``within``, ``timeout_seconds``)."""

from __future__ import annotations

import asyncio

from ...structure import find_futures
from .as_completed import as_completed  # noqa: F401 (its old home)
from .future import Future, settled
from .task_options import parse_timedelta

NO_DEFAULT = "__no_default__"  # a timeout= not given (None means "no timeout")


def timeout_seconds(timeout):
    """A ``timeout=`` as Dask takes it, in seconds: a number, or text such as ``"300ms"``
    or ``"5s"`` (``ValueError`` naming anything else); None and NO_DEFAULT as they are.

    Parsed where the user's call comes in, before any coroutine is made for it.

    >>> timeout_seconds("300ms"), timeout_seconds(2), timeout_seconds(None)
    (0.3, 2.0, None)
    """
    if timeout is None or timeout is NO_DEFAULT:
        return timeout
    return parse_timedelta(timeout)


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
