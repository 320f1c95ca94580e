"""Named ``Variable`` and ``Queue``, shared by every client of one cluster, as Dask's.

Their state lives on the scheduler (``engine/scheduler/coordination.py``); these objects
hold a name and a client (the current one by default, resolved on first use, so an object
pickled into a task finds the worker's client there). A value is a Future, whose key the
variable or queue then holds on the cluster, or any picklable object, kept by the
scheduler (``scatter`` large data and share its Future instead).

>>> x = Variable("x")                                             # doctest: +SKIP
>>> x.set(client.scatter(42))                                     # doctest: +SKIP
>>> Variable("x").get().result()       # from any client of the cluster  # doctest: +SKIP
42
"""

from __future__ import annotations

import asyncio

from ...current_client import get_client
from ...keys import random_token
from ..wire.serialize import deserialize
from .future import Future
from .task_options import parse_timedelta


class Shared:
    """What every primitive has: a name, a client found on first use, and its ops."""

    kind = "shared"

    def __init__(self, name=None, client=None):
        self.name = name or f"{self.kind}-{random_token()}"
        self._client = client

    @property
    def client(self):
        if self._client is None:
            try:
                self._client = get_client()
            except ValueError:
                raise RuntimeError(f"{type(self).__name__} {self.name!r} has no client: create "
                                   "a Client first (or pass client=)") from None
        return self._client

    def _ask(self, op: str, timeout=None, then=None, **fields):
        """The scheduler's answer to ``op`` on this name (blocking, or awaitable for an
        asynchronous client); ``then(answer)`` runs on the loop, as soon as it arrives."""
        msg = {"op": op, "name": self.name, **fields}
        if timeout is not None:
            msg["timeout"] = parse_timedelta(timeout)
        return self.client.sync(_request, self.client, msg, then)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"


async def _request(client, msg: dict, then):
    """``msg`` to the scheduler on ``client``'s loop; if this wait is cancelled (Ctrl-C),
    the scheduler is told to stop waiting too, so no lock is taken for nobody."""
    msg["wait_id"] = random_token()
    try:
        answer = await client.scheduler_link.request(msg)
    except asyncio.CancelledError:
        client.scheduler_link.send({"op": "coordination-cancel", "wait_id": msg["wait_id"]})
        raise
    return then(answer) if then is not None else answer


def pack(client, value) -> dict:
    """A value as it travels: a Future by its key, anything else as ``client`` sends
    values (pickled, unless its workers share this process)."""
    if isinstance(value, Future):
        if value.client is not client:
            raise ValueError(f"future {value.key!r} belongs to another client")
        return {"future": value.key}
    return {"value": client.codec.serialize(value)}


def unpack(client, item: dict):
    """A packed value back, in ``client`` (on its loop): a Future of that client, whose
    key the scheduler already counts as wanted by it, settled as the key is."""
    if "future" not in item:
        return deserialize(item["value"])
    future = Future(item["future"], client)
    client.refs.apply({"key": item["future"], **item["state"]})
    return future


class Variable(Shared):
    """A named value, shared by the clients of one cluster (Dask's ``Variable``)."""

    kind = "variable"

    def set(self, value, timeout="30 s", **kwargs):
        """Make ``value`` (a Future, or a picklable object) the variable's value."""
        return self._ask("variable-set", item=pack(self.client, value))

    def get(self, timeout=None, **kwargs):
        """The value; waits until one is set, ``TimeoutError`` after ``timeout`` s."""
        return self._ask("variable-get", timeout, lambda item: unpack(self.client, item))

    def delete(self):
        """Forget the variable (for every client); a Future it held is released."""
        return self._ask("variable-delete")

    def __reduce__(self):
        return Variable, (self.name,)


class Queue(Shared):
    """A named first-in first-out queue shared by the clients of one cluster
    (Dask's ``Queue``); ``maxsize`` > 0 bounds it (``put`` then waits for room)."""

    kind = "queue"

    def __init__(self, name=None, client=None, maxsize: int = 0):
        super().__init__(name, client)
        self.maxsize = maxsize

    def put(self, value, timeout=None, **kwargs):
        """Append ``value``; ``TimeoutError`` if the queue stays full ``timeout`` s."""
        return self._ask("queue-put", timeout, item=pack(self.client, value),
                         maxsize=self.maxsize)

    def get(self, timeout=None, batch=False, **kwargs):
        """The oldest value; waits for one (``TimeoutError`` after ``timeout`` s).
        ``batch=True``: every value there now (a list); ``batch=n``: the next ``n``."""
        return self._ask("queue-get", timeout, lambda items: self._values(items, batch),
                         batch=batch, maxsize=self.maxsize)

    def _values(self, items: list, batch):
        values = [unpack(self.client, item) for item in items]
        return values if batch is not False else values[0]

    def qsize(self, **kwargs) -> int:
        return self._ask("queue-qsize")

    def close(self):
        """Forget the queue (for every client); Futures in it are released."""
        return self._ask("queue-close")

    def __reduce__(self):
        return Queue, (self.name, None, self.maxsize)
