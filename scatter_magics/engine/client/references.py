"""Which keys the client's Futures still hold, and releasing the others in batches.

A mixin of :class:`~scatter_magics.engine.client.client.Client`. A Future counts as one
reference to its key; when the last one goes (``Future.__del__``, from any thread,
even inside the garbage collector) the key is released, batched with the others
dropped within ``RELEASE_BATCH_DELAY``, as Dask batches them.
"""

from __future__ import annotations

import concurrent.futures
from typing import Callable

from .future import Future, FutureState

RELEASE_BATCH_DELAY = 0.005  # s; dropped futures are released together, as Dask batches them
RETRACKED = frozenset({"cancelled", "lost", "error"})  # a new Future for these starts afresh


class References:
    """Reference counts of keys held by Futures, and their release."""

    def _track(self, key: str, state: FutureState | None = None) -> FutureState:
        with self._lock:
            existing = self._states.get(key)
            if existing is None or existing.status in RETRACKED:
                existing = self._states[key] = state or FutureState(key)
            self._refcount[key] = self._refcount.get(key, 0) + 1
            return existing

    def _track_many(self, keys) -> list[FutureState]:
        """``_track`` for many keys under one hold of the lock."""
        states, refcount, tracked = self._states, self._refcount, []
        with self._lock:
            for key in keys:
                existing = states.get(key)
                if existing is None or existing.status in RETRACKED:
                    existing = states[key] = FutureState(key)
                refcount[key] = refcount.get(key, 0) + 1
                tracked.append(existing)
        return tracked

    def _untrack(self, key: str) -> None:
        # Called from Future.__del__, which the garbage collector may run anywhere,
        # even inside _track with self._lock held: so no lock here, only an atomic
        # deque append; the loop thread does the counting.
        self._dropped.append(key)
        if not self._flush_scheduled and self.status == "running":
            self._flush_scheduled = True
            # One wake of the loop per batch, not per dropped future: a loop of small
            # scatters would otherwise pay a thread hand-over and a worker message each.
            self.loop.call_soon(self.loop.loop.call_later, RELEASE_BATCH_DELAY,
                                self._flush_releases)

    def _flush_releases(self) -> None:
        self._flush_scheduled = False
        released, held_back = [], []
        with self._lock:
            while self._dropped:
                key = self._dropped.popleft()
                if self._ahead.in_flight(key):  # not recorded yet: released after that
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
            self.loop.loop.call_later(RELEASE_BATCH_DELAY, self._flush_releases)
        if released and not self._link.closed:
            self._link.send({"op": "release-keys", "keys": released})

    def _add_done_callback(self, future: Future, fn: Callable) -> None:
        self._check_open()
        if self._callback_executor is None:
            self._callback_executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="future-callbacks")
        executor = self._callback_executor
        self.loop.call_soon(future._state.on_done, lambda state: executor.submit(fn, future))
