"""Work stealing: queued tasks move to workers that would start them sooner.

:class:`~.placement.Placement` decides when a task becomes ready, from estimates; then
workers join (``cluster.scale``), tasks take longer or shorter than expected, and some
workers run dry while others still have a queue. :meth:`WorkStealing.balance` finds
those queues: it moves a task sent to a *victim*, and not yet started there, to the
*thief* that would start it soonest, if that is sooner than on the victim counting the
copy of its inputs (``Placement.transfer_time``: a large input stays where it is unless
the queue is longer than the copy). A task is never moved to a worker its ``workers=``
excludes (unless ``allow_other_workers``) or that lacks its ``resources=``.

Moving asks the victim first (``{"op": "steal", "key": ...}``): it gives the task up
only if no thread has taken it, and says so (``steal-response``), so a task never runs
twice. Until the answer the task stays the victim's, and the move is counted in both
workers' loads (``incoming``/``outgoing``) so one pass does not promise it twice.

>>> from scatter_magics.engine.scheduler.durations import TaskDurations
>>> from scatter_magics.engine.scheduler.records import KeyInfo, WorkerInfo
>>> workers = {a: WorkerInfo(a, a, nthreads=1, memory_limit=0) for a in ("w0", "w1")}
>>> keys = {f"inc-{i}": KeyInfo(f"inc-{i}", "processing", processing_on="w0")
...         for i in range(4)}
>>> place = Placement(workers, keys, TaskDurations())
>>> for ks in keys.values():
...     place.assign(ks, "w0")  # all four queued on w0; then w1 joins
>>> stealing = WorkStealing(workers, keys, place)
>>> [(dest, msg["key"]) for dest, msg in stealing.balance()]
[(('worker', 'w0'), 'inc-3'), (('worker', 'w0'), 'inc-2')]
>>> stealing.stolen("w0", "inc-3", withdrawn=True)  # w0 gave it up: where it goes now
'w1'
"""

from __future__ import annotations

from dataclasses import dataclass

from .placement import LATENCY, Placement
from .records import KeyInfo, Outgoing, WorkerInfo

SCAN = 32  # tasks looked at per victim and pass, the last sent first: a pass stays cheap
MAX_MOVES = 1000  # per pass
# What a move costs beyond copying inputs: the steal's round trip to the victim and the
# compute message to the thief (two ~1 ms hops, placement.LATENCY). A task is moved
# only if it starts sooner by more than that: 1,000 tasks of a microsecond each are
# never worth moving (measured before this rule: ~200 steals per 1,000 such tasks).
STEAL_COST = 2 * LATENCY


@dataclass(slots=True)
class Steal:
    victim: str
    thief: str
    seconds: float  # the task's expected duration, counted on the thief meanwhile
    counted: float  # what the victim counts for it (``victim.processing[key]``)


class WorkStealing:
    """Steal requests out (:meth:`balance`), answers in (:meth:`stolen`)."""

    def __init__(self, workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo],
                 placement: Placement):
        self.workers = workers
        self.keys = keys
        self.placement = placement
        self.in_flight: dict = {}  # key → Steal, until the victim answers
        self.incoming: dict[str, float] = {}  # address → seconds on their way to it
        self.outgoing: dict[str, list] = {}  # address → [tasks, seconds] being taken from it

    # ------------------------------------------------------------ deciding ---
    def wanted(self, address: str) -> bool:
        """Whether a pass may help now that ``address`` finished a task: it has a free
        thread and some worker has a queue (the cheap test on every finished task)."""
        ws = self.workers.get(address)
        if ws is None or ws.threads_in_use() >= ws.nthreads:
            return False
        return any(self._queued(other) > 0 for other in self.workers.values())

    def balance(self) -> Outgoing:
        """Steal requests that even out the workers' queues (see the module docstring)."""
        out: Outgoing = []
        exhausted: set[str] = set()
        while len(out) < MAX_MOVES:
            victims = [ws for ws in self.workers.values()
                       if ws.address not in exhausted and ws.status == "running"
                       and self._queued(ws) > 0]
            if not victims:
                break
            victim = max(victims, key=self.stack_time)
            move = self._pick(victim)
            if move is None:
                exhausted.add(victim.address)
            else:
                out.append(self._request(victim, *move))
        return out

    def stack_time(self, ws: WorkerInfo) -> float:
        """``ws.stack_time()`` with the steals on their way counted where they go."""
        taken = self.outgoing.get(ws.address)
        busy = ws.busy + self.incoming.get(ws.address, 0.0) - (taken[1] if taken else 0.0)
        return busy / ws.nthreads

    def _queued(self, ws: WorkerInfo) -> int:
        """Tasks sent to ``ws`` beyond one per thread and not being taken from it already."""
        taken = self.outgoing.get(ws.address)
        return ws.threads_in_use() - ws.nthreads - (taken[0] if taken else 0)

    def _pick(self, victim: WorkerInfo) -> tuple[KeyInfo, WorkerInfo, float] | None:
        """A task queued on ``victim`` and the thief that would start it soonest, if sooner."""
        thieves = [ws for ws in self.workers.values()
                   if ws is not victim and ws.status == "running"]
        victim_start = self.stack_time(victim)
        expected = self.placement.durations.expected_of
        for key in _last(victim.processing, SCAN):
            ks = self.keys.get(key)
            if ks is None or ks.started or key in self.in_flight:
                continue
            seconds = expected(ks)
            stays_with = self.placement.large_input_holders(ks)  # (empty: may go anywhere)
            # On the victim it waits (at least) for the work queued before it.
            wait_there = victim_start - seconds / victim.nthreads - STEAL_COST
            best, best_start = None, wait_there
            for thief in thieves:
                if not self.placement.allowed(ks, thief.address) or \
                        (stays_with and thief.address not in stays_with):
                    continue
                start = self.stack_time(thief) + self.placement.transfer_time(ks, thief)
                if start < best_start:
                    best, best_start = thief, start
            if best is not None:
                return ks, best, seconds
        return None

    def _request(self, victim: WorkerInfo, ks: KeyInfo, thief: WorkerInfo, seconds: float):
        counted = victim.processing.get(ks.key, 0.0)
        self.in_flight[ks.key] = Steal(victim.address, thief.address, seconds, counted)
        self.incoming[thief.address] = self.incoming.get(thief.address, 0.0) + seconds
        taken = self.outgoing.setdefault(victim.address, [0, 0.0])
        taken[0] += 1
        taken[1] += counted
        return (("worker", victim.address), {"op": "steal", "key": ks.key})

    # ------------------------------------------------------------ answers ---
    def stolen(self, address: str, key, withdrawn: bool) -> str | None:
        """The victim's answer; the thief to send the task to now, or None.

        None when the victim kept it (a thread had taken it, or it had finished), or when
        the task is no longer the victim's to give (cancelled, released, rescheduled).
        """
        steal = self.in_flight.get(key)
        if steal is None or steal.victim != address:
            return None
        self._forget(key)
        ks = self.keys.get(key)
        if ks is None or ks.state != "processing" or ks.processing_on != address:
            return None
        if not withdrawn:
            ks.started = True  # a thread runs it there: not to be asked for again
            return None
        return steal.thief

    def worker_left(self, address: str) -> None:
        """Steals from a dead victim get no answer (its tasks are rerun by Recovery); a
        dead thief's are settled when the answer comes (the task then goes elsewhere)."""
        for key in [k for k, s in self.in_flight.items() if s.victim == address]:
            self._forget(key)
        self.outgoing.pop(address, None)
        self.incoming.pop(address, None)

    def _forget(self, key) -> None:
        steal = self.in_flight.pop(key)
        if steal.thief in self.incoming:
            left = self.incoming[steal.thief] - steal.seconds
            self.incoming[steal.thief] = left if left > 1e-9 else 0.0
        taken = self.outgoing.get(steal.victim)
        if taken is not None:
            taken[0] -= 1
            taken[1] -= steal.counted
            if taken[0] <= 0:
                del self.outgoing[steal.victim]


def _last(processing: dict, n: int) -> list:
    """The last ``n`` keys of ``processing`` (the most recently sent), last first."""
    keys = []
    for key in reversed(processing):
        keys.append(key)
        if len(keys) == n:
            break
    return keys
