"""The client side of the Dask backend's event stream (``docs/internals.md``).

One :class:`EventHub` per ``distributed.Client`` receives the batches
:class:`~scatter_magics.dask.plugin.ScatterMagicsPlugin` logs on the client's own topic
(``Client.subscribe_topic``: no extra port, no extra authentication) and fans them out
to every :class:`DaskSubscription`. Each subscription first gets a snapshot, then every
batch numbered after it. A batch that went missing (a gap in the numbers; the plugin
sends worker metrics every second, so a gap shows within a second) makes the hub ask for
a new snapshot. Where the plugin cannot be installed, :class:`Poller` builds the same
records from ``who_has`` and the scheduler's identity once a second.

Callbacks run on the client's event-loop thread, as with the embedded engine.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Callable

from . import install as installing
from .plugin import TOPIC_PREFIX

logger = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # s, when the scheduler has no plugin
LINGER = 5.0  # s the plugin keeps sending after the last subscription closed (display churn)
# s between two looks at the client's status while anyone subscribes: a Dask client that
# loses its scheduler says so only by its status ("connecting", then "closed"), and every
# live view must say "not live" within 5 s of the cluster going away (issue 21).
STATUS_CHECK = 0.5


class DaskSubscription:
    """One callback receiving batches of events; ``close()`` stops it (any thread)."""

    def __init__(self, hub: "EventHub", callback: Callable[[list], None]):
        self.hub, self.callback = hub, callback
        self.since: int | None = None  # the snapshot's batch number, once it was delivered
        self.queue: list[tuple[int, list]] = []  # batches that came before the snapshot

    def deliver(self, events: list) -> None:
        try:
            self.callback(events)
        except Exception:  # one broken consumer must not starve the others
            logger.exception("an event subscriber failed on a batch of %d events", len(events))

    def close(self) -> None:
        self.hub.remove(self)


class EventHub:
    """The plugin's topic for one client, fanned out to its subscriptions."""

    def __init__(self, client):
        self._client = weakref.ref(client)  # the hub hangs off the client, not the reverse
        self.topic = TOPIC_PREFIX + client.id
        self.subscriptions: list[DaskSubscription] = []
        self.mode: str | None = None  # "plugin" or "poll", once decided
        self.install_error: BaseException | None = None
        self._lock: asyncio.Lock | None = None  # plugin RPCs in order, on the loop thread
        self._listening = False
        self._last_seq: int | None = None
        self._poller: Poller | None = None
        self._linger = None
        self._status_check = None  # a PeriodicCallback while anyone subscribes
        self._tasks: set[asyncio.Task] = set()  # resyncs and unsubscribes under way

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def client(self):
        return self._client()

    # ------------------------------------------------------------ installing ---
    def install(self) -> str:
        """Put our plugins on the cluster (once; blocking, not on the loop thread); return
        the mode: ``"plugin"``, or ``"poll"`` where the scheduler refused it. The workers'
        (``StartReporter``) only adds ``running``, and the output plugins only bring what
        tasks print (``task_output.py``): a cluster that refuses them still streams
        (:mod:`.install`)."""
        if self.mode is None:
            self.mode, self.install_error = installing.install(self.client)
            if self.mode == "plugin":
                from .views import install_sync

                install_sync(self.client)  # memory history and task stream from now on
        return self.mode

    def leave(self) -> bool:
        """The magics are done with this client: say so, so the last client of ours takes
        our plugins off the cluster; True if they are gone (blocking)."""
        client = self.client
        if self.mode != "plugin" or client is None or client.status != "running":
            return False
        self.mode = None  # a later use installs again
        return installing.leave(client)

    # ------------------------------------------------------------ subscribing ---
    async def add(self, subscription: DaskSubscription) -> None:
        """Deliver a snapshot to ``subscription``, then keep it fed (on the loop thread)."""
        self.subscriptions.append(subscription)
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._watch_status()
        if self.mode == "poll":
            self._poller = self._poller or Poller(self)
            await self._poller.snapshot_for(subscription)
            return
        if not self._listening:
            self.client.subscribe_topic(self.topic, self._on_batch)
            self._listening = True
        async with self._rpc_lock():
            reply = await self.client.scheduler.scatter_magics_subscribe(client=self.client.id)
        self._start(subscription, reply)

    def _rpc_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _start(self, subscription: DaskSubscription, reply: dict) -> None:
        if self._last_seq is None or reply["seq"] > self._last_seq:
            self._last_seq = reply["seq"]
        subscription.deliver(self._complete(reply["events"]))
        subscription.since = reply["seq"]
        queued, subscription.queue = subscription.queue, []
        for seq, events in queued:
            if seq > subscription.since:
                subscription.deliver(events)

    def _on_batch(self, event) -> None:
        _, message = event  # (scheduler time, what the plugin logged)
        seq, events = message["seq"], self._complete(message["events"])
        if self._last_seq is not None and seq > self._last_seq + 1:
            logger.info("batch %d after %d: asking for a new snapshot", seq, self._last_seq)
            self._spawn(self._resync())
        self._last_seq = max(seq, self._last_seq or 0)
        self.publish(events, seq)

    def _complete(self, events) -> list:
        """Lists where msgpack made tuples; the type of scattered data, which only the
        client knows (``Scheduler.update_data`` is not told types)."""
        futures = self.client.futures
        out = []
        for event in events:
            event = dict(event)
            if "workers" in event:
                event["workers"] = list(event["workers"])
            if event.get("event") == "key" and event.get("type") is None:
                state = futures.get(event["key"])
                event["type"] = type_name(getattr(state, "type", None))
            if event.get("task"):  # [worker, thread, startstops, status]: a task ended
                event["task"] = _task_record(event["key"], event["task"])
            out.append(event)
        return out

    def publish(self, events: list, seq: int) -> None:
        for subscription in list(self.subscriptions):
            if subscription.since is None:
                subscription.queue.append((seq, events))
            elif seq > subscription.since:
                subscription.deliver(events)

    async def _resync(self) -> None:
        client = self.client
        if client is None or client.status != "running" or not self.subscriptions:
            return
        async with self._rpc_lock():
            reply = await client.scheduler.scatter_magics_subscribe(client=client.id)
        for subscription in list(self.subscriptions):
            self._start(subscription, reply)

    def touch(self, keys: list) -> None:
        """Have the plugin check ``keys`` in its next batch, if anyone is listening.

        After a scatter: ``Scheduler.update_data`` makes no transition, and the plugin's
        round-robin scan of a large collection would find the new placement only later.
        Fire and forget, on the loop thread; nothing at all when nobody subscribed.
        """
        client = self.client
        if self.mode == "plugin" and self.subscriptions and client is not None:
            client.loop.add_callback(self._touch, list(keys))

    async def _touch(self, keys: list) -> None:
        try:
            await self.client.scheduler.scatter_magics_touch(keys=keys)
        except Exception:  # only a later update is lost; the scan still finds it
            logger.info("could not ask for a prompt update of %d keys", len(keys), exc_info=True)

    # ------------------------------------------------------------ unsubscribing ---
    def remove(self, subscription: DaskSubscription) -> None:
        """Drop ``subscription`` (any thread); the plugin stops sending a while later."""
        client = self.client
        if client is None or client.status in ("closing", "closed"):
            if subscription in self.subscriptions:
                self.subscriptions.remove(subscription)
            return
        client.loop.add_callback(self._remove, subscription)

    def _remove(self, subscription: DaskSubscription) -> None:
        if subscription in self.subscriptions:
            self.subscriptions.remove(subscription)
        if not self.subscriptions and self._linger is None:
            # Not at once: a display subscribes and closes again and again, and a
            # subscription costs the scheduler a scan of this client's keys per batch.
            loop = asyncio.get_running_loop()
            self._linger = loop.call_later(LINGER, lambda: self._spawn(self._idle()))

    async def _idle(self) -> None:
        self._linger = None
        client = self.client
        if self.subscriptions or client is None or client.status != "running":
            return
        if self._status_check is not None:  # nobody to tell
            self._status_check.stop()
            self._status_check = None
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        if self._listening:
            client.unsubscribe_topic(self.topic)
            self._listening, self._last_seq = False, None
            async with self._rpc_lock():
                await client.scheduler.scatter_magics_unsubscribe(client=client.id)

    def _watch_status(self) -> None:
        if self._status_check is None:
            from tornado.ioloop import PeriodicCallback

            self._status_check = PeriodicCallback(self._check_status, STATUS_CHECK * 1000)
            self._status_check.start()

    def _check_status(self) -> None:
        client = self.client
        if client is not None and client.status == "running":
            return
        address = client.scheduler.address if client is not None else "its scheduler"
        self.close(reason=f"the connection to the scheduler at {address} was lost "
                          f"(the cluster stopped, or its scheduler died)")

    def close(self, reason: str | None = None) -> None:
        """The client is closing (or lost its scheduler): tell every subscriber, last,
        and why (on the loop thread)."""
        closed = {"event": "closed", **({"reason": reason} if reason else {})}
        for subscription in list(self.subscriptions):
            subscription.deliver([closed])
        self.subscriptions.clear()
        if self._status_check is not None:
            self._status_check.stop()
            self._status_check = None
        if self._poller is not None:
            self._poller.stop()
        if self._linger is not None:
            self._linger.cancel()
        for task in list(self._tasks):
            task.cancel()


def _task_record(key: str, raw: list) -> dict | None:
    """The task-stream record of a task that ended, from the plugin's raw run."""
    from dask.utils import key_split

    from ..task_stream import from_dask

    worker, thread, startstops, status = raw
    return from_dask(key, key_split(key), worker, thread, startstops, status)


class Poller:
    """The same event records without the plugin: ``who_has`` and identity, once a second."""

    def __init__(self, hub: EventHub):
        from tornado.ioloop import PeriodicCallback

        self.hub = hub
        self.keys: dict[str, dict] = {}  # key -> its last key event
        self.workers: dict[str, dict] = {}  # address -> its worker-added event
        self.seq = 0
        self._callback = PeriodicCallback(self._tick, POLL_INTERVAL * 1000)
        self._callback.start()

    def stop(self) -> None:
        self._callback.stop()

    async def snapshot_for(self, subscription: DaskSubscription) -> None:
        await self._poll()
        subscription.since = self.seq
        subscription.deliver([*self.workers.values(), *self.keys.values()])

    async def _tick(self) -> None:
        client = self.hub.client
        if client is not None and client.status == "running":
            await self._poll()

    async def _poll(self) -> None:
        client = self.hub.client
        identity = await client.scheduler.identity(n_workers=-1)
        events = self._worker_changes(identity.get("workers", {}))
        futures = dict(client.futures)  # key -> FutureState, the client's own view
        keys = [k for k in futures]
        who_has = await client.scheduler.who_has(keys=keys) if keys else {}
        nbytes = await client.scheduler.nbytes(keys=keys) if keys else {}
        now = {}
        for key, state in futures.items():
            typ = getattr(state, "type", None)
            now[str(key)] = {"event": "key", "key": str(key), "status": state.status,
                             "workers": sorted(who_has.get(key) or ()),
                             "nbytes": nbytes.get(key),
                             "type": getattr(typ, "__name__", typ)}
        events += [e for k, e in now.items() if self.keys.get(k) != e]
        events += [{**e, "status": "released", "workers": []}
                   for k, e in self.keys.items() if k not in now]
        self.keys = now
        if events:
            self.seq += 1
            self.hub.publish(events, self.seq)

    def _worker_changes(self, workers: dict) -> list[dict]:
        events = []
        for address, w in workers.items():
            if address not in self.workers:
                self.workers[address] = {"event": "worker-added", "address": address,
                                         "name": str(w.get("name", address)),
                                         "nthreads": w.get("nthreads", 0),
                                         "memory_limit": w.get("memory_limit") or 0}
                events.append(self.workers[address])
        for address in [a for a in self.workers if a not in workers]:
            events.append({"event": "worker-removed", "address": address,
                           "name": self.workers.pop(address)["name"]})
        for address, w in workers.items():
            metrics = w.get("metrics", {})
            events.append({"event": "worker-metrics", "address": address,
                           "memory": metrics.get("memory", 0),
                           "nbytes": metrics.get("managed_bytes", 0)})
        return events


def type_name(typ) -> str | None:
    """``'DataFrame'`` for a class (what a Dask future's ``type`` holds); text as it is."""
    return getattr(typ, "__name__", typ)


_hubs: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def hub_for(client) -> EventHub:
    """The one hub of ``client`` (made on first use)."""
    hub = _hubs.get(client)
    if hub is None:
        hub = _hubs[client] = EventHub(client)
    return hub
