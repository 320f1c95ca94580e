"""``Client.gather``: values back from the workers, or from the client's own copies.

A mixin of :class:`~scatter_magics.engine.client.client.Client`. A small value this client
scattered is answered from its copy without a trip to the loop thread; the rest is read
from its holders (``direct``) or through the scheduler, again after a recompute when a
holder died mid-read.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from ...errors import FutureLostError
from ...progress import Progress, no_progress
from ...progress import counter as _counter
from ...structure import SKIP, find_futures, substitute
from ...structure import gather_all as _all
from ..wire.loop import ready, wants_awaitable
from ..wire.peers import fetch_from_holders
from ..wire.serialize import deserialize, unpickle_all
from .future import Future, FutureState, remote_exception
from .gc_pause import paused_collection

GATHER_ATTEMPTS = 3  # reads of keys recomputed after their holder died mid-gather


class Gathering:
    """``gather`` and the waits behind a Future's ``result()`` and ``exception()``."""

    def gather(self, futures, errors: str = "raise", direct: bool | None = None,
               asynchronous: bool | None = None, timeout: float | None = None,
               progress: Progress | None = None):
        """Bring the values of ``futures`` back, in the same (nested) structure.

        ``errors="raise"`` re-raises a failed task's own exception; ``"skip"`` drops
        failed futures from the result. ``timeout`` bounds the wait (Dask has none).
        ``progress(stage, done, total)``: as for :meth:`scatter` (stages ``wait``, in
        futures, and ``transfer``, in bytes).
        """
        self._check_open()
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        found = _flat(futures)
        if found is None:
            found = find_futures(futures, Future)
        for f in found:
            if f.client is not self:
                raise ValueError(f"future {f.key!r} belongs to another client")
        # Paused for the values made here only: waiting on the loop may take minutes.
        with paused_collection(len(found)):
            local = _local_values(futures, found)
        if local is not None:  # every value is here already: no loop, no worker
            return ready(local) if wants_awaitable(self, asynchronous) else local
        states = {f.key: f._state for f in found}
        coro = self._within(self._gather(states, errors, direct, progress or no_progress),
                            timeout)
        return self._run(coro, asynchronous, then=lambda serialized: substitute(
            futures, Future, {k: s if s is SKIP else deserialize(s, self._view_of)
                              for k, s in serialized.items()}))

    async def _gather(self, states: dict, errors: str, direct, report: Progress) -> dict:
        waiting = [s for s in states.values() if not s.done()]
        if waiting:
            finished = _counter(report, "wait", len(waiting))
            await _all(self._until_done(s, lambda: finished(1)) for s in waiting)
        for attempt in range(GATHER_ATTEMPTS):
            try:
                return await self._gather_once(states, errors, direct, report)
            except FutureLostError:
                # Its holder died mid-read and the scheduler is recomputing it (the key
                # went back to pending before this error reached us): wait, read again.
                if attempt == GATHER_ATTEMPTS - 1 or all(s.done() for s in states.values()):
                    raise

    async def _gather_once(self, states: dict, errors: str, direct, report: Progress) -> dict:
        await _all(self._until_done(s) for s in states.values() if not s.done())
        wanted, out = [], {}
        for key, state in states.items():
            if state.status == "finished" and state.local is not None:
                out[key] = state.local
            elif state.status == "finished":
                wanted.append(key)
            elif errors == "skip":
                out[key] = SKIP
            else:
                state.raise_if_failed()
        if not wanted:
            return out
        report("transfer", 0, None)
        if self._direct(direct):
            async def locate(keys):
                return await self._link.request({"op": "locations", "keys": keys})
            fetched = await fetch_from_holders(wanted, locate, self._workers.request)
        else:
            fetched = await self._link.request({"op": "gather", "keys": wanted})
        if report is not no_progress:  # a sum over every value: only for someone watching
            nbytes = sum(getattr(s, "nbytes", 0) for s in fetched.values())
            report("transfer", nbytes, nbytes)
        out.update(fetched)
        return out

    async def _until_done(self, state: FutureState, then: Callable[[], None] | None = None) -> None:
        if not state.done():
            done = asyncio.get_running_loop().create_future()
            state.on_done(lambda s: done.done() or done.set_result(None))
            await done
        if then is not None:
            then()

    def _gather_async(self, future: Future):
        return self.gather(future, asynchronous=True)

    def _future_exception(self, future: Future, timeout):
        self._check_open()
        coro = self._within(self._until_done(future._state), timeout)
        state = future._state

        def exception(_):
            if state.status == "error":
                return remote_exception(state.exception, state.traceback)
            return state.exception if state.status in ("lost", "cancelled") else None
        return self._run(coro, None, then=exception)


def _flat(futures) -> list | None:
    """``futures`` itself if it is a flat list of Futures (the usual scatter result)."""
    if type(futures) is list and all(type(f) is Future for f in futures):
        return futures
    return None


def _local_values(futures, found: list):
    """``futures`` gathered from the client's own copies, if it has every one; else None."""
    pickles = []
    for f in found:
        state = f._state
        if state.status != "finished" or state.local is None:
            return None
        pickles.append(state.local)
    values = unpickle_all(pickles)
    if type(futures) is list and found == futures:  # a flat list of futures: no walk
        return values
    return substitute(futures, Future, dict(zip([f.key for f in found], values)))
