"""``Future``: a handle on a key held (or being computed) on the cluster.

Every ``Future`` for a key in one client shares a :class:`FutureState`. The client
counts the live ``Future`` objects per key; when the last one is dropped, the workers
free the data.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable, Literal

from ...errors import FutureCancelledError, FutureLostError, RemoteTraceback
from ...structure import find_futures

Status = Literal["pending", "finished", "error", "cancelled", "lost"]
DONE = frozenset({"finished", "error", "cancelled", "lost"})


# Makes sure two threads starting to wait on one state make one threading.Event. The
# event is made on the first wait() only: one per future cost 3 us to make and 3 us to
# set, a third of scattering a 10,000-element list, and most futures are never waited on.
_WAITING = threading.Lock()


class FutureState:
    """The status of one key as this client knows it. Transitions run on the loop thread."""

    __slots__ = ("key", "status", "type", "nbytes", "exception", "traceback", "local",
                 "_event", "_callbacks")

    def __init__(self, key: str, status: Status = "pending"):
        self.key = key
        self.status: Status = status
        self.type: str | None = None
        self.nbytes: int | None = None  # the value's size, as the scheduler said it
        self.exception: BaseException | None = None
        self.traceback: str | None = None
        # The value as this client scattered it, if it can be read here: its pickle (bytes,
        # if small) or its payload in this process's own shared memory (a Serialized of
        # ShmRefs). Gather answers from it (see Client.gather). Immutable like the key's
        # data; dropped with the last Future.
        self.local = None
        self._event: threading.Event | None = None  # made by the first wait()
        self._callbacks: list[Callable[[FutureState], None]] | None = None  # on first use

    def __repr__(self) -> str:
        return f"<FutureState {self.key!r} {self.status}>"

    # ------------------------------------------------------------ transitions ---
    def finish(self, type_name: str | None = None, local=None,
               nbytes: int | None = None) -> None:
        self.type = type_name or self.type
        self.nbytes = nbytes if nbytes is not None else self.nbytes
        if local is not None:
            self.local = local
        self._settle("finished")

    def set_error(self, exception: BaseException, traceback: str | None) -> None:
        self.exception, self.traceback = exception, traceback
        self._settle("error")

    def lose(self, exception: BaseException | None = None) -> None:
        self.exception = exception or FutureLostError(f"key {self.key!r} was lost")
        self._settle("lost")

    def cancel(self, exception: BaseException | None = None) -> None:
        self.exception = exception or FutureCancelledError(f"key {self.key!r} was cancelled")
        self._settle("cancelled")

    def reset(self) -> None:
        """Pending again: the key is being (re)computed."""
        with _WAITING:
            self.status, self.exception, self.traceback = "pending", None, None
            if self._event is not None:
                self._event.clear()

    def _settle(self, status: Status) -> None:
        # No lock (one per key was a tenth of recording a scattered list): the status is
        # written before the event is read, and wait() makes the event before reading the
        # status again, so either the waiter sees the status or this sees its event.
        self.status = status
        event = self._event
        if event is not None:
            event.set()
        callbacks, self._callbacks = self._callbacks or (), None
        for callback in callbacks:
            callback(self)

    # ------------------------------------------------------------ waiting ---
    def done(self) -> bool:
        return self.status in DONE

    def wait(self, timeout: float | None = None) -> bool:
        """Block this (non-loop) thread until done; False if ``timeout`` expired."""
        if self.done():
            return True
        with _WAITING:
            if self._event is None:
                self._event = threading.Event()
        if self.done():  # settled before it could see the event (see _settle)
            return True
        return self._event.wait(timeout)

    def on_done(self, callback: Callable[[FutureState], None]) -> None:
        """Call ``callback(state)`` once done (now, if already); on the loop thread."""
        if self.done():
            callback(self)
        else:
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(callback)

    def raise_if_failed(self) -> None:
        if self.status == "error":
            raise remote_exception(self.exception, self.traceback)
        if self.status in ("lost", "cancelled"):
            raise self.exception


def settled(state: FutureState, then: Callable[[], None] | None = None) -> asyncio.Future:
    """An asyncio future (made on the loop) that is done once ``state`` is; then
    ``then()`` is called, if given and nobody cancelled the wait.

    A future, not a coroutine: ``asyncio.gather`` of 1,000 of them (a gather of 1,000
    pending tasks) makes no Task per key, which cost ~10 % of the loop thread's CPU on
    1,000 trivial tasks (py-spy).
    """
    done = asyncio.get_running_loop().create_future()

    def settle(_state) -> None:
        if not done.done():
            if then is not None:
                then()
            done.set_result(None)
    state.on_done(settle)  # (now, if it is done already)
    return done


async def traceback_of(state: FutureState):
    """Once ``state`` is done: the traceback object of the task's error, or None."""
    await settled(state)
    if state.status != "error":
        return None
    return rebuilt_traceback(state.traceback)


def rebuilt_traceback(text):
    """A traceback object for the worker's frames (``TaskTraceback.frames``), if it
    carries them and ``tblib`` can rebuild them; else None."""
    frames = getattr(text, "frames", None)
    if frames is None:
        return None
    from tblib import Traceback

    return Traceback.from_dict(frames).as_traceback()


async def exception_of(state: FutureState) -> BaseException | None:
    """Once ``state`` is done: the exception its key failed with, or None."""
    await settled(state)
    if state.status == "error":
        return remote_exception(state.exception, state.traceback)
    return state.exception if state.status in ("lost", "cancelled") else None


def remote_exception(exc: BaseException, traceback: str | None) -> BaseException:
    """The task's own exception, with the worker's traceback as its ``__cause__``."""
    exc = exc.with_traceback(None)
    if traceback:
        exc.__cause__ = RemoteTraceback(traceback)
    return exc


def _current_client(key):
    """The client of ``Future(key)`` given none, as Dask's: the current one, if ours."""
    from ...current_client import get_client  # (the top level: not on import)

    client = get_client()  # ValueError if there is none
    if getattr(client, "refs", None) is None:
        raise ValueError(f"Future({key!r}) without a client needs a scatter_magics Client "
                         f"to be the current one, not {type(client).__name__}")
    return client


class Future:
    """A key on the cluster: its status, and its value once finished.

    ``Future(key)`` without a client, as in Dask, takes the current client.

    >>> future = client.scatter(42)          # doctest: +SKIP
    >>> future.result()                      # doctest: +SKIP
    42
    """

    __slots__ = ("key", "client", "_state", "_released", "__weakref__")

    def __init__(self, key: str, client=None, state: FutureState | None = None):
        self.key = key
        self.client = client if client is not None else _current_client(key)
        self._state = self.client.refs.track(key, state)
        self._released = False

    @classmethod
    def for_keys(cls, keys, client) -> dict:
        """``{key: Future}`` for ``keys``, tracked by ``client`` in one step.

        For a long list, one call instead of one ``__init__`` and one lock per future
        (a third of the client's own time scattering 10,000 elements).
        """
        futures = {}
        for key, state in zip(keys, client.refs.track_many(keys)):
            future = futures[key] = cls.__new__(cls)
            future.key, future.client, future._state, future._released = key, client, state, False
        return futures

    @property
    def status(self) -> Status:
        return self._state.status

    @property
    def type(self) -> str | None:
        return self._state.type

    def done(self) -> bool:
        return self._state.done()

    def result(self, timeout=None):
        """The value, fetched from the worker; re-raises the task's exception if it failed.
        ``timeout``: seconds, or text such as ``"300ms"`` (``TimeoutError`` after it)."""
        return self.client.gather(self, timeout=timeout)

    def exception(self, timeout=None):
        """The exception the task raised, or ``None`` if it succeeded."""
        return self.client.sync(exception_of, self._state, callback_timeout=timeout)

    def traceback(self, timeout=None):
        """The traceback object of the task's error (for the ``traceback`` module), or
        ``None`` if it did not fail; waits until it is done."""
        return self.client.sync(traceback_of, self._state, callback_timeout=timeout)

    def cancel(self, force: bool = False) -> None:
        self.client.cancel(self, force=force)

    def cancelled(self) -> bool:
        return self._state.status == "cancelled"

    def retry(self):
        """Run the task again if it failed (``Client.retry``)."""
        return self.client.retry([self])

    def add_done_callback(self, fn: Callable[["Future"], None]) -> None:
        """Call ``fn(future)`` when the future is done (in the client's callback thread)."""
        self.client.done_callbacks.add(self, fn)

    def release(self) -> None:
        """Drop this reference; the data is freed when no future holds the key."""
        if not self._released:
            self._released = True
            self.client.refs.untrack(self.key)

    def __del__(self):
        try:
            self.release()
        except Exception:  # interpreter shutdown: nothing left to release
            pass

    def __await__(self):
        return self.client.gather(self, asynchronous=True).__await__()

    def __reduce__(self):
        raise TypeError("a Future cannot be pickled on its own; pass it to client.submit() "
                        "so the worker receives the value it refers to")

    def __dask_tokenize__(self):
        # dask names a delayed call on a Future by this (distributed's Future does the same)
        return ("Future", self.key)

    def __repr__(self) -> str:
        type_part = f", type: {self.type}" if self.type else ""
        return f"<Future: {self.status}{type_part}, key: {self.key}>"

    def _repr_html_(self) -> str:
        return (f"<b>Future: {self.key}</b> <span>status: {self.status}"
                f"{', type: ' + self.type if self.type else ''}</span>")


def keys_of(futures) -> list:
    """The keys of the Futures in ``futures`` (one, or nested containers of them)."""
    return [f.key for f in find_futures(futures, Future)]
