"""The scheduler's bookkeeping: which workers exist, which keys they hold, what runs where.

Every method is a plain synchronous state change: it takes a stimulus and returns the
messages to send as ``(destination, message)`` pairs, where a destination is
``("worker", address)`` or ``("client", client_id)``. Event-stream records accumulate in
:attr:`SchedulerState.events` for whoever publishes them. No sockets, no ``await``:
``server.py`` does the I/O around it, and tests drive it directly.

:class:`SchedulerState` is the one door: the server and the tests call it, and it
composes its parts, which share the ``workers`` and ``keys`` records but call each
other only through the few methods they are handed:

- ``log`` (:class:`~.events.EventLog`): the events recorded while someone subscribes;
- ``worker_book`` (:class:`~.worker_book.WorkerBook`): joining, leaving, heartbeats,
  names and ``workers=``, placement;
- ``replicas`` (:class:`~.replicas.ReplicaBook`): who holds what, the only code that
  changes ``ws.keys``, ``ws.nbytes`` and ``ks.who_has``;
- ``broadcasts`` (:class:`~.broadcasts.StandingBroadcasts`): keys kept on every worker;
- ``tasks`` (:class:`~.tasks.TaskMachine`): submit to memory or failure, release, forget;
- ``recovery`` (:class:`~.recovery.Recovery`): recompute, retry, inherited restrictions;
- ``resends`` (:class:`~.resends.Resends`): scattered data sent again when its holders die;
- ``datasets`` (:class:`~.datasets.DatasetBook`): named data held for the cluster;
- ``durations`` (:class:`~.durations.TaskDurations`): how long tasks of each prefix take;
- ``placement`` (:class:`~.placement.Placement`): which worker runs a ready task;
- ``stealing`` (:class:`~.stealing.WorkStealing`): queued tasks moved to idle workers;
- ``history`` (:class:`~scatter_magics.history.MemoryHistory`) and ``task_stream``
  (:class:`~scatter_magics.task_stream.TaskStream`): what the views show of the last
  minutes, fed by heartbeats and ended tasks.

>>> state = SchedulerState()
>>> _ = state.add_worker("tcp://a:1", "worker-0", nthreads=1, memory_limit=100)
>>> state.add_data("client-1", {"x": ["tcp://a:1"]}, {"x": 8}, {"x": "int"})
[]
>>> state.who_has(["x"])
{'x': ['tcp://a:1']}
>>> state.release("client-1", ["x"])[0]
(('worker', 'tcp://a:1'), {'op': 'delete-keys', 'keys': ['x']})
"""

from __future__ import annotations

from ...errors import FutureLostError
from ...history import MemoryHistory
from ...keys import key_text
from ...task_stream import TaskStream, task_record
from . import reports
from .broadcasts import StandingBroadcasts
from .datasets import DatasetBook
from .durations import TaskDurations, prefix_of
from .events import EventLog, key_event, worker_event, worker_status_event
from .records import PUBLIC_STATUS, KeyInfo, Outgoing, WorkerInfo
from .placement import Placement
from .recovery import Recovery
from .replicas import ReplicaBook
from .resends import Resends
from .stealing import WorkStealing
from .tasks import TaskMachine
from .worker_book import UNRESPONSIVE_AFTER, WorkerBook

__all__ = ["SchedulerState", "KeyInfo", "WorkerInfo", "PUBLIC_STATUS"]


class SchedulerState:
    """Workers, keys and tasks; see the module docstring for the calling convention.

    ``workers`` and ``keys`` are shared with the parts: change their contents, never
    rebind them.
    """

    def __init__(self):
        self.workers: dict[str, WorkerInfo] = {}
        self.keys: dict[str, KeyInfo] = {}
        self.log = EventLog()
        self.worker_book = WorkerBook(self.workers, self.log)
        self.replicas = ReplicaBook(self.workers, self.keys, self.log)
        self.broadcasts = StandingBroadcasts(self.workers, self.keys)
        self.durations = TaskDurations()
        self.placement = Placement(self.workers, self.keys, self.durations)
        self.stealing = WorkStealing(self.workers, self.keys, self.placement)
        self.tasks = TaskMachine(self.keys, self.workers, self.log, self.worker_book,
                                 self.replicas, self.broadcasts, self.placement)
        self.recovery = Recovery(self.keys, self.log, self.tasks)
        self.resends = Resends(self.keys, self.workers, self.log, self.worker_book, self.tasks,
                               lambda *placed: self.add_data(None, *placed))
        self.datasets = DatasetBook(self.keys, self.workers, self.tasks)
        self.history = MemoryHistory()  # memory and data held, a sample a second
        self.task_stream = TaskStream()  # what the workers ran, the last minute

    # ------------------------------------------------------------ events ---
    @property
    def events(self) -> list[dict]:
        return self.log.events

    @events.setter
    def events(self, events: list[dict]) -> None:  # the server takes each batch
        self.log.events = events

    @property
    def publishing(self) -> bool:
        return self.log.publishing

    @publishing.setter
    def publishing(self, on: bool) -> None:
        self.log.publishing = on

    key_event = staticmethod(key_event)
    worker_event = staticmethod(worker_event)
    worker_status_event = staticmethod(worker_status_event)

    def snapshot(self) -> list[dict]:
        return reports.snapshot(self.workers, self.keys)

    # ------------------------------------------------------------ workers ---
    def add_worker(self, address: str, name: str, nthreads: int, memory_limit: int,
                   pid: int = 0, replaces: str | None = None, now: float = 0.0,
                   resources: dict | None = None) -> Outgoing:
        ws = self.worker_book.join(address, name, nthreads, memory_limit, pid, replaces, now)
        ws.resources = dict(resources or {})
        self.history.update(address, name)  # in the samples from its first heartbeat
        self.broadcasts.inherit(ws)
        out = self.broadcasts.top_up(ws)
        self.recovery.inherit_restrictions(ws, self.worker_book.predecessor(ws))
        out += self.resends.worker_joined(ws)  # copies of lost data waiting for a worker
        out += self.tasks.schedule_ready()  # tasks that waited for any (allowed) worker
        return out + self.stealing.balance()  # and a share of the queues of the others

    def remove_worker(self, address: str, reason: str = "removed") -> Outgoing:
        """The worker at ``address`` is gone; ``reason`` says how (``'was killed by SIGKILL'``)."""
        ws = self.worker_book.leave(address, reason)
        if ws is None:
            return []
        self.history.remove(address)
        death = f"{ws.name} ({address}) {reason}"
        self.stealing.worker_left(address)
        out, orphaned = self.resends.start(self.replicas.worker_left(ws), death)
        out += self.recovery.recover(orphaned, death)  # what cannot be sent again
        out += self.recovery.retry_running(ws, death)
        for other in self.workers.values():  # fetches from the dead worker may have failed
            out += self.broadcasts.top_up(other)
        return out + self._give_up_if_none_will_come()

    def heard_from(self, address: str, now: float) -> Outgoing:
        """Any message from a worker shows it is alive; a silent one is responsive again."""
        woke = self.worker_book.heard_from(address, now)
        if woke is None:
            return []
        return self.broadcasts.top_up(woke) + self.resends.worker_joined(woke)  # while frozen

    def update_metrics(self, address: str, memory: int, now: float = 0.0) -> Outgoing:
        """A heartbeat, with the worker's resident memory."""
        out = self.heard_from(address, now)
        self.worker_book.record_metrics(address, memory, now)
        ws = self.workers.get(address)
        if ws is not None:  # two numbers overwritten: the history samples them (tick)
            self.history.update(address, memory=memory, nbytes=ws.nbytes)
        return out

    def check_heartbeats(self, now: float, timeout: float = UNRESPONSIVE_AFTER,
                         busy=frozenset()) -> Outgoing:
        """Mark workers silent for ``timeout`` s busy (those in ``busy``: their process
        runs) or unresponsive (see ``WorkerBook``)."""
        self.worker_book.check_heartbeats(now, timeout, busy)
        return []

    def set_supervision(self, status: dict) -> Outgoing:
        self.worker_book.set_supervision(status)
        return self._give_up_if_none_will_come()

    def _give_up_if_none_will_come(self) -> Outgoing:
        """Nothing waits for ever: with no worker left and none to be started (a crash
        loop), the copies waiting for a holder are lost and the tasks waiting to run fail."""
        status = self.worker_book.supervision
        # (a worker started but not yet connected is alive: the supervisor counts it)
        if status.get("replacing", True) or status.get("alive", 1) or self.workers:
            return []
        why = status.get("message") or "dead workers are not replaced"
        return self.resends.give_up(why) + self.tasks.give_up(why)

    def resolve_workers(self, workers) -> list[str]:
        return self.worker_book.resolve_workers(workers)

    def choose_workers(self, n: int, workers=None, broadcast: bool = False,
                       exclude=()) -> list[list[str]]:
        return self.worker_book.choose_workers(n, workers, broadcast, exclude)

    def usable_workers(self, workers=None, exclude=()) -> list[str]:
        return self.worker_book.usable_workers(workers, exclude)

    def place(self, nbytes: dict, workers=None, broadcast: bool = False,
              exclude=()) -> dict[str, list[str]]:
        return self.worker_book.place(nbytes, workers, broadcast, exclude)

    def reserve(self, placement: dict, nbytes: dict, sign: int = 1) -> None:
        self.worker_book.reserve(placement, nbytes, sign)

    # ------------------------------------------------------------ data and replicas ---
    def add_data(self, client: str | None, placement: dict, nbytes: dict, types: dict,
                 shared=(), broadcast: bool = False, workers=None, copies=None) -> Outgoing:
        """Keys now held in memory: ``placement`` maps key → addresses that store it.

        ``broadcast``: the keys keep a replica on every (``workers=``-allowed) live
        worker for their whole life, on workers that join later too. ``copies``: the
        payloads of shared-memory keys, sent again if every holder dies (``resends``).
        """
        if self.resends.active:
            self.resends.done(placement)
        with_dependents = self.replicas.hold(client, placement, nbytes, types, shared)
        names = None if workers is None else self.worker_book.names_of(workers)
        if broadcast:
            for key in placement:
                self.broadcasts.make_standing(self.keys[key], names)
        if names is not None or copies:
            for key in placement:
                self.resends.keep(self.keys[key], names, copies.get(key) if copies else None)
        if self.log.publishing:
            for key in placement:
                self.log.emit_key(self.keys[key])
        out: Outgoing = []
        for ks in with_dependents:
            out += self.tasks.release_dependents(ks)
        if broadcast:  # workers that joined (or woke) while this scatter was on its way
            for ws in list(self.workers.values()):
                out += self.broadcasts.top_up(ws, placement)
        return out

    def add_replicas(self, address: str, fetched: dict) -> Outgoing:
        """A worker copied ``fetched`` (key → nbytes) from peers to run a task."""
        unknown = []
        for key, nbytes in fetched.items():
            ks = self.keys.get(key)
            if ks is not None and ks.state == "memory":
                self.replicas.add(ks, address, nbytes)
                self.log.emit_key(ks)
            else:
                unknown.append(key)  # forgotten meanwhile: the copy is garbage
        return [(("worker", address), {"op": "delete-keys", "keys": unknown})] if unknown else []

    def acquired(self, address: str, fetched: dict, failed: list) -> Outgoing:
        """A worker fetched standing broadcasts (``{key: nbytes}``); ``failed`` it could not."""
        self.broadcasts.acquired(address, fetched, failed)
        return self.add_replicas(address, fetched)

    def replication_plan(self, keys, n: int | None, workers=None) -> dict[str, list[str]]:
        """For each key in memory, the workers that should receive a copy."""
        allowed = self.resolve_workers(workers)
        usable = self.worker_book.responsive(allowed)
        plan = {}
        for key in keys:
            ks = self._known(key)
            if ks.state == "memory":
                targets = self.replicas.targets(ks, allowed, usable, n)
                if targets:
                    plan[key] = targets
        return plan

    def reduce_replicas(self, keys, n: int, workers=None) -> Outgoing:
        """Keep at most ``n`` replicas of each key among ``workers``; delete the rest.

        Dask's ``replicate(n=...)`` reduces too. The fullest workers give theirs up first;
        a replica that a task running there reads stays. A broadcast asked to keep ``n``
        replicas stops standing (it would be topped up again otherwise).
        """
        allowed = self.resolve_workers(workers)
        out: Outgoing = []
        for key in keys:
            ks = self._known(key)
            held = self.replicas.held_among(ks, allowed)
            if ks.state != "memory" or len(held) <= n:
                continue
            self.broadcasts.stop(ks)
            out += self.replicas.reduce(ks, held, n)
            self.log.emit_key(ks)
        return out

    def drop_replicas(self, address: str, keys, why: str) -> Outgoing:
        """``address`` does not hold ``keys`` after all; a key left with no replica is lost."""
        out: Outgoing = []
        for key in keys:
            ks = self.keys.get(key)
            if ks is None or address not in ks.who_has:
                continue
            out += self.replicas.drop(ks, address, delete=False)
            if not ks.who_has and ks.state == "memory":
                out += self.tasks.lose(ks, why)
            else:
                self.log.emit_key(ks)
        return out

    def drop_copy(self, key, address: str) -> Outgoing:
        """``address`` gives up its copy of ``key``, which another worker holds (a move)."""
        ks = self.keys.get(key)
        if ks is None or address not in ks.who_has or len(ks.who_has) < 2:
            return []
        out = self.replicas.drop(ks, address, delete=True)
        self.log.emit_key(ks)
        return out

    def unrecorded(self, by_worker: dict) -> dict[str, list[str]]:
        """``{address: keys}`` sent to each worker that it is not recorded to hold
        (see ``ReplicaBook.unrecorded``)."""
        return self.replicas.unrecorded(by_worker)

    # ------------------------------------------------------------ tasks ---
    def submit(self, client: str, key: str, task, deps: set, restrictions: list | None,
               options: dict | None = None, now: float = 0.0) -> Outgoing:
        out = self.tasks.submit(client, key, task, deps, restrictions, options, now)
        if not self.workers:  # (rare) a task that no worker may ever come to run fails
            out += self._give_up_if_none_will_come()
        return out

    def retry(self, keys) -> Outgoing:
        """Run the failed tasks of ``keys`` again (and the failed ones they read)."""
        return self.tasks.retry(keys)

    def want(self, holder: str, keys) -> dict:
        """``holder`` keeps ``keys`` too; their states (``TaskMachine.want``)."""
        return self.tasks.want(holder, keys)

    def fire_and_forget(self, keys) -> Outgoing:
        return self.tasks.fire_and_forget(keys)

    def task_seceded(self, address: str, key: str) -> Outgoing:
        return self.tasks.seceded(address, key)

    def cancel_everything(self) -> Outgoing:
        """Every key cancelled for every client and forgotten (``Client.restart``)."""
        out: Outgoing = []
        for key in list(self.keys):
            ks = self.keys.get(key)
            if ks is not None:
                out += self.tasks.cancel(next(iter(ks.wanted_by), ""), [key], force=True)
        return out

    def processing(self, workers=None) -> dict:
        """``{address: [keys of the tasks sent there and not done]}``."""
        return {a: sorted(self.workers[a].processing, key=key_text)
                for a in self.resolve_workers(workers)}

    def task_started(self, address: str, key: str) -> Outgoing:
        return self.tasks.started(address, key)

    def task_output(self, address: str, records: list) -> Outgoing:
        """What tasks printed on ``address``, for the clients holding their keys."""
        return self.tasks.output(address, records)

    def task_finished(self, address: str, key: str, nbytes: int, type_name: str,
                      duration: float | None = None, timing: dict | None = None,
                      fetched: dict | None = None) -> Outgoing:
        """``key`` ran on ``address`` for ``duration`` s (None: ``timing``'s stop - start,
        if any); ``timing``: the worker's start, stop, thread, transfers and function, for
        the task stream; ``fetched``: the inputs it copied from peers (``{key: nbytes}``)."""
        out = self.add_replicas(address, fetched) if fetched else []
        if duration is None and timing and "start" in timing:
            duration = timing["stop"] - timing["start"]
        if duration is not None:
            ks = self.keys.get(key)  # (its prefix parsed once, kept for placement too)
            self.durations.record(key, duration, prefix_of(ks) if ks is not None else None)
        out += self.tasks.finished(address, key, nbytes, type_name)
        self._ran(address, key, timing, "finished")
        return out + self.stealing.balance() if self.stealing.wanted(address) else out

    def task_erred(self, address: str, key: str, exception, traceback: str,
                   timing: dict | None = None) -> Outgoing:
        out = self.tasks.erred(address, key, exception, traceback)
        self._ran(address, key, timing, "error")
        return out + self.stealing.balance() if self.stealing.wanted(address) else out

    def _ran(self, address: str, key, timing: dict | None, status: str) -> None:
        """A task ended on ``address``: its record in the task stream, and in its key's
        event (``timing``: the worker's start, stop, thread, transfers, function)."""
        if not timing or "start" not in timing:
            return
        if self.log.publishing:  # a live view: the record goes with the key's event
            run = task_record(key, address, timing, status)
            self.task_stream.add(run)
            self.log.attach_run(key, run)
        else:
            self.task_stream.add_run(key, address, timing, status)

    def steal_response(self, address: str, key, withdrawn: bool, fetched: dict) -> Outgoing:
        """``address`` gave up ``key`` (``withdrawn``) or kept it; ``fetched``: the inputs
        it copied meanwhile (``{key: nbytes}``), now replicas there."""
        out = self.add_replicas(address, fetched) if fetched else []
        thief = self.stealing.stolen(address, key, withdrawn)
        if thief is not None:
            return out + self.tasks.move(self.keys[key], thief)
        return out + self.stealing.balance()  # a refusal: another task may go instead

    def balance(self) -> Outgoing:
        """Steal requests for queued work that idle workers would start sooner (a tick)."""
        return self.stealing.balance()

    def release(self, client: str, keys) -> Outgoing:
        """``client`` holds no more futures for ``keys``."""
        return self.tasks.release(client, keys)

    def cancel(self, client: str, keys, force: bool = False) -> Outgoing:
        """Cancel ``keys`` for everyone, or (held by other clients, no ``force``) for ``client``."""
        return self.tasks.cancel(client, keys, force)

    def forget_client(self, client: str) -> Outgoing:
        out = self.tasks.forget_client(client)  # (before: a key it alone held just goes)
        return out + self.resends.client_left(client)

    # ------------------------------------------------------------ queries ---
    def _known(self, key: str) -> KeyInfo:
        ks = self.keys.get(key)
        if ks is None:
            raise KeyError(f"key {key!r} is not known to the scheduler (released or never created)")
        return ks

    def who_has(self, keys=None) -> dict[str, list[str]]:
        keys = self.keys if keys is None else keys
        return {k: sorted(self.keys[k].who_has) if k in self.keys else [] for k in keys}

    def locations_for_gather(self, keys) -> dict[str, list[str]]:
        """Where each key can be read; raise the key's own error if it has none."""
        out = {}
        for key in keys:
            ks = self._known(key)
            if ks.state in ("error", "lost", "cancelled") and ks.exception is not None:
                raise ks.exception
            if not ks.who_has:
                raise FutureLostError(f"key {key!r} has no replica on any worker")
            # Responsive holders first: a frozen one is asked only if it is the only one.
            out[key] = list(ks.who_has) if len(ks.who_has) == 1 else sorted(
                ks.who_has, key=lambda a: (self.workers[a].status != "running", a))
        return out

    def info(self) -> dict:
        """Workers and totals; ``nbytes`` counts a key in shared memory once."""
        return reports.info(self.workers, self.keys, self.worker_book.supervision)

    def overview(self) -> dict:
        """The summary every view renders (``summary.summarize``): workers, keys, totals."""
        return reports.overview(self.workers, self.keys)

    def key_list(self, offset: int, limit: int, status: str | None = None,
                 name: str | None = None, sort: str | None = None,
                 descending: bool = False) -> dict:
        """One page of key items, filtered and sorted (``key_pages.page_of``)."""
        return reports.key_list(self.keys, offset, limit, status, name, sort, descending)
