"""Scattered data sent again when every worker holding it died.

Scattered data has no task to recompute it from, but two copies outlive the workers:

- a **shared-memory** key's bytes are in the pool's segment, which the cluster's owner
  keeps while the scheduler records the key. The scheduler keeps the key's payload
  (``KeyInfo.copy``: the pickle header and ``ShmRef``\\ s, a few hundred bytes) and puts it
  on another worker itself, which maps the same segment: nothing is copied.
- the **clients** that hold the key: each keeps the pickle of the small values it
  scattered, and may have a source for the others (the magics' variable). They are
  asked (a ``resend`` report) and answer with the data (``resend-data``, placed by the
  server through :meth:`Resends.targets`) or a refusal (:meth:`Resends.refused`), the
  source's own message if it has one ("b changed after it was scattered ...").

Meanwhile the key is ``resending``, which its futures see as ``finished``: tasks that
read it wait for it, a gather waits for it (``server.py``). It is lost only when nobody
can send it: no copy, and every client refused or left. The same calling convention as
:class:`~scatter_magics.engine.scheduler.state.SchedulerState`: plain synchronous
methods that return the messages to send.

>>> from scatter_magics.engine.scheduler.state import SchedulerState
>>> state = SchedulerState()
>>> _ = state.add_worker("tcp://a:1", "worker-0", 1, memory_limit=100)
>>> _ = state.add_data("client-1", {"x": ["tcp://a:1"]}, {"x": 8}, {"x": "int"})
>>> state.remove_worker("tcp://a:1", "was killed by SIGKILL")  # the client is asked
[(('client', 'client-1'), {'op': 'resend', 'keys': ['x']})]
>>> state.keys["x"].state, state.info()["nkeys"]
('resending', 1)
>>> _ = state.add_worker("tcp://b:1", "worker-1", 1, memory_limit=100)
>>> state.resends.targets(["x"])
{'x': ['tcp://b:1']}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ...errors import FutureLostError
from ..shm.pool import ShmRef
from .records import KeyInfo, Outgoing, WorkerInfo

if TYPE_CHECKING:
    from .events import EventLog
    from .tasks import TaskMachine
    from .worker_book import WorkerBook


class Resends:
    """The keys being sent again, who was asked for them, and the copies waiting for room.

    ``record(placement, nbytes, types)`` records keys as held (the state's ``add_data``
    for nobody's scatter), for the copies placed here.
    """

    def __init__(self, keys: dict[str, KeyInfo], workers: dict[str, WorkerInfo], log: EventLog,
                 worker_book: WorkerBook, tasks: TaskMachine, record: Callable):
        self.keys, self.workers, self.log = keys, workers, log
        self.worker_book, self.tasks, self.record = worker_book, tasks, record
        self.asked: dict = {}  # key -> clients asked and not answered yet
        self.refusals: dict = {}  # key -> the first refusal that said why
        self.deaths: dict = {}  # key -> how its last holder died
        self.homeless: set = set()  # keys with a copy, waiting for a usable worker
        self.restricted: set = set()  # keys placed with workers= (names a replacement inherits)

    @property
    def active(self) -> bool:
        """Keys are being sent again (else a scatter has nothing to check here)."""
        return bool(self.deaths)

    # ------------------------------------------------------------ starting ---
    def keep(self, ks: KeyInfo, names: set | None, copy) -> None:
        """Remember how scattered ``ks`` was placed (``workers=`` names) and its copy."""
        if names is not None and not ks.standing:
            ks.placed_names = set(names)
            self.restricted.add(ks.key)
        if copy is not None:
            ks.copy = _own(copy)

    def start(self, orphaned: list[KeyInfo], death: str) -> tuple[Outgoing, list[KeyInfo]]:
        """Send again the scattered keys of ``orphaned`` that can be; the others are returned
        (recomputed or lost by the caller). ``death`` says how their last holder died."""
        out: Outgoing = []
        rest, copies, by_client = [], [], {}
        for ks in orphaned:
            clients = [c for c in ks.wanted_by if type(c) is str]  # not datasets' names
            if ks.task is not None or (ks.copy is None and not clients):
                rest.append(ks)
                continue
            ks.state = "resending"
            self.deaths[ks.key] = death
            for dependent in list(ks.dependents):  # tasks that would read it wait for it
                dks = self.keys.get(dependent)
                if dks is not None and dks.state in ("waiting", "processing"):
                    self.tasks.wait_again(dks, ks.key)
            if ks.copy is not None:
                copies.append(ks)
            else:
                self.asked[ks.key] = set(clients)
                for client in clients:
                    by_client.setdefault(client, []).append(ks.key)
        out += [(("client", c), {"op": "resend", "keys": keys}) for c, keys in by_client.items()]
        return out + self._place_copies(copies), rest

    def _place_copies(self, keys: list[KeyInfo]) -> Outgoing:
        """Put each copy on its targets (one put-data per worker); keep those with none."""
        by_worker: dict = {}
        placement, nbytes, types = {}, {}, {}
        for ks in keys:
            targets = self.targets([ks.key]).get(ks.key)
            if not targets:
                self.homeless.add(ks.key)
                continue
            self.homeless.discard(ks.key)
            placement[ks.key], nbytes[ks.key], types[ks.key] = targets, ks.nbytes, ks.type
            for address in targets:
                by_worker.setdefault(address, {})[ks.key] = ks.copy
        out: Outgoing = [(("worker", a), {"op": "put-data", "data": data})
                         for a, data in by_worker.items()]
        return out + (self.record(placement, nbytes, types) if placement else [])

    # ------------------------------------------------------------ where ---
    def targets(self, keys) -> dict[str, list[str]]:
        """``{key: addresses}`` for the keys of ``keys`` still ``resending``: every usable
        allowed worker for a standing broadcast, else the one holding least (``[]``: no
        usable worker now). Busy workers only when no other may take it."""
        out = {}
        for key in keys:
            ks = self.keys.get(key)
            if ks is None or ks.state != "resending":
                continue
            names = ks.broadcast_names if ks.standing else ks.placed_names
            allowed = [a for a, ws in self.workers.items() if names is None or ws.name in names]
            usable = self.worker_book.responsive(allowed) or [
                a for a in allowed if self.workers[a].status == "busy"]
            if ks.standing or not usable:
                out[key] = usable
            else:
                out[key] = [min(usable, key=lambda a: (self.workers[a].nbytes, a))]
        return out

    def worker_joined(self, ws: WorkerInfo) -> Outgoing:
        """A replacement inherits its predecessor's place in ``workers=``; waiting copies go."""
        if ws.replaces is not None:
            for key in list(self.restricted):
                ks = self.keys.get(key)
                if ks is None or ks.placed_names is None:
                    self.restricted.discard(key)
                elif ws.replaces in ks.placed_names:
                    ks.placed_names.add(ws.name)
        return self._place_copies([self.keys[k] for k in list(self.homeless) if k in self.keys])

    # ------------------------------------------------------------ answers ---
    def done(self, keys) -> None:
        """``keys`` are held again (sent by a client, or scattered anew)."""
        for key in keys:
            if key in self.deaths:
                del self.deaths[key]
                self.asked.pop(key, None)
                self.refusals.pop(key, None)
                self.homeless.discard(key)

    def refused(self, client: str, errors: dict) -> Outgoing:
        """``client`` cannot send these keys: ``{key: why}`` (a ``FutureLostError``, or
        None when it simply has no copy). The last refusal loses the key."""
        out: Outgoing = []
        for key, error in errors.items():
            asked = self.asked.get(key)
            if asked is None or client not in asked:
                continue
            asked.discard(client)
            if error is not None:
                self.refusals.setdefault(key, error)
            if not asked:
                out += self._lose(key)
        return out

    def client_left(self, client: str) -> Outgoing:
        """``client`` will never answer."""
        return self.refused(client, {k: None for k, asked in self.asked.items()
                                     if client in asked})

    def give_up(self, why: str) -> Outgoing:
        """No worker will come to hold the waiting copies (supervision gave up)."""
        out: Outgoing = []
        for key in list(self.homeless):
            self.refusals.setdefault(key, FutureLostError(
                f"key {key!r} was lost: its only holder {self.deaths.get(key)}, and no "
                f"worker is left to take it over ({why})"))
            out += self._lose(key)
        return out

    def _lose(self, key) -> Outgoing:
        death = self.deaths.pop(key, "died")
        self.asked.pop(key, None)
        self.homeless.discard(key)
        error = self.refusals.pop(key, None) or FutureLostError(
            f"key {key!r} was lost: its only holder {death}, and it was scattered data with "
            "no other replica: scatter it again (broadcast=True keeps a replica on every "
            "worker)")
        ks = self.keys.get(key)
        if ks is None or ks.state != "resending":
            return []
        return self.tasks.fail(ks, error, "", "lost")


def _own(payload):
    """``payload`` holding no view of a caller's memory: small buffers left inline by the
    pool (< 1 MiB) are copied; ``ShmRef``\\ s stay (the segment is the pool's)."""
    buffers = getattr(payload, "buffers", ())
    if all(isinstance(b, ShmRef) or type(b) is bytes for b in buffers):
        return payload
    return type(payload)(payload.header, [b if isinstance(b, ShmRef) else bytes(b)
                                          for b in buffers])
