"""Waiting on futures: ``wait`` (``as_completed`` is its own module, re-exported here),
and on anything with a timeout (``within``, ``timeout_seconds``)."""

from __future__ import annotations

import asyncio
import numbers

from ...current_client import default_client
from ...structure import find_futures
from ..wire.loop import ready
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


RETURN_WHEN = ("ALL_COMPLETED", "FIRST_COMPLETED")  # Dask's; it has no FIRST_EXCEPTION


def wait(fs, timeout=None, return_when: str = "ALL_COMPLETED"):
    """Until all (or the first of) ``fs`` are done: ``(done, not_done)``; TimeoutError
    after ``timeout`` (seconds, or text such as ``"5s"``). On an asynchronous client an
    awaitable, as Dask's: ``done, not_done = await wait(futures)``."""
    if return_when not in RETURN_WHEN:
        raise NotImplementedError(
            "Only return_when='ALL_COMPLETED' and 'FIRST_COMPLETED' are supported")
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, (numbers.Real, str))):
        raise TypeError("wait(timeout=) takes seconds (or text such as '5s'), got "
                        f"{timeout!r}; wait takes one list of futures: wait([x, y]), "
                        "not wait(x, y)")  # (Dask's hint for this mistake)
    timeout = timeout_seconds(timeout)
    futures = find_futures(fs, Future)
    if not futures:  # nothing to wait for; still awaitable where the client is
        nothing = DoneAndNotDone(set(), set())
        return ready(nothing) if _current_is_asynchronous() else nothing
    return futures[0].client.sync(_until_settled, futures, return_when == "FIRST_COMPLETED",
                                  callback_timeout=timeout)


def _current_is_asynchronous() -> bool:
    try:
        return bool(getattr(default_client(), "asynchronous", False))
    except ValueError:  # no client: wait([]) outside any
        return False


async def _until_settled(futures: list, first: bool) -> DoneAndNotDone:
    pending = [asyncio.ensure_future(settled(f._state)) for f in futures]
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED if first
                           else asyncio.ALL_COMPLETED)
    finally:
        for p in pending:
            p.cancel()
    return DoneAndNotDone({f for f in futures if f.done()}, {f for f in futures if not f.done()})
