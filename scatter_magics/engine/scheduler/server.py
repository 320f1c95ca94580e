"""The scheduler's I/O: connections from workers and clients around :class:`SchedulerState`.

Runs on an event-loop thread. Workers and remote clients connect over TCP
(:class:`~scatter_magics.engine.wire.comm.Server`); a client in the same process talks to
it through :meth:`Scheduler.local_client`, with no socket in between.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable

from ...errors import CommClosedError, WorkerUnresponsiveError
from ...keys import key_text, random_token
from ..wire import inheritance
from ..wire.comm import Channel, Server
from ..wire.peers import fetch_from_holders
from .cluster_ops import ClusterOps
from .coordination import Queues, Variables, Waits
from .locks import Events, Semaphores
from .outgoing import merge_deletes, send_one as _send
from .pending_acks import PendingAcks
from .resend_ops import ResendOps
from .scatter_ops import ScatterOps
from .state import SchedulerState
from .view_ops import ViewOps
from .worker_book import UNRESPONSIVE_AFTER

logger = logging.getLogger(__name__)

HEARTBEAT_CHECK_INTERVAL = 0.5  # s between checks for silent workers
MAX_REASON = 200  # characters of a close-cluster's reason kept: it is shown in widgets


class LocalClientLink:
    """How the scheduler reaches a client living in its own process: a callback."""

    def __init__(self, deliver: Callable[[dict], None]):
        self.send = deliver


class Scheduler:
    """Owns a :class:`SchedulerState`, the server socket, and the connections.

    Its parts: ``state`` (pure bookkeeping), ``scatters`` (the scatter ops,
    :class:`ScatterOps`), ``pending_acks`` (what a no-wait scatter sent, until stored),
    ``resend_ops`` (lost data clients send again), ``views`` (what the views ask),
    ``cluster`` (cluster-wide ops, :class:`ClusterOps`) and the coordination primitives
    (``variables``, ``queues``, ``semaphores``, ``events``, whose waits are ``waits``).
    """

    def __init__(self, secret: str):
        self.secret = secret
        self.state = SchedulerState()
        self.pending_acks = PendingAcks(self)  # what a no-wait scatter sent, until stored
        self.scatters = ScatterOps(self)  # choosing workers, carrying data, recording it
        self.resend_ops = ResendOps(self)  # lost data sent again by clients; gathers wait
        self.views = ViewOps(self)  # what the views show: info, overview, keys, history
        self.cluster = ClusterOps(self)  # retries, run_on_scheduler, uploads, restart, moves
        self.waits = Waits()
        self.variables, self.queues = Variables(self, self.waits), Queues(self, self.waits)
        self.semaphores, self.events = Semaphores(self, self.waits), Events(self, self.waits)
        self.server = Server(secret, self._channel_handlers())
        self.address = ""
        self.worker_channels: dict[str, Channel] = {}
        self.clients: dict[str, object] = {}  # client id → Channel or LocalClientLink
        self.subscribers: set[str] = set()
        self.on_worker_removed: list[Callable[[str, int], None]] = []
        # Workers silent for worker_ttl s are handed to these (the LocalCluster kills and
        # replaces them); None: wait for a frozen worker however long it takes.
        self.worker_ttl: float | None = None
        self.on_worker_expired: list[Callable[[str, int], None]] = []
        self._expired: set[str] = set()
        self._worker_arrived = asyncio.Event()
        self.on_key_forgotten: list[Callable[[str], None]] = []  # e.g. the shared-memory pool
        self.on_close_requested: list[Callable[[], None]] = []  # the owning LocalCluster
        self.exit_reason: Callable[[int], str | None] = lambda pid: None  # how a pid ended
        # What a silent worker's process does ("busy", "frozen", "gone"): its owner reads
        # /proc (cluster/liveness.py); None: silence alone says unresponsive.
        self.process_state: Callable[[int], str] | None = None
        self.closing = False
        # What clients are told when this scheduler closes (a close-cluster says its own).
        self.closing_reason = (f"the cluster was closed by the process that owns it, "
                               f"pid {os.getpid()}")
        self._heartbeat_watch: asyncio.Task | None = None
        self.on_keys_recorded: list[Callable[[list], None]] = []  # shared keys now on workers
        self.info_extras: dict[str, Callable[[], object]] = {}  # more scheduler_info() entries
        self._held: list | None = None  # what a worker's batch made, sent when it is done

    @property
    def workers(self) -> dict:
        """``{address: WorkerInfo}``: what ``run_on_scheduler(f)`` finds as Dask's
        ``dask_scheduler.workers`` (read it; the state changes it)."""
        return self.state.workers

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.address = await self.server.listen(host, port)
        self._heartbeat_watch = asyncio.ensure_future(self._watch_heartbeats())
        return self.address

    async def _watch_heartbeats(self) -> None:
        """Mark workers that stopped sending heartbeats unresponsive (see SchedulerState)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_CHECK_INTERVAL)
            # A sample a second of what the heartbeats brought (history.py): one tuple.
            self.state.history.tick(time.time(), slack=HEARTBEAT_CHECK_INTERVAL)
            now = time.monotonic()
            # If this loop itself was stalled, the workers' heartbeats may be waiting
            # unread in our sockets: judge nobody this round.
            if now - last < 2 * HEARTBEAT_CHECK_INTERVAL:
                silent_before = self._unresponsive()
                self.apply(self.state.check_heartbeats(now, busy=self._busy(now)))
                for address in self._unresponsive() - silent_before:
                    self._give_up_waiting_on(address)
                self._expire_silent(now)
            self.apply(self.state.balance())  # work stealing's tick (see stealing.py)
            last = now

    def _busy(self, now: float) -> set[str]:
        """The silent workers whose process runs: a task holds the GIL, so no heartbeat
        gets out, but it computes. Looked at from a second of silence on, so by the
        time silence counts (UNRESPONSIVE_AFTER) two looks compare CPU times."""
        if self.process_state is None:
            return set()
        return {a for a, ws in self.state.workers.items()
                if now - ws.last_seen > 2 * HEARTBEAT_CHECK_INTERVAL and ws.pid
                and self.process_state(ws.pid) == "busy"}

    def _expire_silent(self, now: float) -> None:
        """Hand over workers silent for longer than ``worker_ttl``, once each.

        As Dask's ``distributed.scheduler.worker-ttl``: a worker frozen for minutes
        holds data and gathers hostage; ending it turns the wait into a replacement and
        a recompute (or a clear ``FutureLostError``). The grace is long because a worker
        stuck in a C call that holds the GIL is silent too, and may yet finish.
        """
        if self.worker_ttl is None:
            return
        for address, ws in list(self.state.workers.items()):
            if (ws.status == "unresponsive" and address not in self._expired
                    and now - ws.last_alive > self.worker_ttl):  # busy time is not silence
                self._expired.add(address)
                logger.warning("worker %s (%s) sent no heartbeat for %g s: ending it",
                               ws.name, address, self.worker_ttl)
                for callback in self.on_worker_expired:
                    callback(address, ws.pid)

    def _unresponsive(self) -> set[str]:
        return {a for a, ws in self.state.workers.items() if ws.status == "unresponsive"}

    def _give_up_waiting_on(self, address: str) -> None:
        """Fail what waits on a worker that went silent, here and in every client.

        A scatter placed on it just before it froze then goes to another worker (see
        placing.py) instead of hanging; a gather reads another replica.
        """
        ws = self.state.workers[address]
        error = WorkerUnresponsiveError(f"worker {ws.name} ({address}) stopped answering "
                                        f"(no heartbeat for {UNRESPONSIVE_AFTER:g} s)")
        channel = self.worker_channels.get(address)
        if channel is not None:
            channel.fail_pending(error)
        for link in list(self.clients.values()):
            _send(link, {"op": "worker-unresponsive", "address": address, "error": error})

    def discard_unrecorded(self, by_worker: dict) -> None:
        """Delete keys sent to workers that the scheduler does not record there."""
        self.apply([(("worker", address), {"op": "delete-keys", "keys": keys})
                    for address, keys in self.state.unrecorded(by_worker).items()])

    def broadcast_to_workers(self, msg: dict) -> None:
        for channel in list(self.worker_channels.values()):
            _send(channel, msg)

    def close(self) -> None:
        self.closing = True
        # Said before the connections close: a client's widgets show why ("not live: ...").
        for link in list(self.clients.values()):
            _send(link, {"op": "scheduler-closing", "reason": self.closing_reason})
        if self._heartbeat_watch is not None:
            self._heartbeat_watch.cancel()
        self.broadcast_to_workers({"op": "close"})
        self.server.close()

    # ------------------------------------------------------------ plumbing ---
    def _channel_handlers(self) -> dict:
        handlers = {
            "register-worker": self._register_worker,
            "register-client": self._register_client,
            "task-finished": self._on_worker(lambda a, m: self.state.task_finished(
                a, m["key"], m["nbytes"], m["type"], timing=m.get("timing"),
                fetched=m.get("fetched"))),
            "task-erred": self._on_worker(lambda a, m: self.state.add_replicas(
                a, m["fetched"]) + self.state.task_erred(a, m["key"], m["exception"],
                                                        m["traceback"], m.get("timing"))),
            "acquired": self._on_worker(lambda a, m: self.state.acquired(
                a, m["fetched"], m["failed"])),
            "task-started": self._on_worker(lambda a, m: self.state.task_started(a, m["key"])),
            "task-seceded": self._on_worker(lambda a, m: self.state.task_seceded(a, m["key"])),
            "steal-response": self._on_worker(lambda a, m: self.state.steal_response(
                a, m["key"], m["withdrawn"], m["fetched"])),
            "task-output": self._on_worker(lambda a, m: self.state.task_output(a, m["records"])),
            "metrics": self._on_worker(lambda a, m: self.state.update_metrics(
                a, m["memory"], time.monotonic())),
        }
        for op, method in self.client_ops().items():
            handlers[op] = self._on_client(method)
        return handlers

    def _on_worker(self, change: Callable) -> Callable:
        def handler(channel: Channel, msg: dict):
            address = channel.worker_address
            if not channel.in_batch:
                self.apply(self.state.heard_from(address, time.monotonic()) +
                           (change(address, msg) or []))
                return
            # A batch (the reports of a burst of tasks): what it makes goes out once, in
            # order, when the batch is done (_apply_held); one apply per task took ~15 %
            # of the loop's CPU on 1,000 trivial tasks (cProfile, thread CPU time).
            if self._held is None:
                self._held = self.state.heard_from(address, time.monotonic())
            self._held += change(address, msg) or ()
        return handler

    def _apply_held(self, channel: Channel) -> None:
        held, self._held = self._held, None
        if held is not None:
            self.apply(held)

    def _on_client(self, method: Callable) -> Callable:
        def handler(channel: Channel, msg: dict):
            return method(channel.client_id, msg)
        return handler

    def apply(self, outgoing: list) -> None:
        """Send what a state change produced, then publish the events it recorded."""
        for (kind, target), msg in merge_deletes(outgoing):
            if kind == "owner":
                for callback in self.on_key_forgotten:
                    callback(msg["key"])
                continue
            _send(self.worker_channels.get(target) if kind == "worker" else self.clients.get(target),
                  msg)
        self.resend_ops.changed()  # gathers waiting for lost data sent again
        if self.state.events:
            batch, self.state.events = self.state.events, []
            for client_id in self.subscribers:
                _send(self.clients.get(client_id), {"op": "events", "events": batch})

    # ------------------------------------------------------------ workers ---
    def _register_worker(self, channel: Channel, msg: dict) -> dict:
        address = msg["address"]
        channel.worker_address = address
        channel.after_batch = self._apply_held
        channel.peer = f"worker {msg['name']} ({address})"  # errors name it, not a port
        self.worker_channels[address] = channel
        _keep_from_forked_children(channel)
        channel.on_close.append(lambda ch: self._remove_worker(address))
        for upload in self.cluster.for_new_worker():  # before any task that may import it
            _send(channel, upload)
        self.apply(self.state.add_worker(address, msg["name"], msg["nthreads"],
                                         msg["memory_limit"], msg.get("pid", 0),
                                         replaces=msg.get("replaces"), now=time.monotonic(),
                                         resources=msg.get("resources")))
        self._worker_arrived.set()
        return {"ok": True}

    def _remove_worker(self, address: str) -> None:
        self.worker_channels.pop(address, None)
        self._expired.discard(address)
        if self.closing:  # the cluster ends with its workers: no key to recover or report
            return  # (a million keys took ten seconds, each a warning that it was lost)
        ws = self.state.workers.get(address)
        pid = ws.pid if ws else 0
        reason = self.exit_reason(pid) or "lost its connection to the scheduler"
        self.pending_acks.worker_removed(address, reason)
        self.apply(self.state.remove_worker(address, reason))
        for callback in self.on_worker_removed:
            callback(address, pid)

    def set_supervision(self, status: dict) -> None:
        """The cluster's supervisor status, shown in ``scheduler_info()["supervision"]``."""
        self.apply(self.state.set_supervision(status))

    async def wait_for_workers(self, n: int = 1, timeout: float | None = None) -> None:
        async def arrived():
            while len(self.state.workers) < n:
                self._worker_arrived.clear()
                await self._worker_arrived.wait()
        try:
            await asyncio.wait_for(arrived(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"waited {timeout} s for {n} worker(s); "
                               f"{len(self.state.workers)} connected") from None

    async def request_worker(self, address: str, msg: dict):
        channel = self.worker_channels.get(address)
        if channel is None:
            raise CommClosedError(f"worker {address} is gone")
        return await channel.request(msg)

    # ------------------------------------------------------------ clients ---
    def _register_client(self, channel: Channel, msg: dict) -> dict:
        channel.client_id = client_id = msg.get("client_id") or random_token()
        self.clients[client_id] = channel
        channel.on_close.append(lambda ch: self.remove_client(client_id))
        return {"client_id": client_id, "secret_ok": True}

    def local_client(self, deliver: Callable[[dict], None]) -> str:
        client_id = random_token()
        self.clients[client_id] = LocalClientLink(deliver)
        return client_id

    def remove_client(self, client_id: str, release_keys: bool = True) -> None:
        """A client left. Its keys are released unless the cluster ends now or next
        anyway (``release_keys=False``): one by one, a million of them took 10 s."""
        self.clients.pop(client_id, None)
        self.scatters.client_left(client_id)
        self.semaphores.client_left(client_id)  # its leases go back
        self._unsubscribe(client_id, {})
        if release_keys and not self.closing:
            self.apply(self.state.forget_client(client_id))

    def client_ops(self) -> dict[str, Callable]:
        """Ops a client may call, as ``method(client_id, msg)``."""
        scatters = self.scatters
        return {
            "scatter": scatters.scatter, "choose-workers": scatters.choose_for_direct,
            "update-data": scatters.record, "gather": self._gather,
            "unrecorded": scatters.unrecorded,
            "locations": self._locations, "who-has": self._who_has, "has-what": self._has_what,
            "submit": self._submit, "release-keys": self._release, "cancel": self._cancel,
            "replicate": self._replicate, "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe, "wait-for-workers": self._wait_for_workers,
            "close-cluster": self._close_cluster, "coordination-cancel": self.waits.cancel,
            **self.views.ops(), **self.resend_ops.ops(), **self.cluster.ops(),
            **self.variables.ops(), **self.queues.ops(), **self.semaphores.ops(),
            **self.events.ops(),
        }

    async def _wait_for_workers(self, client_id, msg):
        await self.wait_for_workers(msg.get("n", 1), msg.get("timeout"))

    async def _locations(self, client_id, msg) -> dict:
        await self.resend_ops.until_resent(msg["keys"])  # lost data on its way back
        return self.state.locations_for_gather(msg["keys"])

    async def _gather(self, client_id, msg) -> dict:
        async def locate(keys):
            await self.resend_ops.until_resent(keys)
            return self.state.locations_for_gather(keys)
        return await fetch_from_holders(msg["keys"], locate, self.request_worker)

    def _who_has(self, client_id, msg) -> dict:
        return self.state.who_has(msg.get("keys"))

    def _has_what(self, client_id, msg) -> dict:
        addresses = self.state.resolve_workers(msg.get("workers"))
        return {a: sorted(self.state.workers[a].keys, key=key_text) for a in addresses}

    def _submit(self, client_id, msg) -> None:
        out, now = [], time.monotonic()
        for key, task, deps, restrictions, options in msg["tasks"]:
            out += self.state.submit(client_id, key, task, deps, restrictions, options, now)
        self.apply(out)

    def _release(self, client_id, msg) -> None:
        self.apply(self.state.release(client_id, msg["keys"]))

    def _cancel(self, client_id, msg) -> None:
        self.apply(self.state.cancel(client_id, msg["keys"], msg.get("force", False)))

    async def _replicate(self, client_id, msg) -> None:
        n = msg.get("n")
        if n is not None:
            if n < 1:
                raise ValueError(f"replicate() needs n >= 1, got {n!r}: it cannot delete all "
                                 "copies (release or cancel the future for that)")
            n = min(n, len(self.state.resolve_workers(msg.get("workers"))))
            self.apply(self.state.reduce_replicas(msg["keys"], n, msg.get("workers")))
        plan = self.state.replication_plan(msg["keys"], n, msg.get("workers"))
        by_target: dict[str, dict] = {}
        for key, targets in plan.items():
            for target in targets:
                by_target.setdefault(target, {})[key] = sorted(self.state.keys[key].who_has)
        results = await asyncio.gather(
            *(self.request_worker(t, {"op": "fetch", "who_has": w}) for t, w in by_target.items()),
            return_exceptions=True)
        for target, result in zip(by_target, results):
            if isinstance(result, BaseException):
                logger.warning("replicating to %s failed: %s", target, result)
                continue
            keys = [k for k in result if k in self.state.keys]
            self.apply(self.state.add_data(None, {k: [target] for k in keys}, result,
                                           {k: self.state.keys[k].type for k in keys}))

    def _close_cluster(self, client_id, msg) -> dict:
        """Ask the process that owns this scheduler to stop it (its client, workers, all).

        Only a peer that passed the handshake gets here, i.e. one that knows the secret.
        Its ``reason`` (the Jupyter sidebar's: "stopped from the Jupyter sidebar") is what
        the other clients are told."""
        if not self.on_close_requested:
            return {"closing": False}
        reason = msg.get("reason")
        self.closing_reason = (reason.strip()[:MAX_REASON]
                               if isinstance(reason, str) and reason.strip() else
                               "the cluster was stopped at the request of another process")
        for callback in self.on_close_requested:
            callback()
        return {"closing": True}

    def _subscribe(self, client_id, msg) -> list:
        self.subscribers.add(client_id)
        self.state.publishing = True
        return self.state.snapshot()

    def _unsubscribe(self, client_id, msg) -> None:
        self.subscribers.discard(client_id)
        self.state.publishing = bool(self.subscribers)
        if not self.subscribers:
            self.state.events.clear()


def _keep_from_forked_children(channel: Channel) -> None:
    """A forked child of ours must not hold a worker's connection open (see inheritance.py)."""
    sock = channel.transport.get_extra_info("socket")
    if sock is None:
        return
    fd = sock.fileno()
    inheritance.keep_from_forked_children(fd)
    channel.on_close.insert(0, lambda ch: inheritance.forget(fd))
