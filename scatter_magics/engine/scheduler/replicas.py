"""Who holds what: the one place that keeps ``ws.keys``, ``ws.nbytes`` and ``ks.who_has`` in step.

Every replica the scheduler records or forgets passes through :class:`ReplicaBook`:
scattered data (``hold``), a task's result or a fetched copy (``add``), a replica
deleted or refused (``drop``), a key forgotten (``drop_all``), a worker gone
(``worker_left``). It answers with facts (the keys left with no replica, the keys that
have dependents); what follows from them (recompute, loss, scheduling) is for
:class:`~scatter_magics.engine.scheduler.state.SchedulerState` to decide.

>>> from scatter_magics.engine.scheduler.events import EventLog
>>> from scatter_magics.engine.scheduler.records import WorkerInfo
>>> workers = {"tcp://a:1": WorkerInfo("tcp://a:1", "worker-0", 1, memory_limit=100)}
>>> keys = {}
>>> book = ReplicaBook(workers, keys, EventLog())
>>> book.hold("client-1", {"x": ["tcp://a:1"]}, {"x": 8}, {"x": "int"})
[]
>>> workers["tcp://a:1"].keys, workers["tcp://a:1"].nbytes, keys["x"].who_has
({'x'}, 8, {'tcp://a:1'})
>>> book.drop_all(keys["x"])
[(('worker', 'tcp://a:1'), {'op': 'delete-keys', 'keys': ['x']})]
>>> workers["tcp://a:1"].keys, workers["tcp://a:1"].nbytes, keys["x"].who_has
(set(), 0, set())
"""

from __future__ import annotations

from .events import EventLog
from .records import GONE, KeyInfo, Outgoing, WorkerInfo


class ReplicaBook:
    """The replicas of every key, counted on both sides: the key's and its holder's."""

    def __init__(self, workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo], log: EventLog):
        self.workers = workers
        self.keys = keys
        self.log = log

    def hold(self, client: str | None, placement: dict, nbytes: dict, types: dict,
             shared=()) -> list[KeyInfo]:
        """Record keys as data in memory: ``placement`` maps key → addresses that store it.

        A key in a state a new record replaces (lost, errored, ...) gets a new
        ``KeyInfo``, with the old one's dependents (a task that read the old one may be
        recomputed from the new one). Returns the keys that have dependents, whose tasks
        may now run.
        """
        # Called with every element of a scattered list: one pass, no call per key;
        # events and dependents are the caller's, for the few keys that need them.
        with_dependents = []
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
            if ks.dependents:
                with_dependents.append(ks)
        return with_dependents

    def add(self, ks: KeyInfo, address: str, nbytes: int | None = None) -> None:
        """``address`` holds a copy of ``ks`` (of ``nbytes``, if given) too."""
        ws = self.workers.get(address)
        if ws is None:
            return
        if nbytes is not None:
            ks.nbytes = nbytes
        if ks.key not in ws.keys:
            ws.keys.add(ks.key)
            ws.nbytes += ks.nbytes or 0
        ks.who_has.add(address)
        ks.died = ()  # held again (recomputed): the old loss no longer describes it

    def drop(self, ks: KeyInfo, address: str, delete: bool = True) -> Outgoing:
        """``address`` no longer holds ``ks``; ``delete``: tell it to delete its copy."""
        ws = self.workers.get(address)
        if ws is not None and ks.key in ws.keys:
            ws.keys.discard(ks.key)
            ws.nbytes -= ks.nbytes or 0
        ks.who_has.discard(address)
        return [(("worker", address), {"op": "delete-keys", "keys": [ks.key]})] if delete else []

    def drop_all(self, ks: KeyInfo) -> Outgoing:
        """Nobody holds ``ks`` any more: each live holder deletes its copy."""
        out: Outgoing = []
        for address in ks.who_has:
            ws = self.workers.get(address)
            if ws is not None and ks.key in ws.keys:
                ws.keys.discard(ks.key)
                ws.nbytes -= ks.nbytes or 0
                out.append((("worker", address), {"op": "delete-keys", "keys": [ks.key]}))
        ks.who_has = set()
        return out

    def worker_left(self, ws: WorkerInfo) -> list[KeyInfo]:
        """``ws`` is gone with its copies: the keys in memory it held the last copy of."""
        orphaned = []
        for key in ws.keys:
            ks = self.keys.get(key)
            if ks is None:
                continue
            ks.who_has.discard(ws.address)
            if not ks.who_has and ks.state == "memory":
                ks.died = (*ks.died, ws.name)  # a lost key's row says who died with it
                orphaned.append(ks)
            else:
                self.log.emit_key(ks)
        return orphaned

    # ------------------------------------------------------------ how many, where ---
    @staticmethod
    def held_among(ks: KeyInfo, allowed: list[str]) -> list[str]:
        return [a for a in allowed if a in ks.who_has]

    def reduce(self, ks: KeyInfo, held: list[str], n: int) -> Outgoing:
        """Delete the copies of ``ks`` on ``held`` beyond ``n``, from the fullest workers.

        A copy that a task running there reads stays.
        """
        held = sorted(held, key=lambda a: self.workers[a].nbytes, reverse=True)
        out: Outgoing = []
        for address in [a for a in held if not self._read_there(ks, a)][:len(held) - n]:
            out += self.drop(ks, address)
        return out

    def _read_there(self, ks: KeyInfo, address: str) -> bool:
        return any(self.keys[d].processing_on == address for d in ks.dependents if d in self.keys)

    def targets(self, ks: KeyInfo, allowed: list[str], usable: list[str],
                n: int | None) -> list[str]:
        """The ``usable`` workers, emptiest first, to copy ``ks`` to: up to ``n`` copies
        among ``allowed`` (``None``: one on each)."""
        missing = [a for a in usable if a not in ks.who_has]
        want = len(allowed) if n is None else max(0, n - len(ks.who_has & set(allowed)))
        missing.sort(key=lambda a: self.workers[a].nbytes)
        return missing[:want]

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
