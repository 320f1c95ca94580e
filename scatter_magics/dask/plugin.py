"""The scheduler side of the Dask backend: key and worker events, and broadcasts that stay.

:class:`ScatterMagicsPlugin` runs inside a ``dask scheduler``. For each client that
subscribes (``scatter_magics_subscribe``) it compares, every ``interval`` seconds, the
state and placement of the keys that client holds with what it last sent, and sends the
difference as one batch of event records (``docs/internals.md``) with
``Scheduler.log_event`` on the topic ``scatter-magics-<client id>``; the client receives
it with ``Client.subscribe_topic`` on its own connection.

Placement is compared, not only followed through ``transition``: a scatter lands through
``Scheduler.update_data`` and a replicate through ``add_replica``, and neither makes a
transition (distributed ``scheduler.py`` ``update_data``). Keys pinned by
``scatter_magics_pin`` (``%scatter --broadcast``) are exempt from the Active Memory
Manager's ``ReduceReplicas`` and copied to every allowed worker that joins.

A task is ``running`` once its worker says it has run for 50 ms (:mod:`.starts`, the
workers' ``StartReporter``): the scheduler only knows ``processing``.

The plugin is a guest on a cluster the magics did not start. Each client of ours says
``scatter_magics_join`` after installing it and ``scatter_magics_leave`` on ``%cluster
stop``; when the last one leaves (or its connection drops), the plugin takes the workers'
``StartReporter`` and the output plugins (:mod:`.task_output`'s capture and relay) off
the cluster and, unless the cluster's own ``--preload`` installed it, removes itself (its
handlers, its periodic callback, its AMM policy). Workers that join later start as if we
had never been there.

This module imports only the standard library, tornado, distributed, :mod:`.starts`
(which imports the same), :mod:`.event_records` (its records, importing nothing) and the
output plugins' names: clients always ship it by value
(``cloudpickle.register_pickle_by_value``, :mod:`.install`), so they run on a scheduler
and workers that cannot import scatter_magics. ``dask scheduler --preload
scatter_magics.dask.preload`` installs it when the scheduler starts.

>>> client.register_plugin(ScatterMagicsPlugin())        # doctest: +SKIP
>>> client.sync(client.scheduler.scatter_magics_subscribe, client=client.id)["seq"]  # doctest: +SKIP
0
"""

from __future__ import annotations

import asyncio
import logging
import time

from distributed.active_memory_manager import ReduceReplicas
from distributed.diagnostics.plugin import SchedulerPlugin
from tornado.ioloop import PeriodicCallback

from .event_records import ENDED, key_event, key_status, worker_added, worker_metrics
from .starts import STARTED_OP, WORKER_PLUGIN_NAME
from .task_output import CAPTURE_NAME, RELAY_NAME

RECORDER_NAME = "scatter-magics-recorder"  # recorder.NAME: memory history and task stream

# What our clients put on the workers, taken off with us (each worker runs its teardown).
GUEST_WORKER_PLUGINS = (WORKER_PLUGIN_NAME, CAPTURE_NAME)

logger = logging.getLogger("scatter_magics.dask.plugin")

NAME = "scatter-magics"
TOPIC_PREFIX = "scatter-magics-"
LOST_PREFIX = "scatter-magics-lost-"  # + client id: its scattered keys a dead worker took
METRICS_INTERVAL = 1.0  # s between worker-metrics per client
SCAN_PER_TICK = 250  # keys whose placement is compared per tick, round robin (~0.3 ms)
REMEMBER_REMOVED = 300.0  # s a departed worker counts for telling "lost" from "released"
FILL_INTERVAL = 1.0  # s between checks that pinned keys are on every allowed worker
REMEMBER_GONE = 10_000  # keys let go lately, per client, repeated in a later snapshot

class _Subscriber:
    """What one client was last told, and where its round-robin check of keys stands."""

    __slots__ = ("seq", "signatures", "holders", "gone", "last_metrics", "scan")

    def __init__(self):
        self.seq = 0  # the number of the last batch sent
        self.signatures: dict[str, tuple] = {}  # key -> (status, replicas, nbytes) last sent
        self.holders: dict[str, frozenset] = {}  # key -> worker addresses last sent
        # key -> the released/lost event sent for it: a consumer that subscribes after
        # that batch still shows the key and must hear it from the snapshot.
        self.gone: dict[str, dict] = {}
        self.last_metrics = 0.0
        self.scan: list = []  # TaskStates still to check in this round of the scan


class ScatterMagicsPlugin(SchedulerPlugin):
    """Batches of key and worker events for subscribed clients; pinned broadcasts."""

    name = NAME
    idempotent = True

    def __init__(self, interval: float = 0.15, preloaded: bool = False):
        self.interval = interval
        self.preloaded = preloaded  # installed by the cluster's own --preload: it stays
        self.scheduler = None
        self.users: set[str] = set()  # ids of our clients that joined and are connected
        self._leaving: asyncio.Task | None = None  # taking ourselves off the cluster
        self._lock: asyncio.Lock | None = None  # made on the scheduler's loop, when needed
        self._taken_off = False
        self.subscribers: dict[str, _Subscriber] = {}  # client id -> what it was told
        self.pinned: dict[str, frozenset | None] = {}  # key -> allowed names (None: all)
        self.worker_events: list[dict] = []  # joins and leaves, for the next batch
        self.removed: dict[str, float] = {}  # workers that left lately -> when
        self.dirty: set = set()  # keys that made a transition since the last batch
        self.running: dict = {}  # key -> the worker that said it runs it (StartReporter)
        self.runs: dict = {}  # key -> how its task ran, until the next batch carries it
        self._callback: PeriodicCallback | None = None
        self._last_fill = 0.0
        self._filling: asyncio.Task | None = None

    # ---------------------------------------------------------------- lifecycle ---
    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        scheduler.handlers.update({
            "scatter_magics_subscribe": self.subscribe,
            "scatter_magics_unsubscribe": self.unsubscribe,
            "scatter_magics_pin": self.pin,
            "scatter_magics_touch": self.touch,
            "scatter_magics_workers": self.workers,
            "scatter_magics_join": self.join,
            "scatter_magics_leave": self.leave,
        })
        scheduler.stream_handlers[STARTED_OP] = self.started
        self._exempt_pinned_from_amm()
        self._callback = PeriodicCallback(self.tick, self.interval * 1000)
        self._callback.start()

    async def close(self) -> None:
        if self._callback is not None:
            self._callback.stop()
        if self._filling is not None:
            self._filling.cancel()
        if self.scheduler is None:
            return
        for name in [n for n in self.scheduler.handlers if n.startswith("scatter_magics_")]:
            del self.scheduler.handlers[name]
        self.scheduler.stream_handlers.pop(STARTED_OP, None)
        amm = self.scheduler.extensions.get("amm")
        for policy in list(amm.policies) if amm is not None else ():
            if type(policy) is KeepPinnedReplicas:  # unregistered: trim as Dask does
                amm.policies.remove(policy)
                amm.add_policy(ReduceReplicas())

    def _exempt_pinned_from_amm(self) -> None:
        """Swap the AMM's ReduceReplicas for one that skips pinned keys; others unchanged."""
        amm = self.scheduler.extensions.get("amm")
        if amm is None:
            return
        for policy in list(amm.policies):
            if type(policy) is ReduceReplicas:
                amm.policies.remove(policy)
                amm.add_policy(KeepPinnedReplicas(self.pinned))

    # ---------------------------------------------------------------- guests ---
    # Joining and taking off are serialized (``_guard``): a client may join while the
    # last one's take-off awaits the workers, and must then keep what it joined.
    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def join(self, client: str) -> int:
        """``client`` (one of ours) uses the plugin; returns how many do. Raises if this
        plugin was just taken off the cluster: the client registers a new one."""
        async with self._guard():
            if self._taken_off:
                raise RuntimeError("the scatter_magics plugin was just taken off this "
                                   "cluster; register it again")
            self.users.add(client)
            return len(self.users)

    async def leave(self, client: str) -> bool:
        """``client`` is done; the last one out takes what we installed off the cluster.

        Returns whether it did (so ``%cluster stop`` can say so)."""
        self.users.discard(client)
        self.unsubscribe(client)
        return await self._take_off()

    async def _take_off(self) -> bool:
        async with self._guard():
            if self.users or self._taken_off:  # someone joined meanwhile, or done already
                return False
            scheduler = self.scheduler
            for name in GUEST_WORKER_PLUGINS:
                if name in scheduler.worker_plugins:
                    await scheduler.unregister_worker_plugin(comm=None, name=name)
            if self.users:  # joined while the workers tore down: they register them again
                return False
            for name in (RELAY_NAME, RECORDER_NAME):  # the relay after the captures
                guest = scheduler.plugins.pop(name, None)
                if guest is not None:
                    await guest.close()
            if not self.preloaded and scheduler.plugins.get(NAME) is self:
                self._taken_off = True
                scheduler.remove_plugin(name=NAME)  # Dask's unregister does not call close()
                await self.close()
            return True

    def _last_user_gone(self, client: str) -> None:
        """A client of ours disconnected without leaving (closed in code, or died)."""
        if client in self.users:
            self.users.discard(client)
            if not self.users and (self._leaving is None or self._leaving.done()):
                self._leaving = asyncio.ensure_future(self._take_off())

    # ---------------------------------------------------------------- handlers ---
    def subscribe(self, client: str) -> dict:
        """Start sending batches to ``client``; return a snapshot and the last batch number."""
        new = client not in self.subscribers
        subscriber = self.subscribers.setdefault(client, _Subscriber())
        events = [worker_added(ws) for ws in self.scheduler.workers.values()]
        events += [worker_metrics(ws) for ws in self.scheduler.workers.values()]
        cs = self.scheduler.clients.get(client)
        wanted = set()
        for ts in cs.wants_what if cs is not None else ():
            events.append(key_event(ts, running=self.running))
            wanted.add(str(ts.key))
            if new:  # an existing subscriber's other consumers still need the next diff
                self._remember(subscriber, ts)
        events += [e for key, e in subscriber.gone.items() if key not in wanted]
        return {"seq": subscriber.seq, "events": events}

    def unsubscribe(self, client: str) -> None:
        self.subscribers.pop(client, None)

    def pin(self, keys: list, workers: list | None = None) -> None:
        """Keep a replica of ``keys`` on every worker (of ``workers``) while they live.

        ``workers`` (addresses or names) are remembered by *name*: a worker its nanny
        restarts comes back under the same name at a new address, and gets its replica
        back, as every worker does under an unrestricted broadcast.
        """
        allowed = frozenset(self._names(workers)) if workers else None
        for key in keys:
            self.pinned[key] = allowed

    def _names(self, workers: list) -> list[str]:
        by_address = self.scheduler.workers
        return [str(by_address[w].name) if w in by_address else str(w) for w in workers]

    def touch(self, keys: list) -> None:
        """Check ``keys`` in the next batch (a scatter landed: no transition says so)."""
        if self.subscribers:
            self.dirty.update(keys)

    def started(self, worker: str, keys: list) -> None:
        """``worker`` runs ``keys`` (from its StartReporter): they are ``running`` now."""
        tasks = self.scheduler.tasks
        for key in keys:
            key = _as_key(key)
            ts = tasks.get(key)
            if ts is None or ts.state != "processing" or ts.processing_on is None \
                    or ts.processing_on.address != worker:
                continue  # finished (or moved) meanwhile: its transition said so already
            self.running[key] = worker
            if self.subscribers:
                self.dirty.add(key)

    def workers(self) -> dict:
        """``{address: {name, nthreads, memory_limit, memory, nbytes, nkeys}}``, exact now."""
        return {ws.address: {"name": str(ws.name), "nthreads": ws.nthreads,
                             "memory_limit": ws.memory_limit or 0, "memory": ws.memory.process,
                             "nbytes": ws.nbytes, "nkeys": len(ws.has_what)}
                for ws in self.scheduler.workers.values()}

    # ---------------------------------------------------------------- hooks ---
    def add_worker(self, scheduler, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        if ws is not None:
            self.worker_events.append(worker_added(ws))

    def remove_worker(self, scheduler, worker: str, *, stimulus_id: str, **kwargs) -> None:
        ws = scheduler.workers.get(worker)
        name = str(ws.name) if ws is not None else worker
        self.worker_events.append({"event": "worker-removed", "address": worker, "name": name})
        self.removed[worker] = time.monotonic()
        for subscriber in self.subscribers.values():  # replicas there are gone, moved or not
            self.dirty.update(k for k, held in subscriber.holders.items() if worker in held)

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        # Runs inside the scheduler's transition loop: only note the key (and how an ended
        # task ran, for the task stream of a live %cluster --tasks).
        if self.subscribers:
            self.dirty.add(key)
            if start == "processing" and finish in ENDED and kwargs.get("startstops"):
                self.runs[key] = [kwargs.get("worker"), kwargs.get("thread"),
                                  kwargs["startstops"], ENDED[finish]]
        if self.running and start == "processing":
            self.running.pop(key, None)
        if finish == "forgotten":
            self.pinned.pop(key, None)

    def log_event(self, topic: str, msg) -> None:
        """Tell each client of ours which of its scattered keys a departed worker took:
        Dask logs ``lost-scattered-tasks`` on "all" just before it forgets them, while
        their wanters are still known. A topic of its own, written only on a loss."""
        if topic != "all" or type(msg) is not dict or msg.get("action") != "remove-worker":
            return
        lost: dict[str, list] = {}
        for key in msg.get("lost-scattered-tasks") or ():
            ts = self.scheduler.tasks.get(key)
            for cs in (ts.who_wants or ()) if ts is not None else ():
                if cs.client_key in self.users:
                    lost.setdefault(cs.client_key, []).append(key)
        for client, keys in lost.items():
            self.scheduler.log_event(LOST_PREFIX + client, {"keys": keys})

    def remove_client(self, scheduler, client: str) -> None:
        self.subscribers.pop(client, None)
        self._last_user_gone(client)

    # ---------------------------------------------------------------- the batches ---
    def tick(self) -> None:
        """Send each subscriber what changed; keep pinned keys on every allowed worker."""
        now = time.monotonic()
        joins_and_leaves, self.worker_events = self.worker_events, []
        dirty, self.dirty = self.dirty, set()
        for client, subscriber in list(self.subscribers.items()):
            events = list(joins_and_leaves)
            if now - subscriber.last_metrics >= METRICS_INTERVAL:
                subscriber.last_metrics = now
                events += [worker_metrics(ws) for ws in self.scheduler.workers.values()]
            events += self._key_changes(client, subscriber, dirty)
            if events:
                subscriber.seq += 1
                self.scheduler.log_event(TOPIC_PREFIX + client,
                                         {"seq": subscriber.seq, "events": events})
        self.runs.clear()  # each ended task was in this tick's batches (its key was dirty)
        cutoff = now - REMEMBER_REMOVED
        self.removed = {a: t for a, t in self.removed.items() if t > cutoff}
        if self.pinned and now - self._last_fill >= FILL_INTERVAL:
            self._last_fill = now
            self._fill_pinned()

    def _key_changes(self, client: str, subscriber: _Subscriber, dirty: set) -> list[dict]:
        """Events for the keys ``client`` holds whose status, placement or size changed.

        Keys that made a transition are checked at once. Placement can change without
        one (scatter, replicate), so every key is also checked in a round-robin scan of
        at most ``SCAN_PER_TICK`` keys a tick: its cost stays flat however many keys
        the client holds, and a round over N keys takes N / SCAN_PER_TICK ticks.
        """
        cs = self.scheduler.clients.get(client)
        if cs is None:
            return []
        events: list[dict] = []
        tasks = self.scheduler.tasks
        for key in dirty:
            ts = tasks.get(key)
            if ts is not None and cs in (ts.who_wants or ()):
                self._check(subscriber, ts, events)
            elif str(key) in subscriber.signatures:
                self._let_go(subscriber, str(key), events)
        if not subscriber.scan:
            subscriber.scan = list(cs.wants_what)
            wanted = {str(ts.key) for ts in subscriber.scan}
            for key in [k for k in subscriber.signatures if k not in wanted]:
                self._let_go(subscriber, key, events)
        batch = subscriber.scan[-SCAN_PER_TICK:]
        del subscriber.scan[-SCAN_PER_TICK:]
        for ts in batch:
            if ts.state != "forgotten" and cs in (ts.who_wants or ()):
                self._check(subscriber, ts, events)
        return events

    def _check(self, subscriber: _Subscriber, ts, events: list) -> None:
        key = str(ts.key)
        status = key_status(ts, self.running)
        signature = (status, len(ts.who_has or ()), ts.nbytes)
        if signature == subscriber.signatures.get(key):
            return
        if status != "finished" and self._lost(subscriber.holders.get(key)):
            status = "lost"  # its only holders died; Dask recomputes it if it can
        event = key_event(ts, status)
        if ts.key in self.runs:
            event["task"] = self.runs[ts.key]
        events.append(event)
        self._remember(subscriber, ts, signature)

    def _let_go(self, subscriber: _Subscriber, key: str, events: list) -> None:
        status = "lost" if self._lost(subscriber.holders[key]) else "released"
        event = {"event": "key", "key": key, "status": status, "workers": [],
                 "nbytes": None, "type": None, "processing_on": None}
        events.append(event)
        del subscriber.signatures[key], subscriber.holders[key]
        subscriber.gone[key] = event
        if len(subscriber.gone) > REMEMBER_GONE:  # the oldest first (dicts keep order)
            del subscriber.gone[next(iter(subscriber.gone))]

    def _remember(self, subscriber: _Subscriber, ts, signature: tuple | None = None) -> None:
        key = str(ts.key)
        subscriber.gone.pop(key, None)  # a hashed key scattered again
        subscriber.signatures[key] = signature or (key_status(ts, self.running),
                                                   len(ts.who_has or ()), ts.nbytes)
        subscriber.holders[key] = frozenset(ws.address for ws in ts.who_has or ())

    def _lost(self, holders) -> bool:
        return bool(holders) and all(address in self.removed for address in holders)

    # ---------------------------------------------------------------- broadcasts ---
    def _fill_pinned(self) -> None:
        """Copy each pinned key to the allowed running workers that lack it (one at a time)."""
        if self._filling is not None and not self._filling.done():
            return
        running = {ws.address: str(ws.name) for ws in self.scheduler.running}
        by_target: dict[frozenset, list] = {}
        for key, allowed in list(self.pinned.items()):
            ts = self.scheduler.tasks.get(key)
            if ts is None or ts.state != "memory" or not ts.who_has:
                continue
            targets = frozenset(a for a, name in running.items()
                                if allowed is None or name in allowed)
            if not targets <= {ws.address for ws in ts.who_has}:
                by_target.setdefault(targets, []).append(key)
        if by_target:
            self._filling = asyncio.ensure_future(self._replicate(by_target))

    async def _replicate(self, by_target: dict) -> None:
        for targets, keys in by_target.items():
            try:
                await self.scheduler.replicate(keys=keys, n=len(targets), workers=list(targets),
                                               delete=False, stimulus_id="scatter-magics-pin")
            except Exception:  # a worker left meanwhile: the next check tries again
                logger.info("re-replicating %d pinned keys failed", len(keys), exc_info=True)


def _as_key(key):
    """A key as the scheduler holds it: msgpack brings a tuple key as a list."""
    return tuple(_as_key(part) for part in key) if isinstance(key, list) else key


class KeepPinnedReplicas(ReduceReplicas):
    """The AMM's ``ReduceReplicas``, except for the keys in ``pinned`` (broadcasts)."""

    def __init__(self, pinned: dict):
        super().__init__()
        self.pinned = pinned

    def run(self):
        suggestions = super().run()
        reply = None
        while True:
            try:
                suggestion = suggestions.send(reply)
            except StopIteration:
                return
            reply = None if suggestion.ts.key in self.pinned else (yield suggestion)
