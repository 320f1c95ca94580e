"""The scheduler's bookkeeping: which workers exist, which keys they hold, what runs where.

Every method is a plain synchronous state change: it takes a stimulus and returns the
messages to send as ``(destination, message)`` pairs, where a destination is
``("worker", address)`` or ``("client", client_id)``. Event-stream records accumulate in
:attr:`SchedulerState.events` for whoever publishes them. No sockets, no ``await``:
``scheduler.py`` does the I/O around it, and tests drive it directly.

The records live in ``scheduler_records.py``; heartbeats and placement in
``scheduler_workers.py``; recompute, retries and standing broadcasts in
``scheduler_recovery.py``; dropping replicas in ``scheduler_replicas.py`` (mixins of
:class:`SchedulerState`).
"""

from __future__ import annotations

from ...errors import FutureCancelledError, FutureLostError
from .records import NONE, PUBLIC_STATUS, KeyInfo, Outgoing, WorkerInfo
from .recovery import Recovery
from .replicas import Replicas
from .worker_book import WorkerBook

__all__ = ["SchedulerState", "KeyInfo", "WorkerInfo", "PUBLIC_STATUS"]

GONE = frozenset({"lost", "error", "cancelled", "released"})  # states a new KeyInfo replaces


class SchedulerState(WorkerBook, Recovery, Replicas):
    """Workers, keys and tasks; see the module docstring for the calling convention."""

    def __init__(self):
        self.workers: dict[str, WorkerInfo] = {}
        self.keys: dict[str, KeyInfo] = {}
        self.events: list[dict] = []
        self.publishing = False  # record events only while someone subscribes
        self._round_robin = 0  # where the next round-robin placement starts
        self.supervision: dict = {}  # the cluster's worker supervisor: restarts, budget
        self.standing: set[str] = set()  # keys broadcast for their whole life
        self.departed: dict[str, str] = {}  # name -> address of workers that left

    # ------------------------------------------------------------ workers ---
    def add_worker(self, address: str, name: str, nthreads: int, memory_limit: int,
                   pid: int = 0, replaces: str | None = None, now: float = 0.0) -> Outgoing:
        ws = self.workers[address] = WorkerInfo(address, name, nthreads, memory_limit, pid,
                                                replaces, last_seen=now)
        self._emit(self.worker_event(ws))
        out: Outgoing = self._inherit_broadcasts(ws) + self._top_up_broadcasts(ws)
        self._inherit_restrictions(ws)
        for ks in self.keys.values():  # tasks that were waiting for any (allowed) worker
            if ks.state == "waiting" and not ks.waiting_on and ks.processing_on is None:
                out += self._schedule(ks)
        return out

    def remove_worker(self, address: str, reason: str = "removed") -> Outgoing:
        """The worker at ``address`` is gone; ``reason`` says how (``'was killed by SIGKILL'``)."""
        ws = self.workers.pop(address, None)
        if ws is None:
            return []
        self.departed[ws.name] = address
        self._emit({"event": "worker-removed", "address": address, "name": ws.name,
                    "reason": reason})
        out: Outgoing = []
        orphaned = []  # keys in memory whose last holder this was
        for key in ws.keys:
            ks = self.keys.get(key)
            if ks is None:
                continue
            ks.who_has.discard(address)
            if not ks.who_has and ks.state == "memory":
                orphaned.append(ks)
            else:
                self._emit_key(ks)
        out += self._recover(orphaned, f"{ws.name} ({address}) {reason}")
        for key in ws.processing:
            ks = self.keys.get(key)
            if ks is not None and ks.state == "processing":
                out += self._retry_task(ks, f"{ws.name} ({address}) {reason}")
        for other in self.workers.values():  # fetches from the dead worker may have failed
            out += self._top_up_broadcasts(other)
        return out

    # ------------------------------------------------------------ placing data ---
    def add_data(self, client: str | None, placement: dict, nbytes: dict, types: dict,
                 shared=(), broadcast: bool = False, workers=None) -> Outgoing:
        """Keys now held in memory: ``placement`` maps key → addresses that store it.

        ``broadcast``: the keys keep a replica on every (``workers=``-allowed) live
        worker for their whole life, on workers that join later too.
        """
        # Called with every element of a scattered list: one pass, no call per key
        # unless a key has dependents or someone watches events.
        out: Outgoing = []
        keys, live = self.keys, self.workers
        shared = set(shared)
        for key, addresses in placement.items():
            ks = keys.get(key)
            if ks is None:
                ks = keys[key] = KeyInfo(key, "memory")
            elif ks.state in GONE:  # a new record, read by the tasks that read the old one
                ks = keys[key] = KeyInfo(key, "memory", dependents=ks.dependents)
            if shared and key in shared:
                ks.shared = True
            size = nbytes.get(key)
            if size is not None:
                ks.nbytes = size
            for address in addresses:
                ws = live.get(address)
                if ws is not None:
                    if key not in ws.keys:
                        ws.keys.add(key)
                        ws.nbytes += ks.nbytes or 0
                    ks.who_has.add(address)
            ks.state, ks.type = "memory", types.get(key, ks.type)
            if client is not None:
                ks.wanted_by.add(client)
            if broadcast:
                self._make_standing(ks, workers)
            if self.publishing:
                self.events.append(self.key_event(ks))
            if ks.dependents:
                out += self._release_dependents(ks)
        if broadcast:  # workers that joined (or woke) while this scatter was on its way
            for ws in list(self.workers.values()):
                out += self._top_up_broadcasts(ws, placement)
        return out

    def _add_replica(self, ks: KeyInfo, address: str, nbytes: int | None) -> None:
        ws = self.workers.get(address)
        if ws is None:
            return
        if nbytes is not None:
            ks.nbytes = nbytes
        if ks.key not in ws.keys:
            ws.keys.add(ks.key)
            ws.nbytes += ks.nbytes or 0
        ks.who_has.add(address)

    def add_replicas(self, address: str, fetched: dict) -> Outgoing:
        """A worker copied ``fetched`` (key → nbytes) from peers to run a task."""
        unknown = []
        for key, nbytes in fetched.items():
            ks = self.keys.get(key)
            if ks is not None and ks.state == "memory":
                self._add_replica(ks, address, nbytes)
                self._emit_key(ks)
            else:
                unknown.append(key)  # forgotten meanwhile: the copy is garbage
        return [(("worker", address), {"op": "delete-keys", "keys": unknown})] if unknown else []

    def replication_plan(self, keys, n: int | None, workers=None) -> dict[str, list[str]]:
        """For each key in memory, the workers that should receive a copy."""
        allowed = self.resolve_workers(workers)
        plan = {}
        for key in keys:
            ks = self._known(key)
            if ks.state != "memory":
                continue
            missing = [a for a in self.responsive(allowed) if a not in ks.who_has]
            want = len(allowed) if n is None else max(0, n - len(ks.who_has & set(allowed)))
            missing.sort(key=lambda a: self.workers[a].nbytes)
            if missing[:want]:
                plan[key] = missing[:want]
        return plan

    # ------------------------------------------------------------ tasks ---
    def submit(self, client: str, key: str, task, deps: set, restrictions: list | None) -> Outgoing:
        old = self.keys.get(key)
        if old is not None and old.state not in GONE:
            old.wanted_by.add(client)  # the same pure call: share the task and its result
            return self._notify(old, [client]) if old.state == "memory" else []
        ks = self.keys[key] = KeyInfo(key, "waiting", task=task, deps=set(deps),
                                      waiting_on=set())
        if old is not None:  # a new record, read by the tasks that read the old one
            ks.dependents = old.dependents
        ks.wanted_by.add(client)
        if restrictions:
            ks.restrictions = set(self.resolve_workers(restrictions))
        for dep in deps:
            dks = self.keys.get(dep)
            if dks is None:  # Dask reports these "cancelled" (lost dependencies) too
                return self._fail(ks, FutureCancelledError(
                    f"task {key!r} depends on key {dep!r}, which was cancelled or "
                    "released"), "", "cancelled")
            _link(dks, key)
            if dks.state in ("error", "lost", "cancelled"):
                return self._fail_from(ks, dks)
            if dks.state != "memory":
                ks.waiting_on.add(dep)
        self._emit_key(ks)
        return self._schedule(ks) if not ks.waiting_on else []

    def _schedule(self, ks: KeyInfo) -> Outgoing:
        candidates = [a for a in (ks.restrictions or self.workers) if a in self.workers]
        if not candidates:
            return []  # wait for a (suitable) worker to arrive
        candidates = self.responsive(candidates) or candidates  # a frozen one may resume
        held = {a: sum(self.keys[d].nbytes or 0 for d in ks.deps if a in self.keys[d].who_has)
                for a in candidates}
        address = max(candidates, key=lambda a: (held[a], -self.workers[a].occupancy(),
                                                 -len(self.workers[a].keys)))
        ks.state, ks.processing_on, ks.started = "processing", address, False
        self.workers[address].processing.add(ks.key)
        who_has = {d: sorted(self.keys[d].who_has) for d in ks.deps}
        return [(("worker", address), {"op": "compute", "key": ks.key, "task": ks.task,
                                       "who_has": who_has})]

    def task_started(self, address: str, key: str) -> Outgoing:
        """A worker's thread began running ``key`` (it may have queued behind others)."""
        ks = self.keys.get(key)
        if ks is not None and ks.state == "processing" and ks.processing_on == address:
            ks.started = True
            self._emit_key(ks)
        return []

    def task_finished(self, address: str, key: str, nbytes: int, type_name: str) -> Outgoing:
        ks = self.keys.get(key)
        ws = self.workers.get(address)
        if ws is not None:
            ws.processing.discard(key)
        if ks is None or ks.state != "processing" or ks.processing_on != address:
            # cancelled or released meanwhile: the result is unwanted
            return [(("worker", address), {"op": "delete-keys", "keys": [key]})]
        ks.processing_on, ks.state, ks.type = None, "memory", type_name
        self._add_replica(ks, address, nbytes)
        self._emit_key(ks)
        out = self._notify(ks)
        out += self._release_dependents(ks)
        for dep in ks.deps:  # inputs kept only for this task may go now
            if dep in self.keys:
                out += self._forget_if_unwanted(self.keys[dep])
        return out + self._forget_if_unwanted(ks)

    def task_erred(self, address: str, key: str, exception, traceback: str) -> Outgoing:
        ks = self.keys.get(key)
        if address in self.workers:
            self.workers[address].processing.discard(key)
        if ks is None or ks.state != "processing" or ks.processing_on != address:
            return []
        ks.processing_on = None
        return self._fail(ks, exception, traceback)

    def _release_dependents(self, ks: KeyInfo) -> Outgoing:
        out: Outgoing = []
        for dep_key in list(ks.dependents):
            dks = self.keys.get(dep_key)
            if dks is not None and ks.key in dks.waiting_on:
                dks.waiting_on.discard(ks.key)
                if not dks.waiting_on and dks.state == "waiting":
                    out += self._schedule(dks)
        return out

    def _fail(self, ks: KeyInfo, exception, traceback: str, state: str = "error") -> Outgoing:
        ks.state, ks.exception, ks.traceback = state, exception, traceback
        self._emit_key(ks)
        out = self._notify(ks)
        for dep_key in list(ks.dependents):
            dks = self.keys.get(dep_key)
            if dks is not None and dks.state in ("waiting", "processing"):
                out += self._fail_from(dks, ks)
        return out

    def _fail_from(self, ks: KeyInfo, cause: KeyInfo) -> Outgoing:
        if ks.processing_on in self.workers:
            self.workers[ks.processing_on].processing.discard(ks.key)
        ks.processing_on = None
        return self._fail(ks, cause.exception, cause.traceback, cause.state)

    def _lose(self, ks: KeyInfo, why: str) -> Outgoing:
        return self._fail(ks, FutureLostError(f"key {ks.key!r} was lost: {why}"), "", "lost")

    def _notify(self, ks: KeyInfo, clients=None) -> Outgoing:
        msg = {"op": "key-update", "key": ks.key, "status": PUBLIC_STATUS[ks.state],
               "type": ks.type, "exception": ks.exception, "traceback": ks.traceback}
        return [(("client", c), msg) for c in (ks.wanted_by if clients is None else clients)]

    # ------------------------------------------------------------ releasing ---
    def release(self, client: str, keys) -> Outgoing:
        """``client`` holds no more futures for ``keys``."""
        out: Outgoing = []
        for key in keys:
            ks = self.keys.get(key)
            if ks is not None:
                ks.wanted_by.discard(client)
                out += self._forget_if_unwanted(ks)
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
                out += self._fail(ks, None, None, "cancelled")
            ks.wanted_by.clear()
            out += self._forget(ks)
        return out

    def _forget_if_unwanted(self, ks: KeyInfo) -> Outgoing:
        if ks.wanted_by or any(self._still_needs(d, ks.key) for d in ks.dependents):
            return []
        return self._forget(ks)

    def _still_needs(self, dependent: str, key: str) -> bool:
        dks = self.keys.get(dependent)
        return dks is not None and dks.state in ("waiting", "processing") and key in dks.deps

    def _forget(self, ks: KeyInfo) -> Outgoing:
        self.keys.pop(ks.key, None)
        self.standing.discard(ks.key)
        out: Outgoing = []
        for address in ks.who_has:
            ws = self.workers.get(address)
            if ws is not None and ks.key in ws.keys:
                ws.keys.discard(ks.key)
                ws.nbytes -= ks.nbytes or 0
                out.append((("worker", address), {"op": "delete-keys", "keys": [ks.key]}))
        if ks.processing_on in self.workers:
            self.workers[ks.processing_on].processing.discard(ks.key)
        ks.who_has, ks.state = set(), "released"
        out.append((("owner", ""), {"op": "key-forgotten", "key": ks.key}))
        self._emit_key(ks)
        for dep in ks.deps:  # inputs kept only for this task may go now
            dks = self.keys.get(dep)
            if dks is not None:
                _unlink(dks, ks.key)
                out += self._forget_if_unwanted(dks)
        return out

    def forget_client(self, client: str) -> Outgoing:
        return self.release(client, [k for k, ks in self.keys.items() if client in ks.wanted_by])

    # ------------------------------------------------------------ queries ---
    def _known(self, key: str) -> KeyInfo:
        ks = self.keys.get(key)
        if ks is None:
            raise KeyError(f"key {key!r} is not known to the scheduler (released or never created)")
        return ks

    def unrecorded(self, by_worker: dict) -> dict[str, list[str]]:
        """``{address: keys}``: the keys sent to each worker that it is not recorded to hold.

        What a failed scatter must take back; a key the worker already held (the same
        content, scattered before) is recorded and stays.
        """
        out = {}
        for address, keys in by_worker.items():
            ws = self.workers.get(address)
            orphans = [k for k in keys if ws is None or k not in ws.keys]
            if orphans:
                out[address] = orphans
        return out

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
            out[key] = sorted(ks.who_has, key=lambda a: (self.workers[a].status != "running", a))
        return out

    def info(self) -> dict:
        """Workers and totals; ``nbytes`` counts a key in shared memory once."""
        nbytes = sum((ks.nbytes or 0) * (1 if ks.shared else len(ks.who_has))
                     for ks in self.keys.values())
        return {"type": "Scheduler", "nbytes": nbytes, "nkeys": len(self.keys),
                "supervision": dict(self.supervision), "workers": {
            a: {"name": ws.name, "nthreads": ws.nthreads, "memory_limit": ws.memory_limit,
                "nbytes": ws.nbytes, "memory": ws.memory, "nkeys": len(ws.keys),
                "processing": len(ws.processing), "pid": ws.pid, "replaces": ws.replaces,
                "status": ws.status}
            for a, ws in self.workers.items()}}

    def overview(self) -> dict:
        """What a cluster list shows: the workers, and the keys counted by status."""
        by_status: dict[str, int] = {}
        for ks in self.keys.values():
            status = PUBLIC_STATUS[ks.state]
            by_status[status] = by_status.get(status, 0) + 1
        info = self.info()
        return {"workers": info["workers"],
                "keys": {"count": len(self.keys), "nbytes": info["nbytes"], "by_status": by_status}}

    def key_list(self, offset: int, limit: int, status: str | None = None) -> dict:
        """One page of keys (in the order the scheduler learnt them), each as a key event."""
        keys = self.keys.values()
        if status is not None:
            keys = [ks for ks in keys if PUBLIC_STATUS[ks.state] == status]
        else:
            keys = list(keys)
        page = keys[max(offset, 0):max(offset, 0) + max(limit, 0)]
        return {"total": len(keys), "offset": offset,
                "keys": [{k: v for k, v in self.key_event(ks).items() if k != "event"}
                         for ks in page]}

    # ------------------------------------------------------------ events ---
    def snapshot(self) -> list[dict]:
        return [self.worker_event(ws) for ws in self.workers.values()] + \
               [self.worker_status_event(ws) for ws in self.workers.values()
                if ws.status != "running"] + \
               [self.key_event(ks) for ks in self.keys.values()]

    @staticmethod
    def key_event(ks: KeyInfo) -> dict:
        # "running" exists only in events: a Future's status stays Dask's "pending".
        status = "running" if ks.state == "processing" and ks.started else PUBLIC_STATUS[ks.state]
        return {"event": "key", "key": ks.key, "status": status,
                "workers": sorted(ks.who_has), "nbytes": ks.nbytes, "type": ks.type,
                "processing_on": ks.processing_on}

    def _emit_key(self, ks: KeyInfo) -> None:
        if self.publishing:
            self.events.append(self.key_event(ks))

    def _emit(self, event: dict) -> None:
        if self.publishing:
            self.events.append(event)


# A task's inputs are its ``deps``; each input's ``dependents`` is the shared empty NONE
# until its first dependent links. A record that replaces a failed one keeps its
# dependents, but an edge can still be missing (a task that failed at submit before
# linking every input; an input forgotten, then made again): unlinking tolerates it.
def _link(dks: KeyInfo, key: str) -> None:
    """``key`` reads ``dks``: the first dependent gives ``dks`` a set of its own."""
    if dks.dependents is NONE:
        dks.dependents = set()
    dks.dependents.add(key)


def _unlink(dks: KeyInfo, key: str) -> None:
    """``key`` no longer reads ``dks``; an edge never linked (still ``NONE``) is no edge."""
    if key in dks.dependents:
        dks.dependents.discard(key)
