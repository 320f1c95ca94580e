"""The event-loop thread and :meth:`LoopThread.sync`, the one door into it.

Schedulers, clients and their connections live on a tornado ``IOLoop`` running in a
daemon thread. Code on other threads never touches that loop's objects directly: it
hands a coroutine to :meth:`LoopThread.sync` (blocking) or :meth:`LoopThread.submit`
(returns a ``concurrent.futures.Future``), or a plain callback to :meth:`call_soon`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Awaitable, Callable

from tornado.ioloop import IOLoop


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed, else asyncio's.

    Measured on the small round trip: uvloop takes about 15% off each worker request and
    a third off each hand-over between threads.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """An asyncio/tornado event loop running in a daemon thread until :meth:`stop`."""

    def __init__(self, name: str = "scatter-magics-loop"):
        started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, args=(started,), name=name, daemon=True)
        self._thread.start()
        started.wait()

    def _main(self, started: threading.Event) -> None:
        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        IOLoop.current()  # make tornado's wrapper of this loop the current one
        self.loop.call_soon(started.set)
        try:
            self.loop.run_forever()
        finally:
            self._cancel_leftovers()
            self.loop.close()

    def _cancel_leftovers(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self.loop is not None and not self.loop.is_closed()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call_soon(self, callback: Callable, *args) -> None:
        """Run ``callback(*args)`` on the loop; safe from any thread, a no-op once stopped."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: the owner is gone, nothing to do
            pass

    def submit(self, coro: Awaitable) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def sync(self, coro: Awaitable, timeout: float | None = None):
        """Run ``coro`` on the loop and wait for its result from another thread.

        A ``KeyboardInterrupt`` while waiting cancels the coroutine, so a Ctrl-C in a
        notebook stops the operation instead of leaving it running in the background.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("sync() called from the event-loop thread would deadlock; "
                               "use the asynchronous API there")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:  # the same class as TimeoutError since 3.11
            if future.done():
                raise  # the coroutine's own TimeoutError, with its own message
            future.cancel()
            raise TimeoutError(f"operation did not finish within {timeout} s") from None
        except KeyboardInterrupt:
            future.cancel()
            raise

    def stop(self, timeout: float = 10) -> None:
        """Stop the loop and join its thread (cancelling whatever still runs there)."""
        if self.running:
            self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread():
            self._thread.join(timeout)
