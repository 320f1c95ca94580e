"""The workers' records: joining and leaving, heartbeats, names, where new data goes.

:class:`WorkerBook` owns the ``WorkerInfo`` records of
:class:`~scatter_magics.engine.scheduler.state.SchedulerState` (the ``workers`` dict it
shares with the other parts) and changes nothing else: it says what happened (a worker
woke up, a worker left) and the state decides what follows.

>>> book = WorkerBook({}, EventLog())
>>> _ = book.join("tcp://a:1", "worker-0", nthreads=2, memory_limit=100)
>>> book.resolve_workers(["worker-0"])
['tcp://a:1']
>>> book.choose_workers(3)
[['tcp://a:1'], ['tcp://a:1'], ['tcp://a:1']]
"""

from __future__ import annotations

from ...errors import NoWorkersError, UnknownWorkerError
from ..shm import limits
from .events import EventLog, worker_event, worker_status_event
from .records import WorkerInfo

UNRESPONSIVE_AFTER = 3.0  # s without a heartbeat (workers send one every 0.5 s)
METRICS_EVENT_INTERVAL = 1.0  # s between worker-metrics events of one worker


class WorkerBook:
    """The live workers by address, the departed by name, and the supervisor's status."""

    def __init__(self, workers: dict[str, WorkerInfo], log: EventLog):
        self.workers = workers
        self.log = log
        self.departed: dict[str, str] = {}  # name -> address of workers that left
        self.supervision: dict = {}  # the cluster's worker supervisor: restarts, budget
        self.round_robin = 0  # where the next round-robin placement starts

    # ------------------------------------------------------------ joining, leaving ---
    def join(self, address: str, name: str, nthreads: int, memory_limit: int, pid: int = 0,
             replaces: str | None = None, now: float = 0.0) -> WorkerInfo:
        ws = self.workers[address] = WorkerInfo(address, name, nthreads, memory_limit, pid,
                                                replaces, last_seen=now, last_alive=now)
        self.log.emit(worker_event(ws))
        return ws

    def leave(self, address: str, reason: str) -> WorkerInfo | None:
        """Forget the worker at ``address``; its record, or None if it was not here."""
        ws = self.workers.pop(address, None)
        if ws is not None:
            self.departed[ws.name] = address
            self.log.emit({"event": "worker-removed", "address": address, "name": ws.name,
                           "reason": reason})
        return ws

    def predecessor(self, ws: WorkerInfo) -> str | None:
        """The address of the departed worker ``ws`` was started in place of, if any."""
        return self.departed.get(ws.replaces) if ws.replaces else None

    def set_supervision(self, status: dict) -> None:
        self.supervision = status
        self.log.emit({"event": "supervision", **status})

    # ------------------------------------------------------------ heartbeats ---
    def heard_from(self, address: str, now: float) -> WorkerInfo | None:
        """Any message from a worker shows it is alive: the worker if it just woke up."""
        ws = self.workers.get(address)
        if ws is None:
            return None
        ws.last_seen = ws.last_alive = now
        if ws.status == "running":
            return None
        ws.status = "running"
        self.log.emit(worker_status_event(ws))
        return ws

    def record_metrics(self, address: str, memory: int, now: float) -> None:
        """The worker's resident memory, from its heartbeat."""
        ws = self.workers.get(address)
        if ws is not None:
            ws.memory = memory
            if now - ws.metrics_published >= METRICS_EVENT_INTERVAL:
                ws.metrics_published = now
                self.log.emit({"event": "worker-metrics", "address": address, "memory": memory,
                               "nbytes": ws.nbytes, "nkeys": len(ws.keys)})

    def check_heartbeats(self, now: float, timeout: float = UNRESPONSIVE_AFTER,
                         busy=frozenset()) -> None:
        """Mark workers silent for ``timeout`` s ``busy`` (the addresses in ``busy``: their
        process runs, a task holds the GIL) or ``unresponsive`` (stopped, stuck).

        Neither gets new data while another worker can take it. What was sent to a busy
        worker waits for it; what waits on an unresponsive one goes elsewhere (the
        server's part). Neither is removed: its data is still there and it may resume;
        its connection, not silence, says when it died.
        """
        for ws in self.workers.values():
            if now - ws.last_seen <= timeout:
                continue  # heard from lately (heard_from made it running)
            status = "busy" if ws.address in busy else "unresponsive"
            if status == "busy":
                ws.last_alive = now
            if ws.status != status:
                ws.status = status
                self.log.emit(worker_status_event(ws))

    # ------------------------------------------------------------ names, placement ---
    def responsive(self, addresses) -> list[str]:
        return [a for a in addresses if self.workers[a].status == "running"]

    def resolve_workers(self, workers, strict: bool = True) -> list[str]:
        """Addresses for ``workers=`` (addresses, ``(host, port)`` pairs, names), checked:
        an unknown one raises :class:`UnknownWorkerError`, or (not ``strict``) is left out."""
        if workers is None:
            return sorted(self.workers)
        if isinstance(workers, str) or _is_pair_list(workers):
            workers = [workers]
        by_name = {ws.name: ws.address for ws in self.workers.values()}
        addresses = []
        for w in workers:
            address = (by_name.get(w) if isinstance(w, str) else None) or _normalize_worker(w)
            if address not in self.workers and not strict:
                continue
            if address not in self.workers:
                known = ", ".join(f"{ws.name} ({ws.address})" for ws in self.workers.values())
                raise UnknownWorkerError(f"unknown worker {w!r}; known workers: {known or 'none'}")
            addresses.append(address)
        return list(dict.fromkeys(addresses))

    def candidates_for(self, ks) -> list[str]:
        """The workers to choose from for the task ``ks``: :meth:`allowed_for`, only the
        responsive ones if any (a frozen one may resume)."""
        options = ks.options
        if not ks.restrictions and (options is None or not options.resources):  # most tasks
            workers = self.workers
            return [a for a, ws in workers.items() if ws.status == "running"] or list(workers)
        allowed = self.allowed_for(ks)
        return self.responsive(allowed) or allowed

    def allowed_for(self, ks) -> list[str]:
        """The live workers that may run the task ``ks``: within its restrictions (any
        worker, if they are only a preference and none of them can) and with the
        resources it needs."""
        options = ks.options
        needs = options.resources if options is not None else None
        allowed = self._with_resources(ks.restrictions or self.workers, needs)
        if not allowed and ks.restrictions and options is not None and options.loose:
            allowed = self._with_resources(self.workers, needs)
        return allowed

    def _with_resources(self, addresses, needs: dict | None) -> list[str]:
        workers = self.workers
        return [a for a in addresses if a in workers and
                (not needs or has_resources(workers[a], needs))]

    def choose_workers(self, n: int, workers=None, broadcast: bool = False,
                       exclude=()) -> list[list[str]]:
        """The workers to hold each of ``n`` items.

        Each item goes to one worker, round-robin weighted by threads, or (``broadcast``)
        to every allowed worker. Unresponsive workers get nothing; if every allowed
        worker is unresponsive, say so rather than wait on a frozen process. ``exclude``:
        workers a scatter just saw die, which this state may not know yet.
        """
        usable = self.usable_workers(workers, exclude)
        if broadcast:
            return [usable] * n
        slots = limits.thread_slots(self.workers, usable)
        start, self.round_robin = self.round_robin, self.round_robin + n
        return [[slots[(start + i) % len(slots)]] for i in range(n)]

    def usable_workers(self, workers=None, exclude=()) -> list[str]:
        """The allowed, responsive workers, not in ``exclude`` (the busy ones if no other
        is allowed: what they are sent waits for them); a clear error if none."""
        allowed = [a for a in self.resolve_workers(workers) if a not in exclude]
        if not allowed:
            raise NoWorkersError("no workers are connected to the scheduler")
        usable = self.responsive(allowed) or [a for a in allowed
                                              if self.workers[a].status == "busy"]
        if not usable:
            silent = ", ".join(f"{self.workers[a].name} ({a})" for a in allowed)
            raise NoWorkersError(f"every allowed worker is unresponsive (no heartbeat for "
                                 f"{UNRESPONSIVE_AFTER:g} s): {silent}; it may be stopped or "
                                 "stuck in a long call holding the GIL")
        return usable

    def place(self, nbytes: dict, workers=None, broadcast: bool = False,
              exclude=()) -> dict[str, list[str]]:
        """Workers for each key of ``nbytes`` (key → size) with room under their limits.

        Only responsive workers (see ``choose_workers``); ``exclude``: workers a
        scatter just saw die, which this state may not know yet.
        """
        usable = self.usable_workers(workers, exclude)
        placement = limits.place(self.workers, usable, nbytes, broadcast, self.round_robin)
        self.round_robin += len(nbytes)
        return placement

    def reserve(self, placement: dict, nbytes: dict, sign: int = 1) -> None:
        """Count (``sign=-1``: stop counting) a scatter in flight against its workers' room."""
        for key, addresses in placement.items():
            for address in addresses:
                ws = self.workers.get(address)
                if ws is not None and key not in ws.keys:
                    ws.reserved += sign * (nbytes.get(key) or 0)

    def names_of(self, workers) -> set[str]:
        """Names of the workers ``workers=`` named (names, addresses or pairs), live or not."""
        if isinstance(workers, str) or _is_pair_list(workers):
            workers = [workers]
        by_address = {ws.address: ws.name for ws in self.workers.values()}
        return {by_address.get(_normalize_worker(w), w if isinstance(w, str) else repr(w))
                for w in workers}


def has_resources(ws: WorkerInfo, needs: dict) -> bool:
    """Whether ``ws`` declared at least ``needs`` (``{"GPU": 1}``)."""
    return all(ws.resources.get(name, 0) >= amount for name, amount in needs.items())


def _is_pair_list(workers) -> bool:
    return isinstance(workers, tuple) and len(workers) == 2 and isinstance(workers[1], int)


def _normalize_worker(w) -> str:
    if isinstance(w, tuple) and len(w) == 2:
        return f"tcp://{w[0]}:{w[1]}"
    if isinstance(w, str) and "://" not in w and ":" in w:
        return f"tcp://{w}"
    return w if isinstance(w, str) else repr(w)
