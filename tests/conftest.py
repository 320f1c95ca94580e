"""Shared fixtures: clusters that clean up after themselves, and a leak check."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

import psutil
import pytest

# Every cluster registers itself in the Jupyter runtime dir (scatter_magics/discovery.py):
# the suite's clusters go to a directory of its own, not into the user's.
os.environ["JUPYTER_RUNTIME_DIR"] = RUNTIME_DIR = tempfile.mkdtemp(prefix="sm-runtime-")


def wait_for(condition, timeout: float = 10.0, interval: float = 0.01, what: str = "condition"):
    """Poll ``condition()`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def gate(tmp_path):
    """``(gated, open_gate)``: the task function ``gated(x)`` returns ``x`` once
    ``open_gate()`` was called (30 s at most), so its future stays pending until then;
    the gate opens when the test ends in any case, freeing the worker's thread."""
    path = tmp_path / "gate-open"

    def gated(x):
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        return x

    yield gated, path.touch
    path.touch()


def our_worker_processes() -> list[psutil.Process]:
    """Live (non-zombie) worker processes started by this test process."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "scatter_magics.engine.worker" in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def our_fork_servers() -> list[psutil.Process]:
    """Live fork servers (``engine/worker/template.py``) started by this test process."""
    found = []
    for proc in psutil.Process().children():
        try:
            if "scatter_magics.engine.worker.template" in proc.cmdline() \
                    and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def exited(pid: int) -> bool:
    """The process is gone or a zombie (it may exit between any two psutil calls)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("scatter-magics")]


@pytest.fixture(scope="session", autouse=True)
def no_leaks_after_suite():
    """The suite as a whole leaves no worker process, loop thread or child behind."""
    from scatter_magics.engine.cluster import forkserver

    yield
    wait_for(lambda: not our_worker_processes(), timeout=15, what="worker processes to exit")
    forkserver.stop()  # it lives as long as its owner (this process) unless stopped
    assert not our_fork_servers()
    wait_for(lambda: not our_threads(), timeout=15, what="loop threads to stop")
    if os.path.isdir("/dev/shm"):
        mine = f"smg-{os.getpid()}-"  # segments of the pools this test process owned
        left = [name for name in os.listdir("/dev/shm") if name.startswith(mine)]
        assert not left, f"shared-memory segments left behind: {left}"
    shutil.rmtree(RUNTIME_DIR, ignore_errors=True)


def client_of_kind(kind: str, **options):
    """A new client that starts its own cluster: ours (``kind="scatter_magics"``) or a
    ``distributed.Client`` on a ``LocalCluster`` (``kind="dask"``), with ``options``."""
    if kind == "dask":
        distributed = pytest.importorskip("distributed")
        return distributed.Client(dashboard_address=":0", **options)
    from scatter_magics import Client

    return Client(**options)


@pytest.fixture
def make_client():
    """A factory for our clients; each one is closed when the test ends."""
    from scatter_magics import Client

    clients = []

    def make(**kwargs):
        kwargs.setdefault("n_workers", 2)
        client = Client(**kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def client():
    """One embedded cluster with two single-threaded workers, shared by a module."""
    from scatter_magics import Client

    with Client(n_workers=2, threads_per_worker=1) as c:
        yield c


@pytest.fixture(scope="module", params=["scatter_magics", "dask"])
def any_client(request):
    """Once our ``Client`` on an embedded cluster, once a ``distributed.Client`` on a
    ``LocalCluster`` of the same shape (two single-threaded worker processes): a test
    passing both ways shows our semantics are Dask's. One of each per module."""
    if request.param == "dask":
        distributed = pytest.importorskip("distributed")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0")
        client = distributed.Client(cluster)
        yield client
        client.close()
        cluster.close()
    else:
        from scatter_magics import Client

        with Client(n_workers=2, threads_per_worker=1) as client:
            yield client


def api_of(client):
    """The package ``client`` comes from, as a user imports it: ``distributed`` or
    ``scatter_magics`` (``api.wait``, ``api.as_completed``, ``api.Variable``…)."""
    if type(client).__module__.startswith("distributed"):
        import distributed

        return distributed
    import scatter_magics

    return scatter_magics


@pytest.fixture
def api(any_client):
    """The package ``any_client`` comes from (a module's own ``any_client`` too)."""
    return api_of(any_client)


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """A real Dask cluster, as users start one: ``dask scheduler`` and two ``dask worker``s.

    Workers are named ``worker-0`` and ``worker-1`` (one thread, 1 GiB each); the
    scheduler has no plugin preloaded, so clients install it themselves.
    """
    pytest.importorskip("distributed")
    import distributed

    from tests.dask_support import DaskCLI

    cli = DaskCLI(tmp_path_factory.mktemp("dask"))
    try:
        for name in ("worker-0", "worker-1"):
            cli.start_worker(name)
        with distributed.Client(scheduler_file=cli.scheduler_file, timeout=60) as probe:
            probe.wait_for_workers(2, timeout=60)
        yield cli
    finally:
        cli.stop()


def workers_info(client) -> dict[str, dict]:
    """``scheduler_info()["workers"]`` of our client or a ``distributed.Client``, read fresh.

    Dask's ``Client.scheduler_info()`` fetches every worker into a cache and returns the
    cache, which its refresh every ``scheduler-info-interval`` (2 s, asking for no workers)
    may overwrite in between: measured, 80 of 3000 calls saw no workers at a 5 ms refresh
    (distributed 2026.8). Asking the scheduler itself has no cache to race."""
    if hasattr(client, "_scheduler_identity"):  # a distributed.Client
        return client.sync(client.scheduler.identity, n_workers=-1)["workers"]
    return client.scheduler_info()["workers"]


def worker_pids(client) -> dict[str, int]:
    """``{worker address: pid}`` of a scatter_magics client's workers."""
    return {a: w["pid"] for a, w in client.scheduler_info()["workers"].items()}


def pytest_unconfigure(config):
    """Every IPython shell the tests made registered ``atexit_operations``, which keeps it
    and its namespace alive until exit and then resets it with a full ``gc.collect()``
    each: ~2.5 minutes of CI after the summary (hundreds of shells, a 1.4 GB heap). The
    tests are over; mark each one's exit work done (their histories are ``:memory:``)."""
    import gc
    import sys

    shell_class = getattr(sys.modules.get("IPython.core.interactiveshell"), "InteractiveShell",
                          None)
    if shell_class is None:
        return
    for obj in gc.get_objects():
        if isinstance(obj, shell_class):
            obj._atexit_once_called = True
