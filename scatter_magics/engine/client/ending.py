"""``Ending``: whether and why a client was closed, and what its calls raise from then on.

A client closes when its user closes it, or under it: its scheduler in another process
went away (its owner closed the cluster, the Jupyter sidebar stopped it, the process
died). Then, as Dask's client does when it gives up on its scheduler, its status is
``closed``, and every call, including one cut short on the way, raises
``ClientClosedError`` saying why (never the connection's own ``CommClosedError``).

>>> ending = Ending()
>>> ending.error("closed")
ClientClosedError('this Client is closed; create a new Client()')
>>> ending.reason = "stopped from the Jupyter sidebar"
>>> ending.cut_short(CommClosedError("connection to tcp://127.0.0.1:8786 closed"))
ClientClosedError('this Client is closed: stopped from the Jupyter sidebar; create a new Client()')
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Callable

from ...errors import ClientClosedError, CommClosedError

logger = logging.getLogger(__name__)

JOIN_TIMEOUT = 30.0  # s close() waits for the threads of a client closed under it to end
# What a call cut short by the scheduler going away may raise: the channel's error, the
# loop stopped under it (RuntimeError: closed loop), its futures cancelled with the data
# (FutureCancelledError) or its task cancelled by that stop (both concurrent.futures').
CUT_SHORT = (CommClosedError, RuntimeError, concurrent.futures.CancelledError)


class Ending:
    """``reason`` (None until the client is closed under its user), and the thread that
    ends the client's threads then (its loop thread cannot join itself)."""

    def __init__(self):
        self.reason: str | None = None  # set first: a call cut short from then on says why
        self._thread: threading.Thread | None = None
        self._begun = threading.Event()
        self._lock = threading.Lock()  # between on_end() and begin()
        self._listeners: list[Callable[[str], None]] = []
        self._ended_under = False

    def error(self, status: str) -> ClientClosedError:
        """What a call on a client with this ``status`` (not ``running``) raises."""
        if status != "closed":
            return ClientClosedError("this asynchronous Client was not started: await it first")
        why = f": {self.reason}" if self.reason else ""
        return ClientClosedError(f"this Client is closed{why}; create a new Client()")

    def cut_short(self, exc: BaseException) -> BaseException:
        """What to raise for ``exc`` (one of :data:`CUT_SHORT`) from a call on the loop:
        ``exc`` itself, or, if the client was closed under it meanwhile,
        ``ClientClosedError`` saying why."""
        if self.reason is None:
            return exc
        error = self.error("closed")
        error.__cause__ = exc
        return error

    def on_end(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(reason)`` once the client was closed under its user: from the
        thread that ends it, or now if it was."""
        with self._lock:
            if not self._ended_under:
                self._listeners.append(listener)
                return
        listener(self.reason)

    def begin(self, *steps: Callable[[], None]) -> None:
        """Once :attr:`reason` is set: tell the listeners, then run each of ``steps``
        (which end the client's threads) in order, on a thread of its own."""
        with self._lock:
            self._ended_under = True
            listeners, self._listeners = self._listeners, []

        def run() -> None:
            for listener in listeners:
                try:
                    listener(self.reason)
                except Exception:
                    logger.exception("a listener of the client's end failed")
            for step in steps:
                step()
        thread = threading.Thread(target=run, name="scatter-magics-close", daemon=True)
        try:
            thread.start()
            self._thread = thread
        except RuntimeError:  # the interpreter is exiting: its atexit closes the clusters
            pass
        self._begun.set()

    def wait(self) -> None:
        """Return once the threads :meth:`begin` ends are gone (``close()`` waits here,
        from another thread, maybe before ``begin`` was called)."""
        if self.reason is not None and self._begun.wait(JOIN_TIMEOUT) and self._thread:
            self._thread.join(JOIN_TIMEOUT)


def run_on(loop, coro, awaitable: bool, then: Callable, ending: Ending):
    """Run ``coro`` on ``loop``: block for ``then(result)``, or return an awaitable of it
    (``awaitable``). An error the scheduler's going away caused says so (``cut_short``)."""
    if awaitable:
        async def wait():
            try:
                return then(await asyncio.wrap_future(loop.submit(coro)))
            except CUT_SHORT as exc:
                raise ending.cut_short(exc)
        return wait()
    try:
        return then(loop.sync(coro))
    except CUT_SHORT as exc:
        raise ending.cut_short(exc)
