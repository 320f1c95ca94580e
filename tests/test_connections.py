"""``%cluster connect`` to the clusters users hold, and never stranded when one goes away.

- Cluster objects (issue 21, item 5): a ``distributed.Client``, a Dask ``LocalCluster``,
  dask-gateway's ``GatewayCluster`` on a real gateway server (its local backend, in this
  process on 127.0.0.1 with a simple authenticator, as its own tests run it) and
  dask-jobqueue's local cluster: the magics use the object's address and security.
- A cluster that goes away (item 3): within 5 s every widget says "not live" and why,
  the next magic says so in one line, and the kernel can start or join another. On Dask
  (its scheduler dies) and on our engine (a cluster of another process, joined by id,
  closed by its owner or killed with it; the sidebar's stop is in test_lab_server.py).
- Dashboard links (item 6).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

distributed = pytest.importorskip("distributed")

from IPython.utils.capture import capture_output  # noqa: E402

from scatter_magics import discovery  # noqa: E402
from scatter_magics.errors import ClusterGoneError  # noqa: E402
from scatter_magics.notebook.widget import ClusterWidget, FuturesWidget  # noqa: E402
from tests.cluster_support import GONE, ClusterProcess, Joined, assert_recovers  # noqa: E402
from tests.conftest import wait_for  # noqa: E402
from tests.dask_support import DaskCLI  # noqa: E402
from tests.test_magics import ip, magics, run, usage_error  # noqa: E402,F401 (ip: fixture)

pytestmark = pytest.mark.timeout(120)


def connections(address: str) -> list:
    return [e for e in discovery.live_entries() if e.connected and e.scheduler_address == address]


def scatter_gather_stop(ip, address: str) -> None:
    """What a notebook does on any cluster it joined: the magics, then disconnecting."""
    client = ip.user_ns["client"]
    assert client.scheduler.address == address
    fut = run(ip, "v = {'a': [1, 2, 3]}\n%scatter v --broadcast")
    assert fut.client is client and run(ip, "%gather v") == {"a": [1, 2, 3]}
    assert len(connections(address)) == 1
    run(ip, "%cluster stop")
    assert connections(address) == []


# ------------------------------------------------------------ cluster objects ---

def test_connect_takes_a_dask_client_or_local_cluster_object(ip):
    run(ip, "from distributed import LocalCluster, Client as DaskClient\n"
            "lc = LocalCluster(n_workers=1, processes=False, protocol='tcp://', "
            "host='127.0.0.1', dashboard_address=None)\nmine = DaskClient(lc)")
    try:
        lc, mine = ip.user_ns["lc"], ip.user_ns["mine"]
        for name in ("lc", "mine"):
            with capture_output() as out:
                run(ip, f"%cluster connect {name}")
            assert f"Connected to the dask scheduler at {lc.scheduler_address}" in out.stdout
            assert ip.user_ns["client"] is not mine  # a client of the magics' own
            scatter_gather_stop(ip, lc.scheduler_address)
        ip.user_ns["n"] = 3
        assert "n holds a int, not a client or a cluster" in usage_error(
            ip, "%cluster connect n")
        assert mine.status == "running"  # the user's client is left alone
    finally:
        run(ip, "mine.close(); lc.close()")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """A dask-gateway server (local backend: clusters as local processes) on 127.0.0.1,
    in a process group of its own, ended with everything it started."""
    pytest.importorskip("dask_gateway_server")
    directory = tmp_path_factory.mktemp("gateway")
    api, proxy, tcp = free_port(), free_port(), free_port()
    (directory / "config.py").write_text(textwrap.dedent(f"""
        c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
        c.DaskGateway.address = "127.0.0.1:{api}"
        c.Proxy.address = "127.0.0.1:{proxy}"
        c.Proxy.tcp_address = "127.0.0.1:{tcp}"
        c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
        c.UnsafeLocalBackend.clusters_directory = {str(directory / "clusters")!r}
        c.ClusterConfig.scheduler_cmd = [{sys.executable!r}, "-m", "distributed.cli.dask_scheduler"]
        c.ClusterConfig.worker_cmd = [{sys.executable!r}, "-m", "distributed.cli.dask_worker"]
        c.ClusterConfig.worker_memory = "1 G"
    """))
    log = open(directory / "gateway.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "dask_gateway_server", "-f",
                               str(directory / "config.py")], cwd=directory, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    address, proxy_address = f"http://127.0.0.1:{proxy}", f"gateway://127.0.0.1:{tcp}"
    try:
        from dask_gateway import Gateway

        def answers() -> bool:
            assert server.poll() is None, (directory / "gateway.log").read_text()[-2000:]
            try:
                with Gateway(address, proxy_address=proxy_address) as gw:
                    gw.list_clusters()
                return True
            except Exception:
                return False
        wait_for(answers, timeout=60, interval=0.2, what="the gateway server to answer")
        yield address, proxy_address
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()


def test_connect_takes_a_gateway_cluster_with_its_tls_security(ip, gateway):
    address, proxy = gateway
    run(ip, f"from dask_gateway import Gateway\n"
            f"gw = Gateway({address!r}, proxy_address={proxy!r})\n"
            f"cluster = gw.new_cluster()\ncluster.scale(1)")
    cluster = ip.user_ns["cluster"]
    try:
        assert cluster.scheduler_address.startswith("gateway://")
        with distributed.Client(cluster.scheduler_address, security=cluster.security,
                                timeout=60) as probe:
            probe.wait_for_workers(1, timeout=60)
        run(ip, "%cluster connect cluster")
        assert ip.user_ns["client"].security is cluster.security
        [entry] = connections(cluster.scheduler_address)
        assert entry.security["args"]["tls_cert"]  # the server can reach it too
        scatter_gather_stop(ip, cluster.scheduler_address)
    finally:
        run(ip, "cluster.shutdown(); gw.close()")


def test_connect_takes_a_jobqueue_cluster(ip):
    # Importing dask_jobqueue (its runner module) makes SIGINT raise SystemExit in the
    # whole process; measured: later tests' Ctrl-C ended in SystemExit. Put it back.
    interrupt = signal.getsignal(signal.SIGINT)
    pytest.importorskip("dask_jobqueue.local")
    signal.signal(signal.SIGINT, interrupt)
    run(ip, "from dask_jobqueue.local import LocalCluster as JobCluster\n"
            "jobs = JobCluster(cores=1, memory='1GiB', processes=1, "
            "scheduler_options={'host': '127.0.0.1', 'dashboard_address': None}, "
            "worker_extra_args=['--host', '127.0.0.1'])\njobs.scale(1)")
    jobs = ip.user_ns["jobs"]
    try:
        with distributed.Client(jobs, timeout=60) as probe:
            probe.wait_for_workers(1, timeout=60)
        run(ip, "%cluster connect jobs")
        scatter_gather_stop(ip, jobs.scheduler_address)
    finally:
        run(ip, "jobs.close()")


# ------------------------------------------------------------ never stranded ---

@contextlib.contextmanager
def logged_by_dask():
    """The records Dask's loggers emit meanwhile (its handler prints them in the cell)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    dask_logger = logging.getLogger("distributed")
    dask_logger.addHandler(handler)
    try:
        yield records
    finally:
        dask_logger.removeHandler(handler)


@pytest.mark.parametrize("first", ["%cluster", "%scatter w", "%gather v"])
def test_a_dask_scheduler_that_dies_strands_no_notebook(ip, tmp_path, dask_cluster, first):
    cli = DaskCLI(tmp_path)
    try:
        cli.start_worker("worker-0")
        run(ip, f"%cluster connect {cli.address}")
        client = ip.user_ns["client"]
        fut = run(ip, "v = [1, 2]\nw = 3\n%scatter v")
        widgets = [FuturesWidget(client, {"v": fut}), ClusterWidget(client)]
        assert all(w.live for w in widgets) and len(connections(cli.address)) == 1
        cli.scheduler.kill()  # the scheduler process dies
        wait_for(lambda: all(not w.live and w.not_live_reason for w in widgets), timeout=5,
                 what="every widget to say it is not live, and why")
        for widget in widgets:
            assert widget.not_live_reason.startswith(
                f"the connection to the scheduler at {cli.address} was lost")
            assert f"not live: the connection to the scheduler at {cli.address}" in \
                widget.to_html()
        with logged_by_dask() as records, pytest.raises(ClusterGoneError) as gone:
            run(ip, first)  # while Dask tries to reconnect: the cell shows one line
        assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info], records
    finally:
        cli.kill_worker("worker-0")  # it would wait for its scheduler to come back
        cli.stop()
    assert gone.value._render_traceback_() == [
        f"ClusterGoneError: the cluster at {cli.address} is gone (it was stopped, or its "
        f"scheduler died); start one with %cluster start, or join one with %cluster "
        f"connect ADDRESS"]
    assert "client" not in ip.user_ns and connections(cli.address) == []
    run(ip, f"%cluster connect {dask_cluster.address}")  # the same kernel joins another
    assert run(ip, "%scatter w").result() == 3
    run(ip, "%cluster stop")


@pytest.mark.parametrize("end, reason, first", [
    (ClusterProcess.stop, "the cluster was closed by the process that owns it, pid {pid}",
     "%cluster"),
    (lambda cluster: cluster.proc.kill(), "the connection to the scheduler at {address} was "
     "lost: its process died, or the network failed", "%scatter w"),
], ids=["its-owner-closes-it", "its-owner-is-killed"])
def test_an_embedded_cluster_that_goes_away_strands_no_notebook(ip, end, reason, first):
    cluster = ClusterProcess(n_workers=1, n_keys=2)
    try:
        joined = Joined(ip, cluster)
        end(cluster)
        reason = reason.format(pid=cluster.proc.pid, address=joined.address)
        assert_recovers(ip, joined, cluster, reason, first)
    finally:
        cluster.stop()
    # ... and joins another cluster, with no restart either.
    run(ip, "from scatter_magics import Client\nother = Client(n_workers=1)")
    try:
        run(ip, f"%cluster connect {ip.user_ns['other'].cluster.registry_entry.id}")
        assert run(ip, "%scatter w").result() == 3
        run(ip, "%cluster stop")
    finally:
        ip.user_ns["other"].close()


def test_a_gather_waiting_when_its_cluster_dies_says_so_in_one_line(ip):
    cluster = ClusterProcess(n_workers=1, n_keys=0)
    try:
        run(ip, f"%cluster connect {cluster.id}\n"
                f"import time\nslow = client.submit(time.sleep, 60, pure=False)")
        address = ip.user_ns["client"].scheduler_address
        # Killed while %gather waits (or, on a slow day, before it starts: the same line).
        threading.Timer(0.5, cluster.proc.kill).start()
        with pytest.raises(ClusterGoneError) as gone:
            run(ip, "%gather slow")
        reason = (f"the connection to the scheduler at {address} was lost: its process died, "
                  f"or the network failed")
        assert gone.value._render_traceback_() == [GONE.format(address=address, reason=reason)]
        run(ip, "%cluster start -n 1")
    finally:
        cluster.stop()
    run(ip, "%cluster stop")


def test_cluster_start_and_stop_after_the_cluster_went_away(ip, tmp_path):
    cli = DaskCLI(tmp_path)
    try:
        run(ip, f"%cluster connect {cli.address}")
        client = ip.user_ns["client"]
        cli.scheduler.kill()
        wait_for(lambda: client.status != "running", timeout=5, what="the client to notice")
    finally:
        cli.stop()
    with capture_output() as out:
        run(ip, "%cluster stop")
    assert f"The cluster at {cli.address} was already gone; the magics forgot it." in out.stdout
    run(ip, "%cluster start -n 1")
    assert run(ip, "u = 5\n%scatter u").result() == 5
    run(ip, "%cluster stop")


# ------------------------------------------------------------ dashboard links ---

def test_cluster_links_a_dask_dashboard_only_when_there_is_one(ip, dask_cluster):
    pytest.importorskip("bokeh")
    run(ip, "from distributed import LocalCluster\n"
            "with_board = LocalCluster(n_workers=0, processes=False, protocol='tcp://', "
            "host='127.0.0.1', dashboard_address='127.0.0.1:0')")
    board = ip.user_ns["with_board"]
    try:
        run(ip, "%cluster connect with_board")
        summary = run(ip, "%cluster")
        assert summary.dashboard_link == board.dashboard_link
        assert f"dashboard: {board.dashboard_link}" in repr(summary)
        assert f"href='{board.dashboard_link}'" in summary._repr_html_()
        [entry] = connections(board.scheduler_address)
        assert entry.dashboard_link == board.dashboard_link
        run(ip, "%cluster stop")
    finally:
        board.close()
    run(ip, f"%cluster connect {dask_cluster.address}")  # --no-dashboard
    summary = run(ip, "%cluster")
    assert summary.dashboard_link is None and "dashboard" not in repr(summary)
    run(ip, "%cluster stop")
