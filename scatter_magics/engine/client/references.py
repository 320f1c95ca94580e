"""Which keys a client's Futures still hold, and releasing the others in batches.

A Future counts as one reference to its key; when the last one goes (``Future.__del__``,
from any thread, even inside the garbage collector) the key is released, batched with
the others dropped within ``RELEASE_BATCH_DELAY``, as Dask batches them.

>>> refs = References()
>>> state = refs.track("x")
>>> refs.track("x") is state, refs.get("x") is state     # one state per key, counted twice
(True, True)
>>> refs.apply({"key": "x", "status": "finished", "type": "int"})
>>> state
<FutureState 'x' finished>
"""

from __future__ import annotations

import collections
import threading
from typing import Callable

from ...errors import FutureCancelledError
from .future import FutureState

RELEASE_BATCH_DELAY = 0.005  # s; dropped futures are released together, as Dask batches them
RETRACKED = frozenset({"cancelled", "lost", "error"})  # a new Future for these starts afresh


class References:
    """Per key: the :class:`FutureState` its Futures share and how many Futures hold it.

    Counting and releasing start with :meth:`start`; until then (and after
    :meth:`close`) dropped keys are only noted.
    """

    def __init__(self):
        self._states: dict[str, FutureState] = {}
        self._refcount: dict[str, int] = {}
        self._lock = threading.Lock()
        self._dropped: collections.deque[str] = collections.deque()  # keys of dropped futures
        self._flush_scheduled = False
        self._running = False
        # The state of a key, or None: the dict's own method (the dict is never replaced),
        # so a scatter finishing 10,000 states pays no call of ours per key.
        self.get: Callable[[str], FutureState | None] = self._states.get

    def start(self, loop, in_flight: Callable[[str], bool],
              send_release: Callable[[list], None]) -> None:
        """Release dropped keys from now on: ``send_release(keys)`` on ``loop`` (a
        ``LoopThread``), holding back a key while ``in_flight(key)`` (a scatter sent
        ahead with it is not recorded yet)."""
        self._loop, self._in_flight, self._send_release = loop, in_flight, send_release
        self._running = True

    def track(self, key: str, state: FutureState | None = None) -> FutureState:
        """One more Future holds ``key``: its shared state (``state`` if it is the first)."""
        with self._lock:
            existing = self._states.get(key)
            if existing is None or existing.status in RETRACKED:
                existing = self._states[key] = state or FutureState(key)
            self._refcount[key] = self._refcount.get(key, 0) + 1
            return existing

    def track_many(self, keys) -> list[FutureState]:
        """:meth:`track` for many keys under one hold of the lock."""
        states, refcount, tracked = self._states, self._refcount, []
        with self._lock:
            for key in keys:
                existing = states.get(key)
                if existing is None or existing.status in RETRACKED:
                    existing = states[key] = FutureState(key)
                refcount[key] = refcount.get(key, 0) + 1
                tracked.append(existing)
        return tracked

    def states(self) -> dict[str, FutureState]:
        """``{key: state}`` of every key a Future holds now (a copy)."""
        with self._lock:
            return dict(self._states)

    def untrack(self, key: str) -> None:
        """One Future fewer holds ``key``; from any thread, even inside the collector."""
        # Called from Future.__del__, which the garbage collector may run anywhere,
        # even inside track() with self._lock held: so no lock here, only an atomic
        # deque append; the loop thread does the counting.
        self._dropped.append(key)
        if not self._flush_scheduled and self._running:
            self._flush_scheduled = True
            # One wake of the loop per batch, not per dropped future: a loop of small
            # scatters would otherwise pay a thread hand-over and a worker message each.
            self._loop.call_later(RELEASE_BATCH_DELAY, self.flush)

    def flush(self) -> None:
        """Count the dropped keys and release those no Future holds (on the loop)."""
        self._flush_scheduled = False
        released, held_back = [], []
        with self._lock:
            while self._dropped:
                key = self._dropped.popleft()
                if self._in_flight(key):  # not recorded yet: released after that
                    held_back.append(key)
                    continue
                count = self._refcount.get(key, 0) - 1
                if count > 0:
                    self._refcount[key] = count
                else:
                    self._refcount.pop(key, None)
                    self._states.pop(key, None)
                    released.append(key)
            self._dropped.extend(held_back)
        if held_back and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_later(RELEASE_BATCH_DELAY, self.flush)
        if released:
            self._send_release(released)

    def apply(self, msg: dict) -> None:
        """The scheduler's ``key-update`` report about one key, on its state (on the loop)."""
        state = self._states.get(msg["key"])
        if state is None:
            return
        status = msg["status"]
        if status == "finished":
            state.finish(msg["type"], nbytes=msg.get("nbytes"))
        elif status == "error":
            state.set_error(msg["exception"], msg["traceback"])
        elif status == "lost":
            state.lose(msg["exception"])
        elif status == "cancelled":
            state.cancel(msg["exception"])
        elif status == "pending":
            state.reset()

    def cancel_all(self) -> None:
        """Every state cancelled, done or not (on the loop): the cluster restarted."""
        for state in list(self._states.values()):
            if state.status != "cancelled":
                state.cancel()

    def close(self, reason: str | None = None) -> None:
        """Cancel every state not done yet and stop releasing (on the loop, at close).

        With ``reason`` (the scheduler went away, and the data with it) every state is
        cancelled, finished ones too, as Dask cancels every future when it loses its
        scheduler; the error says why."""
        self._running = False
        for state in list(self._states.values()):
            if reason is not None and state.status != "cancelled":
                state.cancel(FutureCancelledError(
                    f"key {state.key!r} was cancelled: the client lost its scheduler "
                    f"({reason})"))
            elif not state.done():
                state.cancel()
