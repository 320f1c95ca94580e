"""What the scheduler records about each worker and each key (see ``state.py``).

Plain data, shared by the parts of :class:`~scatter_magics.engine.scheduler.state.SchedulerState`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Outgoing = list  # list[tuple[tuple[str, str], dict]]: (destination, message) pairs

# Internal key states, and the Future status each one shows to users.
# "resending": scattered data whose every holder died, on its way to a new one (its
# futures stay finished; see resends.py).
PUBLIC_STATUS = {
    "waiting": "pending", "processing": "pending", "memory": "finished",
    "resending": "finished",
    "error": "error", "lost": "lost", "cancelled": "cancelled", "released": "released",
}
GONE = frozenset({"lost", "error", "cancelled", "released"})  # states a new KeyInfo replaces


@dataclass(eq=False)
class WorkerInfo:
    address: str
    name: str
    nthreads: int
    memory_limit: int
    pid: int = 0
    replaces: str | None = None  # the dead worker this one was started in place of
    keys: set = field(default_factory=set)
    # Tasks sent to it, in the order they were sent, each with the seconds of work it was
    # expected to take then (``busy`` is their sum: the worker's occupancy, Dask's word).
    processing: dict = field(default_factory=dict)
    busy: float = 0.0
    acquiring: set = field(default_factory=set)  # standing-broadcast keys being fetched
    nbytes: int = 0
    memory: int = 0  # resident memory of the process, as last reported
    # "busy": no heartbeat for UNRESPONSIVE_AFTER s, but its process runs (a task holds
    # the GIL); "unresponsive": silent and not running (stopped, stuck)
    status: str = "running"
    last_seen: float = 0.0  # when the scheduler last heard from it (monotonic s)
    last_alive: float = 0.0  # when it was last heard from or seen busy (for worker_ttl)
    reserved: int = 0  # bytes of scatters in flight to it, counted against memory_limit
    metrics_published: float = float("-inf")  # when its last worker-metrics event went out
    resources: dict = field(default_factory=dict)  # what it offers tasks: {"GPU": 2}
    long_running: set = field(default_factory=set)  # processing keys that seceded (no thread)

    def stack_time(self) -> float:
        """Seconds until a thread is free for one more task, as far as the scheduler knows."""
        return self.busy / self.nthreads

    def threads_in_use(self) -> int:
        """Tasks sent here that hold a thread (or wait for one); a seceded task holds none."""
        return len(self.processing) - len(self.long_running)

    def assign(self, key, seconds: float) -> None:
        self.processing[key] = seconds
        self.busy += seconds

    def secede(self, key) -> None:
        """The task ``key`` left its thread (``secede()``): its work no longer queues here."""
        seconds = self.processing.get(key)
        if seconds is not None and key not in self.long_running:
            self.long_running.add(key)
            self.processing[key] = 0.0
            self.busy = max(self.busy - seconds, 0.0)

    def unassign(self, key) -> None:
        self.long_running.discard(key)
        seconds = self.processing.pop(key, None)
        if seconds is not None:
            # Reset when empty, so float rounding cannot leave a phantom load behind.
            self.busy = self.busy - seconds if self.processing else 0.0


# The task-only sets of a key start as this shared empty set: most keys are scattered
# data, and six sets per key made the garbage collector a third of scattering a list.
NONE: frozenset = frozenset()


@dataclass(eq=False, slots=True)
class KeyInfo:
    key: str
    state: str  # one of PUBLIC_STATUS's keys
    who_has: set = field(default_factory=set)
    nbytes: int | None = None
    type: str | None = None
    wanted_by: set = field(default_factory=set)  # client ids holding futures
    task: object = None  # Serialized task, for computed keys
    deps: set | frozenset = NONE
    waiting_on: set | frozenset = NONE
    dependents: set | frozenset = NONE  # a set of its own from the first dependent on
    restrictions: set | frozenset = NONE
    processing_on: str | None = None
    started: bool = False  # processing, and its worker's thread has begun running it
    deaths: int = 0  # workers that died while running its task
    exception: BaseException | None = None
    traceback: str | None = None
    shared: bool = False  # one copy in shared memory, however many workers map it
    standing: bool = False  # scattered with broadcast=True: a replica on every allowed worker
    broadcast_names: set | None = None  # the allowed workers' names (None: every worker)
    placed_names: set | None = None  # scattered with workers=: their names, for a resend
    copy: object = None  # a shared-memory key's payload (header, ShmRefs), sent again if lost
    options: TaskOptions | None = None  # a task's (scattered data has none)
    died: tuple = ()  # names of the workers that died holding its last replicas
    prefix: str | None = None  # its task group's name (durations.prefix_of), once known


@dataclass(eq=False, slots=True)
class TaskOptions:
    """How a task runs, beyond its call (``engine/client/task_options.py``)."""

    priority: tuple = (0,)  # lower runs first: (-user priority, generation, order)
    retries: int = 0  # runs left after an error
    resources: dict | None = None  # held while it runs: {"GPU": 1}
    loose: bool = False  # its restrictions are a preference (allow_other_workers)
