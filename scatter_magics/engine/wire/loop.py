"""The event-loop thread and :meth:`LoopThread.sync`, the one door into it.

Schedulers, clients and their connections live on an asyncio event loop (uvloop's where
installed) running in a daemon thread; tornado's ``IOLoop.current()`` wraps it for any
tornado code run there. Code on other threads never touches that loop's objects directly: it
hands a coroutine to :meth:`LoopThread.sync` (blocking) or :meth:`LoopThread.submit`
(returns a ``concurrent.futures.Future``), a plain callback to :meth:`call_soon` or
:meth:`call_later` (not waited for), or to :meth:`call` (waited for).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Awaitable, Callable

# While a thread waits in sync(), the loop polls instead of sleeping for up to this long:
# on a VM a sleeping thread takes 30-40 us to wake, paid twice per worker request.
# Bounded, and only while someone is blocked on the answer anyway.
POLL_WHILE_WAITING = 0.0005  # seconds


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
    """An asyncio event loop running in a daemon thread until :meth:`stop`."""

    def __init__(self, name: str = "scatter-magics-loop"):
        started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        # Results other threads wait for (sync, submit): failed if the loop stops first.
        self._waiting: set[concurrent.futures.Future] = set()
        self._thread = threading.Thread(target=self._main, args=(started,), name=name, daemon=True)
        self._thread.start()
        started.wait()

    def _main(self, started: threading.Event) -> None:
        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        # Not wrapped in tornado's IOLoop here: tornado code running on this loop
        # (IOLoop.current()) gets its wrapper on first use, and importing tornado to
        # make one now cost 12.5 ms of every cold start, before the scheduler could start.
        self.loop.call_soon(started.set)
        try:
            self.loop.run_forever()
        finally:
            self._cancel_leftovers()
            self.loop.close()
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        """Fail what other threads still wait for: handed over as the loop stopped (its
        owner closed under it), it would never run, and a sync() without a timeout would
        wait forever. Anything handed over from now on finds the loop closed."""
        for result in list(self._waiting):
            try:
                result.set_exception(RuntimeError("the event loop stopped before this ran"))
            except concurrent.futures.InvalidStateError:  # it finished after all
                pass

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

    def call_later(self, delay: float, callback: Callable, *args) -> None:
        """Run ``callback(*args)`` on the loop in ``delay`` seconds; safe from any thread,
        a no-op once stopped.

        Always handed over through :meth:`call_soon`, even from the loop thread: a
        finalizer (``Future.__del__``) may run there in the middle of the loop's own
        bookkeeping, where only the thread-safe queue may be touched.
        """
        self.call_soon(self.loop.call_later, delay, callback, *args)

    def call(self, callback: Callable, *args, timeout: float | None = None):
        """Run ``callback(*args)`` on the loop and return its result.

        On the loop thread it runs at once; from another thread it is handed over and
        waited for as :meth:`sync` waits (``timeout``, ``KeyboardInterrupt``).
        """
        if self.in_loop_thread():
            return callback(*args)
        return self.sync(_call(callback, args), timeout)

    def submit(self, coro: Awaitable) -> concurrent.futures.Future:
        result = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self._waiting.add(result)
        result.add_done_callback(self._waiting.discard)
        if self.loop.is_closed():  # closed meanwhile: _fail_waiting may have missed it
            self._fail_waiting()
        return result

    def sync(self, coro: Awaitable, timeout: float | None = None):
        """Run ``coro`` on the loop and wait for its result from another thread.

        A ``KeyboardInterrupt`` while waiting cancels the coroutine, so a Ctrl-C in a
        notebook stops the operation instead of leaving it running in the background.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("sync() called from the event-loop thread would deadlock; "
                               "use the asynchronous API there")
        result: concurrent.futures.Future = concurrent.futures.Future()
        started: list[asyncio.Task] = []
        deadline = time.monotonic() + POLL_WHILE_WAITING

        def start() -> None:
            started.append(self.loop.create_task(_settle(coro, result)))
            self._poll_until(result, deadline)

        def cancel() -> None:
            for task in started:
                task.cancel()

        self._waiting.add(result)  # before the hand-over: see _fail_waiting
        try:
            self.loop.call_soon_threadsafe(start)  # one wake of the loop for all of it
            return result.result(timeout)
        except concurrent.futures.TimeoutError:  # the same class as TimeoutError since 3.11
            if result.done():
                raise  # the coroutine's own TimeoutError, with its own message
            self.call_soon(cancel)
            raise TimeoutError(f"operation did not finish within {timeout} s") from None
        except KeyboardInterrupt:
            self.call_soon(cancel)
            raise
        finally:
            self._waiting.discard(result)

    def _poll_until(self, future: concurrent.futures.Future, deadline: float) -> None:
        # Re-queued callbacks make each loop iteration poll with a zero timeout.
        if not future.done() and time.monotonic() < deadline:
            self.loop.call_soon(self._poll_until, future, deadline)

    def stop(self, timeout: float = 10) -> None:
        """Stop the loop and join its thread (cancelling whatever still runs there)."""
        if self.running:
            self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread():
            self._thread.join(timeout)


async def _call(callback: Callable, args: tuple):
    return callback(*args)


async def _settle(coro: Awaitable, result: concurrent.futures.Future) -> None:
    """Await ``coro`` and hand its outcome to ``result`` from inside the task.

    Unlike ``run_coroutine_threadsafe``, the waiting thread is woken in the task's last
    step, not by a done-callback one loop iteration later.
    """
    try:
        value = await coro
    except asyncio.CancelledError:
        result.cancel()
        raise
    except BaseException as exc:
        if not result.done():
            result.set_exception(exc)
    else:
        if not result.done():
            result.set_result(value)


def wants_awaitable(client, asynchronous: bool | None) -> bool:
    """Whether a call returns an awaitable: its ``asynchronous=``, else the client's mode
    (Dask's rule)."""
    return asynchronous if asynchronous is not None else client.asynchronous


async def ready(value):
    """An awaitable that gives ``value`` at once (a result known without the loop)."""
    return value
