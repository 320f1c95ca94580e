"""The task machine: a key's life from ``submit`` to ``memory`` or failure, and to being forgotten.

A task waits for its inputs (``waiting``), runs on the worker where it would start
soonest (``processing``; ``placement.py``) among those its ``workers=`` and
``resources=`` allow, and ends in ``memory`` or fails (``error``; ``lost`` or
``cancelled`` when an input did); a failure passes to the tasks that read it. A key
nobody wants, and no waiting task reads, is forgotten and deleted on its workers. The
same calling convention as :class:`~scatter_magics.engine.scheduler.state.SchedulerState`:
plain synchronous methods that return the messages to send.

The graph's edges: a task's ``deps`` (its inputs) and each input's ``dependents``, which
is the shared empty ``NONE`` until its first dependent links (records.py says why). A
record that replaces a failed one keeps its dependents. An edge can still be missing
from ``dependents`` (a task that failed at submit before linking every input; an input
forgotten, then made again): ``_unlink`` tolerates it.

>>> from scatter_magics.engine.scheduler.state import SchedulerState
>>> state = SchedulerState()
>>> _ = state.add_worker("tcp://a:1", "worker-0", 1, memory_limit=100)
>>> [(dest, msg)] = state.tasks.submit("client-1", "t", b"task", set(), None)
>>> dest, msg["op"]
(('worker', 'tcp://a:1'), 'compute')
>>> [(dest, msg)] = state.tasks.finished("tcp://a:1", "t", 8, "int")
>>> dest, msg["status"]
(('client', 'client-1'), 'finished')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import FutureCancelledError, FutureLostError, NoWorkersError
from ..wire.serialize import Serialized
from .ordering import Ordering
from .records import GONE, NONE, PUBLIC_STATUS, KeyInfo, Outgoing, TaskOptions, WorkerInfo

if TYPE_CHECKING:
    from .broadcasts import StandingBroadcasts
    from .events import EventLog
    from .placement import Placement
    from .replicas import ReplicaBook
    from .worker_book import WorkerBook

FAILED = ("error", "lost", "cancelled")  # a task reading one of these fails the same way
FIRE_AND_FORGET = "fire-and-forget"  # the holder of keys whose tasks must run regardless
DEFAULT_OPTIONS = TaskOptions()


class TaskMachine:
    """Submitting, scheduling, finishing and failing tasks; releasing and forgetting keys."""

    def __init__(self, keys: dict[str, KeyInfo], workers: dict[str, WorkerInfo], log: EventLog,
                 worker_book: WorkerBook, replicas: ReplicaBook,
                 broadcasts: StandingBroadcasts, placement: Placement):
        self.keys = keys
        self.workers = workers
        self.log = log
        self.worker_book = worker_book  # responsive workers, workers= resolution
        self.replicas = replicas  # a result's copy; a forgotten key's copies
        self.broadcasts = broadcasts  # a forgotten key stops standing
        self.ordering = Ordering()  # each task's place among the queued ones
        self.placement = placement  # which worker runs a ready task; their occupancy

    # ------------------------------------------------------------ submitting ---
    def submit(self, client: str, key: str, task, deps, restrictions: list | None,
               options: dict | None = None, now: float = 0.0) -> Outgoing:
        """A task of ``client``'s; ``options`` as ``engine/client/task_options.py`` makes
        them (None: the defaults), ``now`` the time it came (monotonic s, for its order)."""
        old = self.keys.get(key)
        if old is not None and old.state not in GONE:
            old.wanted_by.add(client)  # the same pure call: share the task and its result
            return self.notify(old, [client]) if old.state == "memory" else []
        # (No sets of its own for a task that reads nothing: the shared empty NONE.)
        ks = self.keys[key] = KeyInfo(key, "waiting", task=task, deps=set(deps) if deps else NONE,
                                      waiting_on=set() if deps else NONE)
        if old is not None:  # a new record, read by the tasks that read the old one
            ks.dependents = old.dependents
        ks.wanted_by.add(client)
        ks.options = self.ordering.options(options, now)
        if restrictions:  # a preference only (loose) may name workers that are gone
            ks.restrictions = set(self.worker_book.resolve_workers(
                restrictions, strict=not ks.options.loose))
        for dep in deps:
            dks = self.keys.get(dep)
            if dks is None:  # Dask reports these "cancelled" (lost dependencies) too
                return self.fail(ks, FutureCancelledError(
                    f"task {key!r} depends on key {dep!r}, which was cancelled or "
                    "released"), "", "cancelled")
            _link(dks, key)
            if dks.state in FAILED:
                return self._fail_from(ks, dks)
            if dks.state != "memory":
                ks.waiting_on.add(dep)
        self.log.emit_key(ks)
        return self.schedule(ks) if not ks.waiting_on else []

    def schedule(self, ks: KeyInfo) -> Outgoing:
        """Send ``ks`` to the worker where it would start soonest (``Placement``) among
        those that may run it (``workers=``, ``resources=``), if any."""
        candidates = self.worker_book.candidates_for(ks)
        if not candidates:
            return []  # wait for a (suitable) worker to arrive
        return self._send(ks, self.placement.choose(ks, candidates))

    def move(self, ks: KeyInfo, address: str) -> Outgoing:
        """``ks``, given up by the worker it was sent to (work stealing), runs on ``address``,
        or, if that worker left, stopped answering or may not run it, where placement says."""
        self.unassign(ks)
        ws = self.workers.get(address)
        if ws is None or ws.status != "running" or not self.placement.allowed(ks, address):
            return self.schedule(ks)
        return self._send(ks, address)

    def _send(self, ks: KeyInfo, address: str) -> Outgoing:
        ks.state, ks.processing_on, ks.started = "processing", address, False
        self.placement.assign(ks, address)
        options = ks.options or DEFAULT_OPTIONS
        task = ks.task
        # What a worker assumes when left out travels not: no inputs, no resources; a
        # pickled call without out-of-band buffers as its bytes. Pickling 500 compute
        # messages took 0.60 ms with them and 0.10 ms without (timeit).
        msg = {"op": "compute", "key": ks.key, "task": task.header if type(task) is Serialized
               and not task.buffers else task, "priority": options.priority}
        if ks.deps:
            msg["who_has"] = {d: sorted(self.keys[d].who_has) for d in ks.deps}
        if options.resources:
            msg["resources"] = options.resources
        return [(("worker", address), msg)]

    def schedule_ready(self) -> Outgoing:
        """Schedule the tasks that wait for nothing but a (suitable) worker, by priority."""
        ready = [ks for ks in self.keys.values()
                 if ks.state == "waiting" and not ks.waiting_on and ks.processing_on is None]
        ready.sort(key=lambda ks: (ks.options or DEFAULT_OPTIONS).priority)
        out: Outgoing = []
        for ks in ready:
            out += self.schedule(ks)
        return out

    def wait_again(self, ks: KeyInfo, dep: str) -> None:
        """``ks`` (waiting or running) must wait for its input ``dep`` again."""
        self.unassign(ks)
        ks.state = "waiting"
        if ks.waiting_on is NONE:
            ks.waiting_on = set()
        ks.waiting_on.add(dep)

    def unassign(self, ks: KeyInfo) -> None:
        """``ks`` no longer runs where it was sent."""
        if ks.processing_on in self.workers:
            self.workers[ks.processing_on].unassign(ks.key)
        ks.processing_on = None

    # ------------------------------------------------------------ reports from workers ---
    def started(self, address: str, key: str) -> Outgoing:
        """A worker's thread began running ``key`` (it may have queued behind others)."""
        ks = self.keys.get(key)
        if ks is not None and ks.state == "processing" and ks.processing_on == address:
            ks.started = True
            self.log.emit_key(ks)
        return []

    def seceded(self, address: str, key: str) -> Outgoing:
        """A running task left its thread (``secede()``): the worker's thread is free."""
        ks = self.keys.get(key)
        if ks is not None and ks.state == "processing" and ks.processing_on == address:
            self.workers[address].secede(key)
        return []

    def output(self, address: str, records: list) -> Outgoing:
        """What tasks printed on ``address`` (``task_capture.py``'s records), for the
        clients that want each key; output of a key nobody wants goes nowhere."""
        ws = self.workers.get(address)
        worker = ws.name if ws is not None else address
        by_client: dict[str, list] = {}
        for record in records:
            ks = self.keys.get(record["key"])
            for client in ks.wanted_by if ks is not None else ():
                by_client.setdefault(client, []).append(record)
        return [(("client", c), {"op": "task-output", "worker": worker, "records": chosen})
                for c, chosen in by_client.items()]

    def finished(self, address: str, key: str, nbytes: int, type_name: str) -> Outgoing:
        ks = self.keys.get(key)
        ws = self.workers.get(address)
        if ws is not None:
            ws.unassign(key)
        if ks is None or ks.state != "processing" or ks.processing_on != address:
            # cancelled or released meanwhile: the result is unwanted
            return [(("worker", address), {"op": "delete-keys", "keys": [key]})]
        ks.processing_on, ks.state, ks.type = None, "memory", type_name
        self.replicas.add(ks, address, nbytes)
        self.log.emit_key(ks)
        out = self.notify(ks)
        if ks.dependents:  # most results have none: no call, no list made
            out += self.release_dependents(ks)
        for dep in ks.deps:  # inputs kept only for this task may go now
            if dep in self.keys:
                out += self.forget_if_unwanted(self.keys[dep])
        ks.wanted_by.discard(FIRE_AND_FORGET)  # its task ran: nobody else asked to keep it
        return out + self.forget_if_unwanted(ks)

    def erred(self, address: str, key: str, exception, traceback: str) -> Outgoing:
        ks = self.keys.get(key)
        if address in self.workers:
            self.workers[address].unassign(key)
        if ks is None or ks.state != "processing" or ks.processing_on != address:
            return []
        ks.processing_on = None
        if ks.options is not None and ks.options.retries > 0:  # submit(retries=n): again
            ks.options.retries -= 1
            ks.state = "waiting"
            return self.schedule(ks)
        out = self.fail(ks, exception, traceback)
        if FIRE_AND_FORGET in ks.wanted_by:
            ks.wanted_by.discard(FIRE_AND_FORGET)
            out += self.forget_if_unwanted(ks)
        return out

    def retry(self, keys) -> Outgoing:
        """Run the failed tasks of ``keys`` again (``Client.retry``), and first the failed
        tasks they read: the error may have been theirs."""
        out: Outgoing = []
        for key in keys:
            ks = self.keys.get(key)
            if ks is not None and ks.state == "error" and ks.task is not None:
                out += self._run_again(ks)
        return out

    def _run_again(self, ks: KeyInfo) -> Outgoing:
        ks.state, ks.exception, ks.traceback = "waiting", None, None
        if ks.waiting_on is NONE:
            ks.waiting_on = set()
        out: Outgoing = []
        for dep in ks.deps:
            dks = self.keys.get(dep)
            if dks is None or dks.state in ("lost", "cancelled", "released"):
                return self.fail(ks, FutureCancelledError(
                    f"task {ks.key!r} cannot run again: its input {dep!r} is gone"), "",
                    "cancelled")
            if dks.state == "error" and dks.task is not None:
                out += self._run_again(dks)
            if dks.state != "memory":
                ks.waiting_on.add(dep)
        self.log.emit_key(ks)
        out += self.notify(ks)  # pending again
        return out + (self.schedule(ks) if not ks.waiting_on else [])

    def want(self, holder: str, keys) -> dict:
        """``holder`` (a client, a variable's holder, ...) wants ``keys`` kept; their
        current state, as a ``key-update`` says it (unknown keys are left out)."""
        states = {}
        for key in keys:
            ks = self.keys.get(key)
            if ks is not None and ks.state != "released":
                ks.wanted_by.add(holder)
                states[key] = {"status": PUBLIC_STATUS[ks.state], "type": ks.type,
                               "exception": ks.exception, "traceback": ks.traceback}
        return states

    def fire_and_forget(self, keys) -> Outgoing:
        """Keep ``keys``' tasks until they ran, whoever lets their Futures go."""
        self.want(FIRE_AND_FORGET, [k for k in keys if k in self.keys and
                                    self.keys[k].state in ("waiting", "processing")])
        return []

    def release_dependents(self, ks: KeyInfo) -> Outgoing:
        """``ks`` is in memory: schedule the tasks that waited only for it."""
        out: Outgoing = []
        for dep_key in list(ks.dependents):
            dks = self.keys.get(dep_key)
            if dks is not None and ks.key in dks.waiting_on:
                dks.waiting_on.discard(ks.key)
                if not dks.waiting_on and dks.state == "waiting":
                    out += self.schedule(dks)
        return out

    # ------------------------------------------------------------ failing ---
    def fail(self, ks: KeyInfo, exception, traceback: str | None,
             state: str = "error") -> Outgoing:
        """``ks`` ends in ``state``; so do the tasks waiting for it or running with it."""
        ks.state, ks.exception, ks.traceback = state, exception, traceback
        self.log.emit_key(ks)
        out = self.notify(ks)
        for dep_key in list(ks.dependents):
            dks = self.keys.get(dep_key)
            if dks is not None and dks.state in ("waiting", "processing"):
                out += self._fail_from(dks, ks)
        return out

    def give_up(self, why: str) -> Outgoing:
        """No worker will come to run the tasks still waiting (every worker died, and
        supervision starts no more): each fails saying so, rather than wait for ever."""
        error = NoWorkersError(f"no worker is left to run it: {why}")
        out: Outgoing = []
        for ks in [ks for ks in self.keys.values() if ks.state == "waiting"]:
            if ks.state == "waiting":  # (not failed meanwhile, as a dependent of another)
                out += self.fail(ks, error, None)
        return out

    def _fail_from(self, ks: KeyInfo, cause: KeyInfo) -> Outgoing:
        self.unassign(ks)
        return self.fail(ks, cause.exception, cause.traceback, cause.state)

    def lose(self, ks: KeyInfo, why: str) -> Outgoing:
        return self.fail(ks, FutureLostError(f"key {ks.key!r} was lost: {why}"), "", "lost")

    def notify(self, ks: KeyInfo, clients=None) -> Outgoing:
        """A ``key-update`` for each client that wants ``ks`` (or for ``clients``)."""
        status = PUBLIC_STATUS[ks.state]
        msg = {"op": "key-update", "key": ks.key, "status": status, "type": ks.type,
               "nbytes": ks.nbytes if status == "finished" else None,
               "exception": ks.exception, "traceback": ks.traceback}
        return [(("client", c), msg) for c in (ks.wanted_by if clients is None else clients)]

    # ------------------------------------------------------------ releasing ---
    def release(self, client: str, keys) -> Outgoing:
        """``client`` holds no more futures for ``keys``."""
        out: Outgoing = []
        for key in keys:
            ks = self.keys.get(key)
            if ks is not None:
                ks.wanted_by.discard(client)
                out += self.forget_if_unwanted(ks)
        return out

    def cancel(self, client: str, keys, force: bool = False) -> Outgoing:
        """Cancel ``keys`` for everyone, or (held by other clients, no ``force``) for ``client``."""
        out: Outgoing = []
        for key in keys:
            ks = self.keys.get(key)
            if ks is None:
                continue
            if ks.wanted_by - {client} and not force:
                ks.wanted_by.discard(client)  # the others keep it
                msg = {"op": "key-update", "key": key, "status": "cancelled", "type": ks.type,
                       "exception": None, "traceback": None}
                out.append((("client", client), msg))
                continue
            if ks.state in ("waiting", "processing", "memory"):
                out += self.fail(ks, None, None, "cancelled")
            ks.wanted_by.clear()
            out += self.forget(ks)
        return out

    def forget_client(self, client: str) -> Outgoing:
        return self.release(client, [k for k, ks in self.keys.items() if client in ks.wanted_by])

    def forget_if_unwanted(self, ks: KeyInfo) -> Outgoing:
        # Most keys are scattered data with no dependents: no generator made for them
        # (releasing a 10,000-element list calls this once per element; an any() over
        # an empty set costs ~0.15 µs, ten times the test in front of it).
        if ks.wanted_by or (ks.dependents and
                            any(self._still_needs(d, ks.key) for d in ks.dependents)):
            return []
        return self.forget(ks)

    def _still_needs(self, dependent: str, key: str) -> bool:
        dks = self.keys.get(dependent)
        return dks is not None and dks.state in ("waiting", "processing") and key in dks.deps

    def forget(self, ks: KeyInfo) -> Outgoing:
        """Drop ``ks`` and its copies; then its inputs, if only ``ks`` kept them."""
        self.keys.pop(ks.key, None)
        if ks.standing:
            self.broadcasts.forget(ks.key)
        out = self.replicas.drop_all(ks)
        if ks.processing_on in self.workers:  # its event still says where it ran
            self.workers[ks.processing_on].unassign(ks.key)
        ks.state = "released"
        out.append((("owner", ""), {"op": "key-forgotten", "key": ks.key}))
        self.log.emit_key(ks)
        for dep in ks.deps:  # inputs kept only for this task may go now
            dks = self.keys.get(dep)
            if dks is not None:
                _unlink(dks, ks.key)
                out += self.forget_if_unwanted(dks)
        return out


def _link(dks: KeyInfo, key: str) -> None:
    """``key`` reads ``dks``: the first dependent gives ``dks`` a set of its own."""
    if dks.dependents is NONE:
        dks.dependents = set()
    dks.dependents.add(key)


def _unlink(dks: KeyInfo, key: str) -> None:
    """``key`` no longer reads ``dks``; an edge never linked (still ``NONE``) is no edge."""
    if key in dks.dependents:
        dks.dependents.discard(key)
