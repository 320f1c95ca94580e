"""``LocalCluster``: an embedded scheduler plus worker subprocesses on this machine.

The scheduler runs in this process on a :class:`~scatter_magics.loop.LoopThread`. Each
worker is a ``python -m scatter_magics.engine.worker`` subprocess whose standard input is a pipe
from us: the secret goes down it, and when this process ends (even by SIGKILL) the pipe
closes and the worker exits. No worker outlives the process that started it.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import subprocess
import sys
import threading
import time
import weakref

from . import protocol, shm
from .loop import LoopThread
from .scheduler import Scheduler
from .shm_space import SOCKET_ONLY

logger = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # seconds for all workers to connect
STOP_TIMEOUT = 5.0  # seconds a worker gets to exit before it is killed

_clusters: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # address → cluster


def find_local_cluster(address: str) -> "LocalCluster | None":
    """The LocalCluster of this process whose scheduler is at ``address``, if any."""
    return _clusters.get(address)


class LocalCluster:
    """A scheduler in this process and ``n_workers`` worker processes.

    >>> cluster = LocalCluster(n_workers=2)            # doctest: +SKIP
    >>> client = Client(cluster)                       # doctest: +SKIP
    >>> cluster.close()                                # doctest: +SKIP
    """

    def __init__(self, n_workers: int | None = None, threads_per_worker: int = 1,
                 memory_limit="auto", *, host: str = "127.0.0.1", port: int = 0,
                 secret: str | None = None, timeout: float = START_TIMEOUT):
        self.n_workers = (os.cpu_count() or 1) if n_workers is None else int(n_workers)
        if self.n_workers < 0:
            raise ValueError(f"n_workers must be >= 0, got {n_workers!r}")
        self.threads_per_worker = int(threads_per_worker)
        if self.threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be >= 1, got {threads_per_worker!r}")
        self.memory_limit = parse_memory_limit(memory_limit, max(self.n_workers, 1))
        self.secret = secret or protocol.new_secret()
        self.processes: dict[str, subprocess.Popen] = {}
        self.shm_pool = shm.SharedMemoryPool() if shm.available() else None
        self.status = "starting"
        self._lock = threading.Lock()
        self._retired: set[str] = set()  # workers found dead by a later scale()
        self.loop: LoopThread | None = None
        self._trim_task: asyncio.Task | None = None
        try:
            # Workers first: their interpreter start-up and imports (most of a cold start)
            # overlap with our loop and scheduler starting; they learn its address on stdin.
            for name in self._new_names(self.n_workers):
                self.processes[name] = self._spawn(name)
            self.loop = LoopThread("scatter-magics-scheduler")
            self.scheduler = self.loop.sync(self._start_scheduler(host, port))
            for proc in self.processes.values():
                self._introduce(proc)
            self.scale(self.n_workers, timeout=timeout)
        except BaseException:
            self.close()
            raise
        self.status = "running"
        _clusters[self.scheduler_address] = self
        _open_clusters.add(self)

    async def _start_scheduler(self, host: str, port: int) -> Scheduler:
        scheduler = Scheduler(self.secret)
        await scheduler.start(host, port)
        scheduler.on_worker_removed.append(self._on_worker_removed)
        pool = self.shm_pool
        scheduler.info_extras["shared_memory"] = pool.stats if pool else lambda: dict(SOCKET_ONLY)
        if pool is not None:
            scheduler.on_key_forgotten.append(pool.release_key)
            scheduler.on_keys_recorded.append(pool.recorded)
            pool.on_destroy.append(lambda names: self.loop.call_soon(
                scheduler.broadcast_to_workers, {"op": "forget-segments", "names": names}))
            self._trim_task = asyncio.ensure_future(_trim_idle_segments(pool))
        return scheduler

    @property
    def scheduler_address(self) -> str:
        return self.scheduler.address

    def __repr__(self) -> str:
        return (f"<LocalCluster {self.scheduler_address if self.status != 'closed' else ''} "
                f"status={self.status} workers={self._alive()}>")

    def _alive(self) -> int:
        return sum(1 for p in self.processes.values() if p.poll() is None)

    # ------------------------------------------------------------ workers ---
    def scale(self, n: int, timeout: float = START_TIMEOUT) -> None:
        """Start workers until ``n`` are alive (never stops any; replaces dead ones)."""
        with self._lock:
            # Dead workers are replaced; their deaths are not news to the check below.
            self._retired.update(name for name, p in self.processes.items()
                                 if p.poll() is not None)
            for name in self._new_names(n - self._alive()):
                self.processes[name] = self._introduce(self._spawn(name))
        deadline = time.monotonic() + timeout
        while True:
            try:
                # Short waits, so a worker that dies while starting is reported at once
                # instead of after the whole timeout.
                self.loop.sync(self.scheduler.wait_for_workers(n, 0.1))
                return
            except TimeoutError:
                dead = {name: p.returncode for name, p in self.processes.items()
                        if p.poll() is not None and name not in self._retired}
                if dead:
                    raise RuntimeError(f"worker process(es) exited before connecting to the "
                                       f"scheduler: {dead} (name: exit code); their error "
                                       "output is above") from None
                if time.monotonic() > deadline:
                    raise

    def _new_names(self, count: int) -> list[str]:
        """``count`` worker names never used in this cluster."""
        first = len(self.processes)
        return [f"worker-{i}" for i in range(first, first + max(count, 0))]

    def _spawn(self, name: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "scatter_magics.engine.worker", "--name", name, "--nthreads",
               str(self.threads_per_worker), "--memory-limit", str(self.memory_limit)]
        if self.shm_pool is not None:
            cmd += ["--shm-prefix", self.shm_pool.prefix]
        return subprocess.Popen(cmd, stdin=subprocess.PIPE, start_new_session=True)

    def _introduce(self, proc: subprocess.Popen) -> subprocess.Popen:
        """Tell a spawned worker the secret and where the scheduler is (never in argv)."""
        try:
            proc.stdin.write(f"{self.secret}\n{self.scheduler.address}\n".encode())
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died already: scale() reports it with its exit code
        return proc

    def _on_worker_removed(self, address: str, pid: int) -> None:
        # Reap the process so a dead worker does not stay behind as a zombie.
        for proc in self.processes.values():
            if proc.pid == pid:
                threading.Thread(target=_reap, args=(proc,), daemon=True).start()

    # ------------------------------------------------------------ closing ---
    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every worker and the scheduler; safe to call twice."""
        if self.status == "closed":
            return
        self.status = "closed"
        _open_clusters.discard(self)
        if getattr(self, "scheduler", None) is not None and self.loop.running:
            try:
                if self._trim_task is not None:
                    self.loop.call_soon(self._trim_task.cancel)
                self.loop.sync(_call(self.scheduler.close), timeout)
            except Exception:
                logger.exception("error closing the scheduler")
        for proc in self.processes.values():
            _stop_process(proc, timeout)
        if self.loop is not None:
            self.loop.stop()
        if self.shm_pool is not None:
            self.shm_pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


async def _call(fn):
    fn()


async def _trim_idle_segments(pool: shm.SharedMemoryPool) -> None:
    """Give shared memory idle for a few seconds back to the system; cancelled by close()."""
    while True:
        await asyncio.sleep(shm.IDLE_SECONDS / 2)
        pool.trim()


def _stop_process(proc: subprocess.Popen, timeout: float) -> None:
    try:
        proc.stdin.close()  # the worker exits when its stdin closes
    except OSError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("worker pid %d did not exit within %s s; killing it", proc.pid, timeout)
        proc.kill()
        proc.wait()


def _reap(proc: subprocess.Popen) -> None:
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 10**3, "m": 10**6,
          "g": 10**9, "t": 10**12}


def parse_memory_limit(limit, n_workers: int) -> int:
    """Bytes per worker from ``"auto"``, ``None``, a number, or text like ``"2GiB"``."""
    if limit is None or limit == 0:
        return 0
    if limit == "auto":
        return total_memory() // n_workers
    if isinstance(limit, (int, float)):
        return int(limit)
    match = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", str(limit))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot understand memory_limit {limit!r}; use bytes or e.g. '2GiB'")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


_open_clusters: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for cluster in list(_open_clusters):
        cluster.close()
