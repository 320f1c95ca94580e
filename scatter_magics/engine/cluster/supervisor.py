"""Supervision of a LocalCluster's worker processes: spawn them, notice deaths, replace them.

What Dask's nanny does for each of its workers, one thread does here for the whole
cluster: a worker that dies (the OOM killer's SIGKILL, a crash in a C extension) is
replaced within a fraction of a second under a new name, until too many have died
too quickly (a crash loop), when replacing stops and says why.

>>> budget = RestartBudget(limit=2, window=60)
>>> budget.take(now=0.0), budget.take(now=1.0), budget.take(now=2.0)
(True, True, False)
>>> budget.take(now=61.0)
True
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import signal
import subprocess
import threading
import time
from typing import Callable

logger = logging.getLogger(__name__)

RESTART_LIMIT = 5  # replacements allowed ...
RESTART_WINDOW = 60.0  # ... within this many seconds; more deaths than that is a crash loop
POLL_INTERVAL = 0.1  # s between checks of the processes (a removal wakes it sooner)

_STOP = object()


class RestartBudget:
    """At most ``limit`` restarts within any ``window`` seconds."""

    def __init__(self, limit: int = RESTART_LIMIT, window: float = RESTART_WINDOW):
        self.limit, self.window = limit, window
        self._times: collections.deque[float] = collections.deque()

    def take(self, now: float) -> bool:
        """Spend one restart at ``now`` if the budget allows it."""
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True

    def refill(self) -> None:
        self._times.clear()


def describe_exit(returncode: int | None) -> str:
    """``'was killed by SIGKILL'``, ``'exited with code 3'``: how a process ended."""
    if returncode is None:
        return "lost its connection to the scheduler"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return "exited" if returncode == 0 else f"exited with code {returncode}"


class Supervisor:
    """One thread that spawns every worker process and replaces those that die.

    Every spawn happens on this thread, which lives as long as the cluster: on Linux a
    worker asks for SIGTERM when the *thread* that forked it ends (``PR_SET_PDEATHSIG``,
    see prctl(2): "the parent thread"), so a worker forked by a short-lived thread (a
    thread pool's, ``asyncio.to_thread``'s) would die with that thread.

    ``spawn(name, replaces)`` starts a process; ``introduce(proc)`` tells it where the
    scheduler is (not possible before the scheduler listens); ``on_change()`` runs on
    this thread after a replacement or when the budget runs out.
    """

    def __init__(self, spawn: Callable[[str, str | None], subprocess.Popen],
                 introduce: Callable[[subprocess.Popen], subprocess.Popen],
                 on_change: Callable[[], None], budget: RestartBudget | None = None):
        self._spawn, self._introduce, self._on_change = spawn, introduce, on_change
        self.budget = budget or RestartBudget()
        self.processes: dict[str, subprocess.Popen] = {}  # every worker ever started, by name
        self.retired: set[str] = set()  # dead workers already replaced or given up on
        self.replacing = False  # off while the cluster starts (deaths are errors) and closes
        self.restarts = 0
        self.message: str | None = None  # why replacing stopped (the budget ran out)
        self.target = 0  # how many workers should be alive
        self._replacing_lock = threading.Lock()  # no replacement starts once closing began
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="scatter-magics-supervisor",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the thread ---
    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=POLL_INTERVAL)
            except queue.Empty:
                job = None
            if job is _STOP:
                return
            if job is not None:
                job()
            try:
                self._replace_dead()
            except Exception:  # never let one failed spawn end supervision
                logger.exception("error while replacing dead workers")

    def call(self, fn: Callable, *args):
        """Run ``fn(*args)`` on the supervisor thread and return its result."""
        done: concurrent.futures.Future = concurrent.futures.Future()

        def job():
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)
        self._jobs.put(job)
        return done.result()

    def wake(self) -> None:
        """Check the processes now (thread-safe): e.g. the scheduler lost a worker."""
        self._jobs.put(None)

    def stop_replacing(self) -> None:
        """From now on, nothing is replaced; a replacement being started finishes first."""
        with self._replacing_lock:
            self.replacing = False

    def stop(self) -> None:
        self.stop_replacing()
        if self._thread.is_alive():
            self._jobs.put(_STOP)
            if threading.current_thread() is not self._thread:
                self._thread.join()

    # ------------------------------------------------------------ workers ---
    def alive(self) -> int:
        return sum(1 for p in list(self.processes.values()) if p.poll() is None)

    def top_up(self, n: int, introduce: bool) -> list[subprocess.Popen]:
        """Start workers until ``n`` are alive; the dead ones count as replaced."""
        self.target = n
        self.retired.update(name for name, p in list(self.processes.items())
                            if p.poll() is not None)
        return [self._start(None, introduce) for _ in range(n - self.alive())]

    def scale_to(self, n: int, introduce: bool) -> list[subprocess.Popen]:
        """:meth:`refill` then :meth:`top_up`, as one job on the supervisor thread.

        As two steps, the periodic check could run between them and charge a worker
        that died before the ``scale()`` to the fresh budget (with a budget of 0: "a crash
        loop", and ``scale()`` raised it).
        """
        self.refill()
        return self.top_up(n, introduce)

    def replace_all(self) -> list[subprocess.Popen]:
        """Kill every live worker and start as many fresh ones (``Client.restart``); the
        killed ones count as replaced, and the restart budget starts afresh."""
        self.refill()
        for name, proc in list(self.processes.items()):
            if proc.poll() is None:
                self.retired.add(name)
                proc.kill()
        return [self._start(None, introduce=True) for _ in range(self.target)]

    def dead_unretired(self) -> dict[str, int]:
        """``{name: exit code}`` of dead workers nobody replaced (nor will)."""
        return {name: p.returncode for name, p in list(self.processes.items())
                if p.poll() is not None and name not in self.retired}

    def _start(self, replaces: str | None, introduce: bool) -> subprocess.Popen:
        name = f"worker-{len(self.processes)}"  # never reused: events and logs stay unambiguous
        proc = self.processes[name] = self._spawn(name, replaces)
        return self._introduce(proc) if introduce else proc

    def _replace_dead(self) -> None:
        with self._replacing_lock:
            if self.replacing:
                self._replace_dead_locked()

    def _replace_dead_locked(self) -> None:
        for name, returncode in self.dead_unretired().items():
            self.retired.add(name)
            if self.alive() >= self.target:
                continue  # a top_up already replaced it
            how = describe_exit(returncode)
            if self.message is None and self.budget.take(time.monotonic()):
                self.restarts += 1
                new = f"worker-{len(self.processes)}"
                logger.warning("%s %s; starting %s in its place", name, how, new)
                self._start(name, introduce=True)
            elif self.message is None:
                self.message = (
                    f"{name} {how} and was not replaced: {self.budget.limit} workers "
                    f"died within {self.budget.window:g} s (the restart budget), which looks "
                    f"like a crash loop. {self._left()} Their error output is above (or in "
                    f"the kernel's log); fix the cause, then restart the cluster or call "
                    f"cluster.scale({self.target}).")
                logger.error("%s", self.message)
            else:  # replacing stopped already: each further death is said, and what is left
                self.message = (
                    f"{name} {how} and was not replaced either (replacing stopped after a "
                    f"crash loop). {self._left()} Fix the cause, then restart the cluster "
                    f"or call cluster.scale({self.target}).")
                logger.error("%s", self.message)
            self._on_change()

    def _left(self) -> str:
        alive = self.alive()
        if alive == 0:
            return ("No worker is alive: tasks fail (NoWorkersError) until one is "
                    "started.")
        return f"{alive} of {self.target} workers are alive."

    def refill(self) -> None:
        """Replace dead workers again, with a fresh budget (an explicit ``scale()``)."""
        self.budget.refill()
        self.message = None

    def status(self) -> dict:
        """What ``scheduler_info()["supervision"]`` shows."""
        return {"restarts": self.restarts, "restart_limit": self.budget.limit,
                "restart_window": self.budget.window, "replacing": self.message is None,
                "message": self.message, "alive": self.alive()}
