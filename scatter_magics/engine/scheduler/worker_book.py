"""The workers' side of the scheduler's state: names, heartbeats, where new data goes.

A mixin of :class:`~scatter_magics.engine.scheduler.state.SchedulerState` (which holds
``workers``, ``keys`` and ``_emit``); the same calling convention: plain synchronous
methods that return the messages to send.
"""

from __future__ import annotations

from ...errors import NoWorkersError, UnknownWorkerError
from ..shm import limits
from .records import Outgoing, WorkerInfo

UNRESPONSIVE_AFTER = 3.0  # s without a heartbeat (workers send one every 0.5 s)
METRICS_EVENT_INTERVAL = 1.0  # s between worker-metrics events of one worker


class WorkerBook:
    """Heartbeats, ``workers=`` resolution and placement, over ``self.workers``."""

    def set_supervision(self, status: dict) -> Outgoing:
        self.supervision = status
        self._emit({"event": "supervision", **status})
        return []

    def update_metrics(self, address: str, memory: int, now: float = 0.0) -> Outgoing:
        """A heartbeat, with the worker's resident memory."""
        out = self.heard_from(address, now)
        ws = self.workers.get(address)
        if ws is not None:
            ws.memory = memory
            if now - ws.metrics_published >= METRICS_EVENT_INTERVAL:
                ws.metrics_published = now
                self._emit({"event": "worker-metrics", "address": address, "memory": memory,
                            "nbytes": ws.nbytes, "nkeys": len(ws.keys)})
        return out

    # ------------------------------------------------------------ heartbeats ---
    def heard_from(self, address: str, now: float) -> Outgoing:
        """Any message from a worker shows it is alive; a silent one is responsive again."""
        ws = self.workers.get(address)
        if ws is None:
            return []
        ws.last_seen = now
        if ws.status == "running":
            return []
        ws.status = "running"
        self._emit(self.worker_status_event(ws))
        return self._top_up_broadcasts(ws)  # what was broadcast while it was frozen

    def check_heartbeats(self, now: float, timeout: float = UNRESPONSIVE_AFTER) -> Outgoing:
        """Mark workers silent for ``timeout`` s unresponsive: nothing new is placed on them.

        A frozen worker (SIGSTOP, a debugger, a C call holding the GIL) is not removed:
        its data is still there and it may resume; its connection, not silence, says
        when it died.
        """
        for ws in self.workers.values():
            if ws.status == "running" and now - ws.last_seen > timeout:
                ws.status = "unresponsive"
                self._emit(self.worker_status_event(ws))
        return []

    def responsive(self, addresses) -> list[str]:
        return [a for a in addresses if self.workers[a].status == "running"]

    def resolve_workers(self, workers) -> list[str]:
        """Addresses for ``workers=`` (addresses, ``(host, port)`` pairs, names), checked."""
        if workers is None:
            return sorted(self.workers)
        if isinstance(workers, str) or _is_pair_list(workers):
            workers = [workers]
        by_name = {ws.name: ws.address for ws in self.workers.values()}
        addresses = []
        for w in workers:
            address = (by_name.get(w) if isinstance(w, str) else None) or _normalize_worker(w)
            if address not in self.workers:
                known = ", ".join(f"{ws.name} ({ws.address})" for ws in self.workers.values())
                raise UnknownWorkerError(f"unknown worker {w!r}; known workers: {known or 'none'}")
            addresses.append(address)
        return list(dict.fromkeys(addresses))

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
        slots = [a for a in usable for _ in range(self.workers[a].nthreads)]
        start, self._round_robin = self._round_robin, self._round_robin + n
        return [[slots[(start + i) % len(slots)]] for i in range(n)]

    def usable_workers(self, workers=None, exclude=()) -> list[str]:
        """The allowed, responsive workers, not in ``exclude``; a clear error if none."""
        allowed = [a for a in self.resolve_workers(workers) if a not in exclude]
        if not allowed:
            raise NoWorkersError("no workers are connected to the scheduler")
        usable = self.responsive(allowed)
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
        placement = limits.place(self.workers, usable, nbytes, broadcast, self._round_robin)
        self._round_robin += len(nbytes)
        return placement

    def reserve(self, placement: dict, nbytes: dict, sign: int = 1) -> None:
        """Count (``sign=-1``: stop counting) a scatter in flight against its workers' room."""
        for key, addresses in placement.items():
            for address in addresses:
                ws = self.workers.get(address)
                if ws is not None and key not in ws.keys:
                    ws.reserved += sign * (nbytes.get(key) or 0)

    def _names_of(self, workers) -> set[str]:
        """Names of the workers ``workers=`` named (names, addresses or pairs), live or not."""
        if isinstance(workers, str) or _is_pair_list(workers):
            workers = [workers]
        by_address = {ws.address: ws.name for ws in self.workers.values()}
        return {by_address.get(_normalize_worker(w), w if isinstance(w, str) else repr(w))
                for w in workers}

    @staticmethod
    def worker_event(ws: WorkerInfo) -> dict:
        return {"event": "worker-added", "address": ws.address, "name": ws.name,
                "nthreads": ws.nthreads, "memory_limit": ws.memory_limit,
                "replaces": ws.replaces}

    @staticmethod
    def worker_status_event(ws: WorkerInfo) -> dict:
        return {"event": "worker-status", "address": ws.address, "name": ws.name,
                "status": ws.status}


def _is_pair_list(workers) -> bool:
    return isinstance(workers, tuple) and len(workers) == 2 and isinstance(workers[1], int)


def _normalize_worker(w) -> str:
    if isinstance(w, tuple) and len(w) == 2:
        return f"tcp://{w[0]}:{w[1]}"
    if isinstance(w, str) and "://" not in w and ":" in w:
        return f"tcp://{w}"
    return w if isinstance(w, str) else repr(w)
