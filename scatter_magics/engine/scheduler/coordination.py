"""Named variables and queues kept by the scheduler for every client of the cluster
(Dask's ``Variable`` and ``Queue``; the client side is ``engine/client/coordination.py``).

A value is ``{"future": key}`` or ``{"value": serialized}``. A future's key is held on the
cluster by the variable or queue item (as if another client wanted it: the holder
``variable:<name>``, ``queue:<name>:<n>``), until it is replaced, taken or deleted; a
client that gets it then wants it itself. Waits (``get`` of an unset variable, of an
empty queue, a ``put`` into a full one) end with their timeout, or when the client gives
up (:class:`Waits`).

>>> variables = Variables(scheduler, waits)                       # doctest: +SKIP
>>> variables.ops()["variable-set"]("client-1", {"name": "x", "item": {"value": b"..."}})  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from typing import Callable


class Waits:
    """Requests that wait on the scheduler, by their ``wait_id``: a client that gives up
    (Ctrl-C) sends ``coordination-cancel`` and the wait here ends too."""

    def __init__(self):
        self._tasks: dict[str, asyncio.Task] = {}

    @contextlib.contextmanager
    def registered(self, msg: dict):
        wait_id = msg.get("wait_id")
        if wait_id is not None:
            self._tasks[wait_id] = asyncio.current_task()
        try:
            yield
        finally:
            if wait_id is not None:
                self._tasks.pop(wait_id, None)

    def cancel(self, client_id, msg) -> None:
        task = self._tasks.pop(msg.get("wait_id"), None)
        if task is not None:
            task.cancel()


async def take_turn(waiters: collections.deque, msg: dict, waits: Waits) -> bool:
    """Wait in line in ``waiters`` until :func:`wake` picks us: False after ``msg``'s
    timeout. A turn given just as the time ran out is taken; one given to a wait that
    was cancelled meanwhile (the client gave up) passes to the next in line."""
    waiter = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        with waits.registered(msg):
            await asyncio.wait_for(asyncio.shield(waiter), msg.get("timeout"))
    except asyncio.TimeoutError:
        pass
    except asyncio.CancelledError:
        if waiter.done() and not waiter.cancelled():
            wake(waiters)
        raise
    finally:
        if not waiter.done():
            waiter.cancel()
    return not waiter.cancelled()


def wake(waiters: collections.deque, result=True) -> bool:
    """Give ``result`` to the first waiter still waiting; False if there was none."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(result)
            return True
    return False


class Variables:
    """``{name: item}``, and who waits for a variable to be set."""

    def __init__(self, scheduler, waits: Waits):
        self.scheduler, self.state, self.waits = scheduler, scheduler.state, waits
        self.values: dict[str, dict] = {}
        self.waiting: dict[str, collections.deque] = {}

    def ops(self) -> dict[str, Callable]:
        return {"variable-set": self.set, "variable-get": self.get,
                "variable-delete": self.delete}

    def set(self, client_id, msg) -> None:
        name, item = msg["name"], msg["item"]
        holder = f"variable:{name}"
        if "future" in item and not self.state.want(holder, [item["future"]]):
            raise ValueError(f"key {item['future']!r} is not on the cluster (released?)")
        self._release(self.values.get(name), holder)
        self.values[name] = item
        waiters = self.waiting.pop(name, collections.deque())
        while wake(waiters):
            pass

    async def get(self, client_id, msg) -> dict:
        name = msg["name"]
        if name not in self.values:
            waiting = self.waiting.setdefault(name, collections.deque())
            if not await take_turn(waiting, msg, self.waits) or name not in self.values:
                raise TimeoutError(f"variable {name!r} was not set within "
                                   f"{msg.get('timeout')} s")
        return handed_to(self.state, client_id, self.values[name])

    def delete(self, client_id, msg) -> None:
        name = msg["name"]
        self._release(self.values.pop(name, None), f"variable:{name}")

    def _release(self, item: dict | None, holder: str) -> None:
        if item is not None and "future" in item:
            self.scheduler.apply(self.state.release(holder, [item["future"]]))


def handed_to(state, client_id, item: dict) -> dict:
    """``item`` as a client gets it: a future's key is now wanted by that client too,
    and its state travels with it."""
    if "future" not in item:
        return item
    found = state.want(client_id, [item["future"]])
    key = item["future"]
    return {"future": key, "state": found.get(key) or {
        "status": "cancelled", "type": None, "exception": None, "traceback": None}}


class Queues:
    """``{name: deque of (holder, item)}``, first in first out, optionally bounded."""

    def __init__(self, scheduler, waits: Waits):
        self.scheduler, self.state, self.waits = scheduler, scheduler.state, waits
        self.queues: dict[str, collections.deque] = {}
        self.getters: dict[str, collections.deque] = {}  # waiting for an item
        self.putters: dict[str, collections.deque] = {}  # waiting for room
        self._holders = itertools.count()

    def ops(self) -> dict[str, Callable]:
        return {"queue-put": self.put, "queue-get": self.get, "queue-qsize": self.qsize,
                "queue-close": self.close}

    async def put(self, client_id, msg) -> None:
        name, item, maxsize = msg["name"], msg["item"], msg.get("maxsize") or 0
        queue = self.queues.setdefault(name, collections.deque())
        while maxsize and len(queue) >= maxsize:
            putters = self.putters.setdefault(name, collections.deque())
            if not await take_turn(putters, msg, self.waits):
                raise TimeoutError(f"queue {name!r} stayed full for {msg.get('timeout')} s")
            queue = self.queues.setdefault(name, collections.deque())
        holder = f"queue:{name}:{next(self._holders)}"
        if "future" in item and not self.state.want(holder, [item["future"]]):
            raise ValueError(f"key {item['future']!r} is not on the cluster (released?)")
        queue.append((holder, item))
        wake(self.getters.get(name, collections.deque()))

    async def get(self, client_id, msg) -> list:
        """A list of items: one (``batch=False``), every one there (``True``), or ``n``."""
        name, batch = msg["name"], msg.get("batch", False)
        queue = self.queues.setdefault(name, collections.deque())
        if batch is True:
            count = len(queue)
        else:
            count = 1 if batch is False else int(batch)
        taken = []
        while len(taken) < count:
            if not queue:
                getters = self.getters.setdefault(name, collections.deque())
                try:
                    turn = await take_turn(getters, msg, self.waits)
                except asyncio.CancelledError:
                    self._put_back(name, taken)
                    raise
                if not turn:
                    self._put_back(name, taken)
                    raise TimeoutError(f"queue {name!r} was empty for {msg.get('timeout')} s")
                queue = self.queues.setdefault(name, collections.deque())
                continue
            taken.append(queue.popleft())
            wake(self.putters.get(name, collections.deque()))
        out = [handed_to(self.state, client_id, item) for _, item in taken]
        for holder, item in taken:
            if "future" in item:
                self.scheduler.apply(self.state.release(holder, [item["future"]]))
        return out

    def _put_back(self, name: str, taken: list) -> None:
        """Items a batch took before it gave up go back, first in line."""
        self.queues.setdefault(name, collections.deque()).extendleft(reversed(taken))
        if taken:
            wake(self.getters.get(name, collections.deque()))

    def qsize(self, client_id, msg) -> int:
        return len(self.queues.get(msg["name"], ()))

    def close(self, client_id, msg) -> None:
        for holder, item in self.queues.pop(msg["name"], ()):
            if "future" in item:
                self.scheduler.apply(self.state.release(holder, [item["future"]]))
