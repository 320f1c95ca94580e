"""Scattered data that Dask lost, scattered again from where it came from.

Dask cannot recompute scattered data (distributed#3149): when every worker holding a
key dies (its nanny restarts it), the scheduler forgets the key and the client's future
turns ``cancelled``. :class:`Resender` keeps, per key, a source (``Backend.resend_from``:
the magics' variable) and the placement it was scattered with. When the plugin says a
key was lost (one message on a topic of its own, sent only on a loss: following the
per-key event stream instead cost every %scatter a trip to the scheduler and the
scheduler a scan of the client's keys), it reads the source again on a thread of its
own and scatters the value under the same key (one trip per source), so the old future
is ``finished`` again;
a gather that meets a lost future waits for that (:meth:`Resender.ensure`). A source
that no longer holds the value gives a ``FutureLostError`` saying why, which the gather
raises instead of Dask's ``FutureCancelledError``.

>>> resender = resender_for(client)                                # doctest: +SKIP
>>> resender.keep({"a-1f2e": source}, workers=None, broadcast=False)  # doctest: +SKIP
>>> resender.ensure([future], timeout=None)   # waits for a re-send under way  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import weakref

from ..errors import FutureLostError, UnknownWorkerError
from .events import DaskSubscription, hub_for
from .plugin import LOST_PREFIX

logger = logging.getLogger(__name__)

GONE = frozenset({"cancelled", "lost"})  # a future's status once Dask let its data go
WORKER_WAIT = 30.0  # s a re-send waits for a worker -w named (as the embedded scheduler)
# s a re-send waits for the client to hear that Dask forgot the key: the plugin's word
# comes just before Dask's "cancelled-keys", and a scatter sent between the two would
# be undone by it.
CANCEL_WAIT = 5.0
PRUNE_FROM = 64  # sources kept before released keys are looked for (not every %scatter)


class Resender:
    """One Dask client's re-sendable keys; owned by its backend, ended by :meth:`close`."""

    def __init__(self, client):
        self._client = weakref.ref(client)  # hangs off the client, not the reverse
        self.sources: dict = {}  # key -> (source, workers, broadcast)
        self.refused: dict = {}  # key -> the FutureLostError its source gave
        self._under_way: dict = {}  # key -> the concurrent Future of its re-send
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._subscription: DaskSubscription | None = None  # without the plugin: polled
        self._topic: str | None = None  # with it: the topic its loss messages come on
        self._listening = False
        self._prune_at = PRUNE_FROM
        self._entries: dict = {}  # each (source, placement, broadcast) once
        self._closing = threading.Event()  # ends a wait for workers when the client closes

    @property
    def client(self):
        return self._client()

    def keep(self, sources: dict, workers, broadcast: bool) -> None:
        """Re-send these keys (``{key: source}``) from their source if Dask loses them."""
        with self._lock:
            if len(self.sources) >= self._prune_at:  # amortized: O(1) a %scatter
                self._prune()
            placement = None if workers is None else tuple(  # hashable: sends are grouped
                [workers] if isinstance(workers, (str, tuple)) else workers)
            for key, source in sources.items():
                # One tuple per source and placement, not per key: what a %scatter leaves
                # here outlives it, and the garbage collector counts each such object.
                entry = (source, placement, broadcast)
                self.sources[key] = self._entries.setdefault(entry, entry)
                self.refused.pop(key, None)
        if not self._listening:
            self._listen()

    def _prune(self) -> None:
        """Forget the sources of keys released since (under the lock)."""
        futures = self.client.futures
        for key in [k for k in self.sources if k not in futures]:
            del self.sources[key]
            self.refused.pop(key, None)
        self._prune_at = max(PRUNE_FROM, 2 * len(self.sources))
        kept = set(self.sources.values())
        self._entries = {e: e for e in self._entries if e in kept}

    def _listen(self) -> None:
        self._listening = True
        client, hub = self.client, hub_for(self.client)
        if hub.install() == "plugin":
            self._topic = LOST_PREFIX + client.id
            client.subscribe_topic(self._topic, self._on_lost)
            return
        # No plugin: the poller's key events say "lost" (once a second, every key).
        self._subscription = DaskSubscription(hub, self._on_events)
        client.sync(hub.add, self._subscription)

    def _on_lost(self, event) -> None:
        """On the client's loop: the plugin says these keys were lost."""
        _, message = event  # (scheduler time, what the plugin logged)
        lost = [key for key in message.get("keys", ()) if key in self.sources]
        if lost and not self._closing.is_set():
            self.start(lost)

    def _on_events(self, events: list) -> None:
        """On the client's loop: start re-sending each lost key we have a source for."""
        lost = [e["key"] for e in events if e.get("event") == "key"
                and e.get("status") in GONE and e["key"] in self.sources]
        if lost and not self._closing.is_set():
            self.start(lost)

    # ------------------------------------------------------------ re-sending ---
    def start(self, keys: list) -> dict:
        """Re-send ``keys`` (those not under way already) in the background; their jobs."""
        with self._lock:
            new = [k for k in keys if k in self.sources and k not in self._under_way]
            if new:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        1, thread_name_prefix="scatter-magics-resend")
                job = self._pool.submit(self._resend, new)
                for key in new:
                    self._under_way[key] = job
            return {k: self._under_way[k] for k in keys if k in self._under_way}

    def _resend(self, keys: list) -> None:
        try:
            self._until_forgotten(keys)
            by_source: dict = {}
            for key in keys:
                by_source.setdefault(self.sources[key], []).append(key)
            for (source, workers, broadcast), source_keys in by_source.items():
                self._send(source, source_keys, workers, broadcast)
        finally:
            with self._lock:
                for key in keys:
                    self._under_way.pop(key, None)

    def _until_forgotten(self, keys: list) -> None:
        """Wait (at most :data:`CANCEL_WAIT`) for the client to hear Dask forgot ``keys``."""
        futures, deadline = self.client.futures, time.monotonic() + CANCEL_WAIT
        while any(getattr(futures.get(k), "status", "cancelled") != "cancelled" for k in keys):
            if time.monotonic() > deadline or self._closing.wait(0.005):
                return

    def _send(self, source, keys: list, workers, broadcast: bool) -> None:
        values = source.values(keys)
        refused = {k: v for k, v in values.items() if isinstance(v, FutureLostError)}
        self.refused.update(refused)
        items = {k: v for k, v in values.items() if k not in refused}
        if not items:
            return
        logger.info("re-sending %d lost key(s) from the notebook: %s", len(items),
                    ", ".join(map(str, list(items)[:5])))
        from .backend import DaskBackend  # (which imports this module)

        backend = DaskBackend(self.client)
        workers = list(workers) if workers is not None else None
        if workers is not None and not self._named_workers_back(backend, workers):
            self.refused.update(dict.fromkeys(items, FutureLostError(
                f"its only holder died, and no worker named {' or '.join(map(str, workers))} "
                f"came back within {WORKER_WAIT:g} s to take it (it was scattered with -w)")))
            return
        # The futures made here share the lost ones' state, which turns finished again.
        backend.scatter(items, workers=workers, broadcast=broadcast, direct=None, hash=True,
                        timeout=None)

    def _named_workers_back(self, backend, workers: list) -> bool:
        """Whether the workers ``-w`` named are there, waiting up to :data:`WORKER_WAIT`
        for a nanny to start them again (a restarted worker joins ~1-2 s after its death,
        while the key's loss is known at once)."""
        deadline = time.monotonic() + WORKER_WAIT
        while True:
            try:
                backend.resolve_workers(workers)
                return True
            except UnknownWorkerError:
                if time.monotonic() > deadline or self._closing.is_set():
                    return False
            self._closing.wait(0.2)  # then the scheduler's worker list again: a small request

    def ensure(self, futures: list, timeout: float | None) -> None:
        """Before a gather: wait for the re-sends of ``futures`` that Dask let go, starting
        those not under way; raise the ``FutureLostError`` of one that cannot be re-sent."""
        gone = [f.key for f in futures if f.status in GONE and f.key in self.sources]
        if not gone:
            return
        jobs = self.start([k for k in gone if k not in self.refused])
        done, pending = concurrent.futures.wait(set(jobs.values()), timeout)
        if pending:
            raise TimeoutError(f"scattering {len(jobs)} lost key(s) again did not finish "
                               f"within {timeout} s")
        for job in done:
            job.result()  # its own failure (no worker came back, say), as it is
        for key in gone:
            if key in self.refused:
                raise self.refused[key]

    def resends(self, key) -> bool:
        return key in self.sources

    def close(self) -> None:
        """Stop listening and re-sending (the client is closing)."""
        self._closing.set()
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()
        topic, self._topic = self._topic, None
        client = self.client
        if topic is not None and client is not None and client.status == "running":
            client.unsubscribe_topic(topic)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


_resenders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> Resender


def resender_for(client, make: bool = True) -> Resender | None:
    """The one :class:`Resender` of ``client`` (made on first use if ``make``)."""
    resender = _resenders.get(client)
    if resender is None and make:
        resender = _resenders[client] = Resender(client)
    return resender
