"""Which worker runs a task: the one where it would start soonest (Dask's cost model).

A worker's start time for a task is its occupancy per thread (the expected seconds of
the tasks already sent to it, :class:`~.durations.TaskDurations`) plus the time to fetch
the inputs it lacks: ``LATENCY`` per input, and its bytes at ``BANDWIDTH``. An input in
shared memory costs only the latency: the worker maps it, nothing is copied. So a task
whose inputs are small goes wherever a thread is free soonest, and a task whose inputs
are large stays with them unless the queue there is longer than the copy.

Every allowed worker is a candidate, not only the holders of the inputs (Dask's
``decide_worker`` looks at holders and relies on stealing to spread work later): on one
machine the workers are few, and a task placed right is never stolen. The exception is
an input of ``LARGE_INPUT`` bytes or more: only its holders, when placed or stolen.

>>> from scatter_magics.engine.scheduler.records import KeyInfo, WorkerInfo
>>> workers = {a: WorkerInfo(a, a, nthreads=1, memory_limit=0) for a in ("w0", "w1")}
>>> keys = {"x": KeyInfo("x", "memory", who_has={"w0"}, nbytes=8)}
>>> place = Placement(workers, keys, TaskDurations())
>>> first = KeyInfo("inc-1", "waiting", deps={"x"})
>>> place.choose(first, ["w0", "w1"])  # where its input is
'w0'
>>> place.assign(first, "w0")  # half a second of work there now (a prefix never seen)
>>> place.choose(KeyInfo("inc-2", "waiting", deps={"x"}), ["w0", "w1"])  # a copy is quicker
'w1'
"""

from __future__ import annotations

from .durations import TaskDurations
from .records import KeyInfo, WorkerInfo
from .worker_book import has_resources

# Measured between two workers of one LocalCluster (2-core VM, load ~17): a small input
# fetched from a peer cost 0.6-1.2 ms more than reading it locally, 10 MB 40 ms and
# 100 MB 380 ms (~260 MB/s; Dask assumes 100 MB/s between hosts).
LATENCY = 0.001  # s per input fetched from a peer
BANDWIDTH = 250e6  # bytes/s
# An input this large keeps its task on a worker that holds it (in shared memory too: a
# task placed there is where `who_has` says its data is): placed there, and stolen only
# by another holder. Estimates are 0.5 s until a function's duration is known, so a
# burst of short tasks over inputs split across the workers would otherwise be spread
# by queues that are not real (broadcast-model.ipynb: 8 batches of 4 MB on 2 workers;
# test_split: a 100,000-row frame in 6 pieces). Below it a copy costs less than a
# quarter of a peer fetch's latency (0.25 ms at 250 MB/s): every worker is a candidate.
LARGE_INPUT = 64 << 10  # bytes


class Placement:
    """Chooses a worker for a task and keeps each worker's occupancy (``ws.busy``)."""

    def __init__(self, workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo],
                 durations: TaskDurations):
        self.workers = workers
        self.keys = keys
        self.durations = durations

    def choose(self, ks: KeyInfo, candidates: list[str]) -> str:
        """The candidate where ``ks`` would start soonest; ties go to the one holding least.

        Workers without room for the inputs they would fetch (``memory_limit``) are
        passed over while another can run it.
        """
        workers = self.workers
        if not ks.deps:  # most tasks of a plain submit: no input to weigh
            return min(candidates, key=lambda a: (workers[a].stack_time(), workers[a].nbytes))
        candidates = self.holders_of_large_inputs(ks, candidates) or candidates
        best, best_cost = candidates[0], None
        for address in candidates:
            ws = workers[address]
            missing = self.missing_bytes(ks, ws)
            cost = (ws.memory_limit and ws.nbytes + missing > ws.memory_limit,
                    ws.stack_time() + self.transfer_time(ks, ws), ws.nbytes)
            if best_cost is None or cost < best_cost:
                best, best_cost = address, cost
        return best

    def holders_of_large_inputs(self, ks: KeyInfo, candidates: list[str]) -> list[str]:
        """The candidates holding an input of ``ks`` of at least ``LARGE_INPUT`` bytes."""
        holders = self.large_input_holders(ks)
        return [a for a in candidates if a in holders] if holders else []

    def large_input_holders(self, ks: KeyInfo) -> set:
        """The workers ``ks`` stays with (empty: any): those holding every input of
        ``LARGE_INPUT`` bytes or more, or if none holds them all, any of them. Placed
        there, and never stolen elsewhere. (A model broadcast to every worker and a batch
        on one: the batch's holder, not every worker, which let a burst of such tasks
        drift off their batches: broadcast-model.ipynb scored 6 of 8 where they live.)"""
        every: set | None = None
        some: set = set()
        for dep in ks.deps:
            dks = self.keys.get(dep)
            if dks is not None and (dks.nbytes or 0) >= LARGE_INPUT:
                every = set(dks.who_has) if every is None else every & dks.who_has
                some |= dks.who_has
        return every or some

    def transfer_time(self, ks: KeyInfo, ws: WorkerInfo) -> float:
        """Seconds for ``ws`` to fetch the inputs of ``ks`` it does not hold."""
        seconds = 0.0
        for dep in ks.deps:
            dks = self.keys.get(dep)
            if dks is not None and ws.address not in dks.who_has:
                seconds += LATENCY + (0.0 if dks.shared else (dks.nbytes or 0) / BANDWIDTH)
        return seconds

    def missing_bytes(self, ks: KeyInfo, ws: WorkerInfo) -> int:
        """Bytes of the inputs of ``ks`` that ``ws`` would copy to run it."""
        total = 0
        for dep in ks.deps:
            dks = self.keys.get(dep)
            if dks is not None and ws.address not in dks.who_has and not dks.shared:
                total += dks.nbytes or 0
        return total

    def assign(self, ks: KeyInfo, address: str) -> None:
        """``ks`` is sent to ``address``: its expected duration counts there until it ends."""
        self.workers[address].assign(ks.key, self.durations.expected_of(ks))

    def allowed(self, ks: KeyInfo, address: str) -> bool:
        """Whether ``ks`` may move to ``address`` (work stealing): within its ``workers=``
        unless they are a preference only (``allow_other_workers``, as Dask steals such
        tasks), and never to a worker without the ``resources=`` it needs."""
        options = ks.options
        if ks.restrictions and address not in ks.restrictions and \
                (options is None or not options.loose):
            return False
        needs = options.resources if options is not None else None
        ws = self.workers.get(address)
        return ws is not None and (not needs or has_resources(ws, needs))
