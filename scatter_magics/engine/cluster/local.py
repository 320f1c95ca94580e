"""``LocalCluster``: an embedded scheduler plus worker subprocesses on this machine.

The scheduler runs in this process on a :class:`~scatter_magics.engine.wire.loop.LoopThread`. Each
worker is forked from this process's fork server (``forkserver.py``: a template that has
imported a worker's modules once), or on platforms without one started as ``python -m
scatter_magics.engine.worker``. Its standard input is a pipe from us: the secret goes down
it, and when this process ends (even by SIGKILL) the pipe closes and the worker exits;
``PR_SET_PDEATHSIG`` and a watch of its parent's pid back that up when a child we forked
holds the pipe. No worker outlives the process that started it.

A :class:`~scatter_magics.engine.cluster.supervisor.Supervisor` thread spawns the workers and
replaces those that die, within a restart budget (see docs/internals.md).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref

from ..scheduler.server import Scheduler
from ..shm import pool as shm
from ..shm.space import SOCKET_ONLY
from ..wire import inheritance, protocol
from ..wire.loop import LoopThread
from . import forkserver
from .liveness import ProcessWatch
from .memory_limit import parse_memory_limit
from .supervisor import (
    RESTART_LIMIT,
    RESTART_WINDOW,
    RestartBudget,
    Supervisor,
    describe_exit,
)

logger = logging.getLogger(__name__)

START_METHODS = ("forkserver", "spawn")  # forked from the template; a fresh interpreter each
START_TIMEOUT = 60.0  # seconds for all workers to connect
STOP_TIMEOUT = 5.0  # seconds a worker gets to exit before it is killed
EXIT_STATUS_WAIT = 0.05  # s the scheduler waits for a disconnected worker's exit status
WORKER_TTL = 300.0  # s without a heartbeat before a worker is ended (Dask's worker-ttl)

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
                 secret: str | None = None, timeout: float = START_TIMEOUT,
                 restart_limit: int = RESTART_LIMIT, restart_window: float = RESTART_WINDOW,
                 worker_ttl: float | None = WORKER_TTL, name: str | None = None,
                 resources: dict | None = None, processes: bool = True,
                 start_method: str | None = None):
        self.start_method = _start_method(start_method)
        if self.start_method == "forkserver" and processes:
            forkserver.prestart()  # its imports overlap the rest of our start
        self.n_workers = (os.cpu_count() or 1) if n_workers is None else int(n_workers)
        if self.n_workers < 0:
            raise ValueError(f"n_workers must be >= 0, got {n_workers!r}")
        self.threads_per_worker = int(threads_per_worker)
        if self.threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be >= 1, got {threads_per_worker!r}")
        if worker_ttl is not None and not worker_ttl > 0:
            raise ValueError(f"worker_ttl must be a number of seconds > 0 or None, "
                             f"got {worker_ttl!r}")
        self.worker_ttl = worker_ttl
        self.in_process = not processes  # workers as threads of this process, nothing pickled
        self.resources = check_resources(resources)
        # Each worker's uploaded files (Client.upload_file) live under here, removed by
        # close() even for workers that were killed.
        self.local_directory = tempfile.mkdtemp(prefix="scatter-magics-cluster-")
        self._ended_silent: set[int] = set()  # pids of workers ended for their silence
        self.memory_limit = parse_memory_limit(memory_limit, max(self.n_workers, 1))
        self.secret = secret or protocol.new_secret()
        # Workers in this process map nothing: values are handed over as they are.
        self.shm_pool = shm.SharedMemoryPool() if shm.available() and processes else None
        self.status = "starting"
        self._lock = threading.Lock()
        self._closing = threading.Lock()  # a second close() waits for the first to finish
        self.loop: LoopThread | None = None
        self.scheduler: Scheduler | None = None
        # Dead workers are replaced, at most restart_limit times within restart_window s.
        self.supervisor = Supervisor(self._spawn, self._introduce, self._publish_supervision,
                                     RestartBudget(restart_limit, restart_window))
        self._trim_task: asyncio.Task | None = None
        self.name = name  # shown in the Jupyter sidebar (default: the kernel or program)
        self.registry_entry = None  # this cluster's file in the discovery registry
        self.in_process_workers = None  # processes=False: an InProcessWorkers
        try:
            if self.in_process:
                self._start_in_process(host, port, timeout)
            else:
                self._start_processes(host, port, timeout)
        except BaseException:
            self.close()
            raise
        self.status = "running"
        self.supervisor.replacing = not self.in_process
        _clusters[self.scheduler_address] = self
        _open_clusters.add(self)

    def _start_processes(self, host: str, port: int, timeout: float) -> None:
        # Workers first: their interpreter start-up and imports (most of a cold start)
        # overlap with our loop and scheduler starting; they learn its address on stdin.
        self.supervisor.call(self.supervisor.top_up, self.n_workers, False)
        self.loop = LoopThread("scatter-magics-scheduler")
        self.scheduler = self.loop.sync(self._start_scheduler(host, port))
        for proc in list(self.processes.values()):
            self._introduce(proc)
        # Not scale(): its top-up would count a worker that died while starting as
        # replaced and start another, hiding the first one's exit code.
        self._publish_supervision()
        # While the workers connect this thread only waits: registering (and its
        # imports, psutil's among them) costs the cold start nothing here.
        self._register()
        self._await_workers(self.n_workers, timeout)

    def _start_in_process(self, host: str, port: int, timeout: float) -> None:
        from .in_process import InProcessWorkers  # (the worker's modules: only for these)

        self.loop = LoopThread("scatter-magics-scheduler")
        self.scheduler = self.loop.sync(self._start_scheduler(host, port))
        self.in_process_workers = InProcessWorkers(
            self.scheduler.server.listen_inproc(), self.scheduler.address, self.secret,
            self.threads_per_worker, self.memory_limit, self.resources, self.local_directory)
        self._register()
        self.loop.sync(self.in_process_workers.scale_to(self.n_workers), timeout)

    def _register(self) -> None:
        """Advertise this cluster to the Jupyter server (discovery.py); never fatal."""
        from ... import discovery  # here: its imports are paid while the workers connect

        try:
            self.registry_entry = discovery.register(
                backend="embedded", scheduler_address=self.scheduler_address,
                secret=self.secret, name=self.name)
        except Exception as exc:  # e.g. a read-only runtime dir: the cluster still works
            logger.warning("this cluster is not in the discovery registry (the Jupyter "
                           "sidebar will not show it): %r", exc)

    async def _start_scheduler(self, host: str, port: int) -> Scheduler:
        scheduler = Scheduler(self.secret)
        await scheduler.start(host, port)
        scheduler.on_worker_removed.append(lambda address, pid: self.supervisor.wake())
        scheduler.exit_reason = self._exit_reason
        scheduler.process_state = ProcessWatch().look  # busy (a task holds the GIL) or frozen
        scheduler.worker_ttl = self.worker_ttl
        scheduler.on_worker_expired.append(self._end_silent_worker)
        scheduler.on_close_requested.append(self._close_requested)
        scheduler.cluster.on_restart_requested.append(self.restart)
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

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        """Every worker process this cluster started, by name (dead ones too)."""
        return self.supervisor.processes

    def _alive(self) -> int:
        if self.in_process_workers is not None:
            return self.in_process_workers.alive()
        return self.supervisor.alive()

    # ------------------------------------------------------------ workers ---
    def scale(self, n: int, timeout: float = START_TIMEOUT) -> None:
        """Start workers until ``n`` are alive, or retire the ones beyond ``n`` (those
        with the least work and data), their data copied to the others first, as Dask's.

        The supervisor then keeps ``n`` alive, with a fresh restart budget.
        """
        if n < 0:
            raise ValueError(f"scale() needs n >= 0, got {n!r}")
        retire = self.scheduler.cluster.retire
        if self.in_process_workers is not None:
            self.n_workers = n
            self.loop.sync(self.in_process_workers.scale_to(n, retire), timeout)
            return
        leaving = self.loop.call(self._least_busy, self._alive() - n)
        with self._lock:
            self.n_workers = n
            self.supervisor.call(self.supervisor.scale_to, n, self.scheduler is not None)
        if leaving:
            self.loop.sync(retire(leaving), timeout)
            self.loop.sync(self.scheduler.cluster.close_workers(leaving), timeout)
        self._publish_supervision()
        self._await_workers(n, timeout)

    def _least_busy(self, count: int) -> list[str]:
        workers = self.scheduler.state.workers
        ranked = sorted(workers, key=lambda a: (len(workers[a].processing), workers[a].nbytes))
        return ranked[:max(0, count)]

    def restart(self, timeout: float | None = None, wait_for_workers: bool = True) -> None:
        """Replace every worker by a fresh one (``Client.restart``: the scheduler has
        forgotten every key first)."""
        timeout = timeout or START_TIMEOUT
        if self.in_process_workers is not None:
            self.loop.sync(self.in_process_workers.restart(), timeout)
            return
        old = self.loop.call(lambda: list(self.scheduler.state.workers))
        with self._lock:
            self.supervisor.call(self.supervisor.replace_all)
        self._publish_supervision()
        self.loop.sync(self.scheduler.cluster.wait_gone(old), timeout)
        if wait_for_workers:
            self._await_workers(self.n_workers, timeout)

    def _await_workers(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                # Short waits, so a worker that dies while starting is reported at once
                # instead of after the whole timeout.
                self.loop.sync(self.scheduler.wait_for_workers(n, 0.1))
                return
            except TimeoutError:
                self._raise_if_dying()
                if time.monotonic() > deadline:
                    raise

    def _raise_if_dying(self) -> None:
        if self.supervisor.message is not None:
            raise RuntimeError(self.supervisor.message)
        dead = self.supervisor.dead_unretired()
        if dead and not self.supervisor.replacing:
            raise RuntimeError(f"worker process(es) exited before connecting to the "
                               f"scheduler: {dead} (name: exit code); their error "
                               "output is above") from None

    def _spawn(self, name: str, replaces: str | None = None):
        """Start one worker: a ``subprocess.Popen`` or a ``forkserver.ForkedProcess``."""
        args = ["--name", name, "--nthreads", str(self.threads_per_worker),
                "--memory-limit", str(self.memory_limit), "--owner-pid", str(os.getpid())]
        if replaces:
            args += ["--replaces", replaces]
        if self.resources:
            args += ["--resources", json.dumps(self.resources)]
        args += ["--local-directory", os.path.join(self.local_directory, name)]
        if self.shm_pool is not None:
            args += ["--shm-prefix", self.shm_pool.prefix]
        if self.start_method == "forkserver":
            proc = forkserver.shared().spawn(args)
        else:
            proc = subprocess.Popen([sys.executable, "-m", "scatter_magics.engine.worker", *args],
                                    stdin=subprocess.PIPE, start_new_session=True)
        inheritance.keep_from_forked_children(proc.stdin.fileno())
        return proc

    def _introduce(self, proc: subprocess.Popen) -> subprocess.Popen:
        """Tell a spawned worker the secret and where the scheduler is (never in argv)."""
        try:
            proc.stdin.write(f"{self.secret}\n{self.scheduler.address}\n".encode())
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died already: scale() reports it with its exit code
        return proc

    def _end_silent_worker(self, address: str, pid: int) -> None:
        """SIGKILL a worker silent for ``worker_ttl`` s (SIGTERM cannot end a stopped
        process); its death then takes the usual path: replaced, its keys recomputed
        or lost."""
        for proc in list(self.processes.values()):
            if proc.pid == pid and proc.poll() is None:
                self._ended_silent.add(pid)
                proc.kill()

    def _exit_reason(self, pid: int) -> str | None:
        """How the worker process ``pid`` ended, if it has (for worker-removed events).

        Called when its connection closed: a killed process closes its sockets just
        before it becomes a zombie, so a short wait (on the loop thread, once per
        death) nearly always finds the exit status.
        """
        if pid in self._ended_silent:
            return (f"sent no heartbeat for {self.worker_ttl:g} s (frozen, or stuck in a "
                    "call that holds the GIL) and was ended (worker_ttl)")
        for proc in list(self.processes.values()):
            if proc.pid == pid:
                try:
                    return describe_exit(proc.wait(EXIT_STATUS_WAIT))
                except subprocess.TimeoutExpired:
                    return None
        return None

    def _publish_supervision(self) -> None:
        """Put the supervisor's status where ``scheduler_info()`` and ``%cluster`` see it."""
        if self.loop is not None and self.scheduler is not None and self.loop.running:
            status = self.supervisor.status()
            self.loop.call_soon(self.scheduler.set_supervision, status)

    # ------------------------------------------------------------ closing ---
    def _close_requested(self) -> None:
        """An authenticated peer (the Jupyter sidebar) asked us to stop. The scheduler
        tells every client why as it closes, the owning client too: it closes (and its
        widgets say why) and waits here for the close to finish. Off the loop thread:
        closing waits on the loop."""
        threading.Thread(target=self.close, name="scatter-magics-close", daemon=True).start()

    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every worker and the scheduler; safe to call twice, and from two threads
        (the second returns once the first has finished)."""
        with self._closing:
            self._close(timeout)

    def _close(self, timeout: float) -> None:
        if self.status == "closed":
            return
        self.status = "closed"
        self.supervisor.stop_replacing()  # before the list of processes to stop is taken
        _open_clusters.discard(self)
        _clusters.pop(self.scheduler_address, None)  # its port may serve another process next
        if self.registry_entry is not None:
            from ... import discovery

            discovery.unregister(self.registry_entry)
        if getattr(self, "scheduler", None) is not None and self.loop.running:
            try:
                if self._trim_task is not None:
                    self.loop.call_soon(self._trim_task.cancel)
                if self.in_process_workers is not None:
                    self.loop.sync(self.in_process_workers.close(), timeout)
                self.loop.sync(_call(self.scheduler.close), timeout)
            except Exception:
                logger.exception("error closing the scheduler")
        for proc in list(self.processes.values()):
            _stop_process(proc, timeout)
        self.supervisor.stop()  # after the workers: its end is their PR_SET_PDEATHSIG
        if self.loop is not None:
            self.loop.stop()
        if self.shm_pool is not None:
            self.shm_pool.close()
        shutil.rmtree(self.local_directory, ignore_errors=True)

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
        inheritance.forget(proc.stdin.fileno())
        proc.stdin.close()  # the worker exits when its stdin closes
    except (OSError, ValueError):  # (ValueError: closed already)
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("worker pid %d did not exit within %s s; killing it", proc.pid, timeout)
        proc.kill()
        proc.wait()


def check_resources(resources) -> dict:
    """``resources`` (``{"GPU": 2}``: what each worker offers tasks), checked."""
    if resources is None:
        return {}
    if not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            and v >= 0 for k, v in resources.items()):
        raise TypeError(f"resources must be a dict of names to amounts >= 0, such as "
                        f"{{'GPU': 2}}; got {resources!r}")
    return dict(resources)
def _start_method(method: str | None) -> str:
    """``"forkserver"`` where workers can be forked from a template, else ``"spawn"``."""
    if method is None:
        return "forkserver" if forkserver.available() else "spawn"
    if method not in START_METHODS:
        raise ValueError(f"start_method must be one of {START_METHODS}, got {method!r}")
    if method == "forkserver" and not forkserver.available():
        raise ValueError("start_method='forkserver' needs Linux (fork and SCM_RIGHTS); "
                         "use 'spawn'")
    return method


_open_clusters: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for cluster in list(_open_clusters):
        cluster.close()
