"""A good guest on a Dask cluster someone else runs: no harm done, nothing left behind.

The cluster here is as a shared one usually is: its scheduler and workers have
``distributed`` but not scatter_magics (a venv of their own, where the import fails for
real). Two nanny'd workers: ``worker-0`` with 256 MiB (Dask pauses it at 80 %, its
nanny kills it at 95 %), ``worker-1`` with 1 GiB.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os

import pytest

distributed = pytest.importorskip("distributed")

import cloudpickle  # noqa: E402

from scatter_magics import task_output  # noqa: E402
from scatter_magics.dask.install import install_worker_plugin  # noqa: E402
from scatter_magics.dask.plugin import NAME  # noqa: E402
from scatter_magics.dask.starts import WORKER_PLUGIN_NAME  # noqa: E402
from scatter_magics.dask.task_output import CAPTURE_NAME, RELAY_NAME  # noqa: E402
from scatter_magics.errors import MemoryLimitError  # noqa: E402
from scatter_magics.notebook.widget import FuturesWidget  # noqa: E402
from tests.conftest import wait_for, workers_info  # noqa: E402
from tests.dask_support import (  # noqa: E402
    DaskCLI,
    FromTheTests,
    python_without_scatter_magics,
)
from tests.test_magics import ip, run  # noqa: E402,F401 (ip: fixture)

pytestmark = pytest.mark.timeout(120)

# The checks below run on the scheduler and workers, which cannot import this module.
cloudpickle.register_pickle_by_value(importlib.import_module(__name__))


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bare")
    cli = DaskCLI(directory, python=python_without_scatter_magics(directory))
    try:
        cli.start_worker("worker-0", nanny=True, memory_limit="256MiB")
        cli.start_worker("worker-1", nanny=True, memory_limit="1GiB")
        with distributed.Client(scheduler_file=cli.scheduler_file, timeout=60) as observer:
            observer.wait_for_workers(2, timeout=60)
            # The premise: nothing there can import scatter_magics.
            assert observer.run_on_scheduler(_cannot_import_us) is True
            assert set(observer.run(_cannot_import_us).values()) == {True}
        yield cli
    finally:
        cli.stop()


@pytest.fixture
def observer(bare_cluster):
    """A plain Dask client that looks at the cluster and installs nothing."""
    with distributed.Client(scheduler_file=bare_cluster.scheduler_file, timeout=30) as c:
        yield c


def _cannot_import_us() -> bool:
    return importlib.util.find_spec("scatter_magics") is None


def installed(observer) -> tuple[set, set, set]:
    """Our plugins on the scheduler, in its saved worker plugins, and on every worker."""
    def on_scheduler(dask_scheduler):
        return set(dask_scheduler.plugins), set(dask_scheduler.worker_plugins)

    def on_worker(dask_worker):
        return sorted(dask_worker.plugins)

    ours = {NAME, RELAY_NAME, WORKER_PLUGIN_NAME, CAPTURE_NAME, "from-the-tests"}
    plugins, saved = observer.run_on_scheduler(on_scheduler)
    on_workers = {p for names in observer.run(on_worker).values() for p in names}
    return plugins & ours, saved & ours, on_workers & ours


def by_name(observer) -> dict[str, str]:
    return {w["name"]: a for a, w in workers_info(observer).items()}


def restart(observer, name: str) -> None:
    """Restart one worker through its nanny and wait until it is back, running."""
    address = by_name(observer)[name]
    observer.restart_workers([address], timeout=60)
    wait_for(lambda: name in by_name(observer), timeout=60, what=f"{name} to come back")


ON_SCHEDULER = {NAME, RELAY_NAME}  # the event stream; what tasks print, relayed
ON_WORKERS = {WORKER_PLUGIN_NAME, CAPTURE_NAME}  # which tasks run; what they print


def test_joining_runs_our_plugins_there_and_stop_takes_them_off(ip, bare_cluster, observer,
                                                                monkeypatch):
    terminal = io.StringIO()  # where what tasks print shows outside a kernel
    monkeypatch.setattr(task_output.ROUTER, "terminal", terminal)
    run(ip, f"%cluster connect {bare_cluster.address}")
    client = ip.user_ns["client"]
    fut = run(ip, "x = list(range(10))\n%scatter x --broadcast")
    widget = FuturesWidget(client, {"x": fut})
    wait_for(lambda: widget.rows and widget.rows[0]["status"] == "finished"
             and len(widget.rows[0]["workers"]) == 2, what="the live view of the broadcast")
    widget.close()
    assert installed(observer) == (ON_SCHEDULER, ON_WORKERS, ON_WORKERS)
    # What a task prints on a worker without scatter_magics reaches the notebook.
    shout = lambda x: print(f"shouted {x}") or x  # noqa: E731 (a lambda: pickled by value)
    assert client.submit(shout, 7).result() == 7
    wait_for(lambda: "shouted 7" in terminal.getvalue(), timeout=10,
             what="the task's output to reach the notebook")

    restart(observer, "worker-1")  # a worker that restarts meanwhile takes them too
    wait_for(lambda: len(client.who_has(fut)[fut.key]) == 2, timeout=10,
             what="the broadcast to reach the restarted worker")
    assert installed(observer)[2] == ON_WORKERS

    run(ip, "%cluster stop")
    assert installed(observer) == (set(), set(), set())
    bare_cluster.start_worker("worker-2", nanny=True)  # joins as if we had never been there
    try:
        observer.wait_for_workers(3, timeout=60)
    finally:
        bare_cluster.kill_worker("worker-2")
    wait_for(lambda: "worker-2" not in by_name(observer), timeout=30, what="worker-2 to go")


def test_a_client_of_ours_that_vanishes_counts_as_gone(bare_cluster, observer):
    """Closed in code, not by %cluster stop: the scheduler notices the connection drop."""
    from scatter_magics.dask.install import install

    with distributed.Client(bare_cluster.address, timeout=30) as ours:
        assert install(ours) == ("plugin", None)
        assert installed(observer)[:2] == (ON_SCHEDULER, ON_WORKERS)
    wait_for(lambda: installed(observer) == (set(), set(), set()), timeout=10,
             what="the plugins to leave with the last client of ours")


def test_a_worker_plugin_the_workers_refuse_is_taken_off_again(bare_cluster, observer):
    """Dask saves it before sending it; kept, it would fail every worker that restarts."""
    with distributed.Client(bare_cluster.address, timeout=30) as ours:
        assert install_worker_plugin(ours, FromTheTests(), "from-the-tests") is False
    assert installed(observer) == (set(), set(), set())
    restart(observer, "worker-0")  # starts normally: nothing unimportable is left


def test_a_scatter_that_cannot_fit_is_refused_before_anything_moves(ip, bare_cluster, observer):
    run(ip, f"%cluster connect {bare_cluster.address}")
    client = ip.user_ns["client"]
    pids = observer.run(os.getpid)
    with pytest.raises(MemoryLimitError) as refused:
        run(ip, "big = b'x' * 320_000_000\n%scatter big --broadcast")
    message = str(refused.value)
    assert "cannot scatter 'big-" in message and "(305 MiB)" in message
    assert "worker-0 (tcp://" in message and "has room for" in message
    assert "memory_limit 256 MiB" in message and "worker-1" not in message
    assert client.has_what() == {a: () for a in pids} or not any(client.has_what().values())

    # 120 MB of bytes would sit under worker-0's pause threshold (204.8 MiB, ~62 MiB used),
    # but reading them peaks at twice that, past the 243 MiB at which its nanny kills it.
    with pytest.raises(MemoryLimitError) as refused:
        run(ip, "small = b'z' * 120_000_000\n%scatter small -w worker-0")
    assert "(114 MiB)" in str(refused.value) and "its nanny kills it at 95 %" in str(refused.value)
    assert observer.run(os.getpid) == pids  # refused, not sent: worker-0 lives

    # Without --broadcast it goes where it fits: only worker-1 has room for 150 MB.
    fut = run(ip, "mid = b'y' * 150_000_000\n%scatter mid")
    assert client.who_has(fut)[fut.key] == (by_name(observer)["worker-1"],)
    assert observer.run(os.getpid) == pids  # no worker was killed
    run(ip, "del mid, small\n%cluster stop")
