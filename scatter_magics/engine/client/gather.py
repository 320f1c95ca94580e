"""Reading values back: from the client's own copies, from their holders, or through the scheduler.

A small value this client scattered is answered from its copy without a trip to the
loop thread (:func:`local_values`, on the calling thread); the rest is read by
:class:`Gathering` on the loop, from its holders (``direct``) or through the scheduler,
again after a recompute when a holder died mid-read.

>>> gathering = Gathering(link, worker_pool, view_of)                 # doctest: +SKIP
>>> serialized = loop.sync(gathering.read(states, "raise", True, no_progress))  # doctest: +SKIP
>>> gathering.values(serialized)                                       # doctest: +SKIP
{'int-5d41…': 5}
"""

from __future__ import annotations

from typing import Callable

from ...errors import FutureLostError
from ...progress_callback import Progress, no_progress
from ...progress_callback import counter as _counter
from ...structure import SKIP, substitute
from ...structure import gather_all as _all
from ..wire.peers import WorkerPool, fetch_from_holders
from ..wire.serialize import deserialize, unpickle_all
from .future import Future, settled

GATHER_ATTEMPTS = 3  # reads of keys recomputed after their holder died mid-gather


class Gathering:
    """Reads the values of finished keys for one client, on its loop thread.

    ``link`` is the client's link to its scheduler, ``workers`` its channels to the
    workers, ``view_of(ref)`` maps a shared-memory ``ShmRef`` for reading.
    """

    def __init__(self, link, workers: WorkerPool, view_of: Callable):
        self.link, self.workers, self.view_of = link, workers, view_of

    async def read(self, states: dict, errors: str, direct: bool, report: Progress) -> dict:
        """``{key: serialized value}`` for ``states`` (key → FutureState), once done.

        ``errors="skip"`` gives ``SKIP`` for a failed key, ``"raise"`` raises its error.
        """
        waiting = [s for s in states.values() if not s.done()]
        if waiting:
            finished = _counter(report, "wait", len(waiting))
            await _all(settled(s, lambda: finished(1)) for s in waiting)
        for attempt in range(GATHER_ATTEMPTS):
            try:
                return await self._read_once(states, errors, direct, report)
            except FutureLostError:
                # Its holder died mid-read and the scheduler is recomputing it (the key
                # went back to pending before this error reached us): wait, read again.
                if attempt == GATHER_ATTEMPTS - 1 or all(s.done() for s in states.values()):
                    raise

    async def _read_once(self, states: dict, errors: str, direct: bool, report: Progress) -> dict:
        await _all(settled(s) for s in states.values() if not s.done())
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
        report("transfer", 0, _known_total(states, wanted))  # (a bar says what is coming)
        fetched = await self._fetch(wanted, direct)
        if report is not no_progress:  # a sum over every value: only for someone watching
            nbytes = sum(getattr(s, "nbytes", 0) for s in fetched.values())
            report("transfer", nbytes, nbytes)
        out.update(fetched)
        return out

    async def _fetch(self, keys: list, direct: bool) -> dict:
        if direct:
            async def locate(keys):
                return await self.link.request({"op": "locations", "keys": keys})
            return await fetch_from_holders(keys, locate, self.workers.request)
        return await self.link.request({"op": "gather", "keys": keys})

    def values(self, serialized: dict) -> dict:
        """``{key: value}`` from :meth:`read`'s answer (``SKIP`` stays ``SKIP``)."""
        view_of = self.view_of
        return {k: s if s is SKIP else deserialize(s, view_of) for k, s in serialized.items()}


def _known_total(states: dict, keys: list) -> int | None:
    """The bytes of ``keys`` as the scheduler reported them, if it did for each."""
    sizes = [states[key].nbytes for key in keys]
    return None if None in sizes else sum(sizes)


def views_in(pool, segments) -> Callable:
    """``view_of(ref)`` for gathered values: ``pool`` (the cluster's shared memory, or
    None) maps its own segments, ``segments`` (a ``SegmentMapper``) other processes'."""
    def view_of(ref):
        if pool is not None and pool.owns(ref.name):
            return pool.view(ref)
        return segments.view(ref)
    return view_of


def flat_futures(futures) -> list | None:
    """``futures`` itself if it is a flat list of Futures (the usual scatter result)."""
    if type(futures) is list and all(type(f) is Future for f in futures):
        return futures
    return None


def local_values(futures, found: list, view_of: Callable):
    """``futures`` gathered from the client's own copies, if it has every one; else None.

    A copy is a small value's pickle or a payload in this process's shared memory, mapped
    by ``view_of``: no trip to the loop thread, the scheduler or a worker (an 8 MB array
    the client scattered: 0.7 -> 0.1 ms; Ray's ``get`` of its own object is local too).
    """
    pickles = []
    for f in found:
        state = f._state
        if state.status != "finished" or state.local is None:
            return None
        pickles.append(state.local)
    if all(type(p) is bytes for p in pickles):
        values = unpickle_all(pickles)
    else:
        values = [deserialize(p, view_of) for p in pickles]
    if type(futures) is list and found == futures:  # a flat list of futures: no walk
        return values
    return substitute(futures, Future, dict(zip([f.key for f in found], values)))
