"""The Dask backend on real ``dask scheduler`` / ``dask worker`` processes.

``%cluster connect`` in every form, ``%cluster start --dask``, broadcasts that the
Active Memory Manager leaves alone, and the live widget's model following Dask futures
(scatter, broadcast, submit, replicate, release, an error, a worker killed). The shared
cluster is conftest's ``dask_cluster``; the magics' own suite also runs on it
(``tests/test_magics.py``).
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import textwrap

import pytest

distributed = pytest.importorskip("distributed")

from IPython.utils.capture import capture_output  # noqa: E402

from scatter_magics import get_client  # noqa: E402
from scatter_magics.backend import backend_for  # noqa: E402
from scatter_magics.dask.backend import DaskBackend  # noqa: E402
from scatter_magics.notebook.widget import ClusterWidget, FuturesWidget  # noqa: E402
from tests.conftest import wait_for, workers_info  # noqa: E402
from tests.test_magics import ip, magics, run, usage_error  # noqa: E402,F401 (ip: fixture)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def dask_client(dask_cluster):
    backend = DaskBackend.connect(scheduler_file=dask_cluster.scheduler_file)
    yield backend.client
    backend.close()


def who_has(client, future) -> set[str]:
    return set(client.who_has(future)[future.key])


def names(client) -> dict[str, str]:
    return {w["name"]: a for a, w in workers_info(client).items()}


def row(widget, key):
    return next((r for r in widget.rows if r["key"] == key), None)


def row_is(widget, key, status, workers=None) -> bool:
    r = row(widget, key)
    return r is not None and r["status"] == status and (
        workers is None or set(r["workers"]) == set(workers))


# ------------------------------------------------------------ %cluster connect ---

@pytest.mark.parametrize("form", ["tcp", "host:port", "scheduler-file"])
def test_cluster_connect_binds_a_dask_client_and_stop_leaves_the_cluster_running(
        ip, dask_cluster, form):
    target = {"tcp": dask_cluster.address, "host:port": dask_cluster.address[len("tcp://"):],
              "scheduler-file": f"--scheduler-file {dask_cluster.scheduler_file}"}[form]
    with capture_output() as out:
        summary = run(ip, f"%cluster connect {target}")
    client = ip.user_ns["client"]
    assert isinstance(client, distributed.Client) and get_client() is client
    assert f"Connected to the dask scheduler at {dask_cluster.address} (2 workers)" in out.stdout
    assert [w["name"] for w in summary.workers] == ["worker-0", "worker-1"]
    assert "already running" in usage_error(ip, f"%cluster connect {target}")

    fut = run(ip, "x = {'a': 1}\n%scatter x --broadcast")
    assert isinstance(fut, distributed.Future) and len(who_has(client, fut)) == 2
    with capture_output() as out:
        run(ip, "%cluster stop")
    assert f"Disconnected from {dask_cluster.address}; that cluster keeps running" in out.stdout
    assert client.status == "closed" and "client" not in ip.user_ns
    with distributed.Client(dask_cluster.address, timeout=30) as other:
        assert len(other.nthreads()) == 2


def test_cluster_connect_reaches_our_own_engine_too(ip, make_client, monkeypatch):
    embedded = make_client(n_workers=1)
    address, secret = embedded.scheduler_address, embedded.cluster.secret
    with capture_output() as out:
        run(ip, f"%cluster connect {address} --secret {secret}")
    connected = ip.user_ns["client"]
    assert "Connected to the embedded scheduler" in out.stdout
    assert backend_for(connected).kind == "embedded" and connected is not embedded
    assert run(ip, "y = 7\n%scatter y").key.startswith("y-")
    run(ip, "%cluster stop")
    assert embedded.status == "running"  # the cluster we connected to keeps running

    monkeypatch.setenv("SCATTER_MAGICS_SECRET", secret)
    run(ip, f"%cluster connect {address[len('tcp://'):]}")
    assert backend_for(ip.user_ns["client"]).kind == "embedded"
    run(ip, "%cluster stop")


def test_a_dask_client_made_in_code_is_the_one_the_magics_use(ip, dask_cluster):
    """As a Dask user expects: Dask's current client (made in code, or by dask-gateway
    or dask-jobqueue) is used when the magics have none of their own."""
    run(ip, f"import distributed\n"
            f"mine = distributed.Client(scheduler_file={dask_cluster.scheduler_file!r})")
    mine = ip.user_ns["mine"]
    try:
        assert get_client() is mine
        fut = run(ip, "v = [1, 2, 3]\n%scatter v -w worker-1")
        assert fut.client is mine and run(ip, "%gather v") == [1, 2, 3]
        assert magics(ip).session.owned is None  # the magics started nothing
    finally:
        mine.close()


@pytest.mark.parametrize("line, message", [
    ("%cluster connect", "needs an ADDRESS"),
    ("%cluster connect tcp://127.0.0.1:9 --scheduler-file s.json", "not both"),
    ("%cluster tcp://127.0.0.1:9", "invalid choice"),
    ("%cluster start --scheduler-file s.json", "go with %cluster connect"),
    ("%cluster connect tcp://127.0.0.1:9 -n 2", "go with %cluster start"),
    ("%cluster stop --dask", "go with %cluster start"),
    ("%cluster connect tcp://127.0.0.1:1", "cannot connect to tcp://127.0.0.1:1: nothing answers"),
    ("%cluster connect --scheduler-file /nonexistent/s.json", "no scheduler file"),
])
def test_cluster_connect_mistakes_are_usage_errors(ip, line, message):
    assert message in usage_error(ip, line)
    assert magics(ip).session.owned is None


def test_cluster_connect_over_tls_with_the_tls_options(ip, tmp_path):
    from tests.dask_support import DaskCLI, make_tls_files

    tls = make_tls_files(tmp_path)
    cli = DaskCLI(tmp_path, extra=("--protocol", "tls", "--tls-ca-file", tls["ca"],
                                   "--tls-cert", tls["cert"], "--tls-key", tls["key"]))
    try:
        assert cli.address.startswith("tls://127.0.0.1:")
        assert "needs TLS files: --tls-ca-file" in usage_error(ip, f"%cluster connect {cli.address}")
        with capture_output() as out:
            run(ip, f"%cluster connect {cli.address} --tls-ca-file {tls['ca']} "
                    f"--tls-client-cert {tls['cert']} --tls-client-key {tls['key']}")
        assert f"Connected to the dask scheduler at {cli.address} (0 workers)" in out.stdout
        assert ip.user_ns["client"].security.tls_ca_file == tls["ca"]
        run(ip, "%cluster stop")

        from distributed import Security

        run(ip, "%config ScatterMagics.dask_security = None")
        magics(ip).dask_security = Security(tls_ca_file=tls["ca"], tls_client_cert=tls["cert"],
                                            tls_client_key=tls["key"], require_encryption=True)
        run(ip, f"%cluster connect {cli.address}")
        assert ip.user_ns["client"].scheduler.address == cli.address
        run(ip, "%cluster stop")
    finally:
        cli.stop()


# ------------------------------------------------------------ %cluster start --dask ---

def test_cluster_start_dask_with_options_then_stop_ends_the_workers(ip):
    with capture_output() as out:
        summary = run(ip, "%cluster start --dask -n 2 --threads 2 --memory-limit 300MiB")
    client = ip.user_ns["client"]
    assert isinstance(client, distributed.Client) and get_client() is client
    assert "Started a cluster with 2 workers" in out.stdout
    assert [(w["name"], w["nthreads"], w["memory_limit"]) for w in summary.workers] == [
        ("worker-0", 2, 300 * 2**20), ("worker-1", 2, 300 * 2**20)]
    cluster = magics(ip).session.owned.cluster
    pids = list(client.run(os.getpid).values())
    assert run(ip, "z = [3]\n%scatter z -w worker-1") is not None
    assert run(ip, "%gather z") == [3]
    with capture_output() as out:
        run(ip, "%cluster stop")
    assert "Stopped the cluster and its 2 workers" in out.stdout
    assert client.status == "closed" and cluster.status.name == "closed"
    import psutil

    wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), what="the workers to exit")


def test_without_distributed_the_package_works_and_the_magic_names_the_extra():
    script = textwrap.dedent("""
        import sys
        sys.modules["distributed"] = None  # as if `pip install scatter_magics` alone
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.core.error import UsageError
        import scatter_magics
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "scatter_magics")
        try:
            shell.run_line_magic("cluster", "start --dask -n 1")
        except UsageError as exc:
            print("USAGE:", exc)
        from scatter_magics.backend import future_types
        print("TYPES:", [t.__module__ for t in future_types()])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    assert 'pip install "scatter_magics[dask]"' in out.stdout
    assert "TYPES: []" in out.stdout


# ------------------------------------------------------------ broadcasts ---

def test_broadcast_survives_the_active_memory_manager(dask_client):
    backend = backend_for(dask_client)
    pinned = backend.scatter({"pinned-1": list(range(100))}, workers=None, broadcast=True,
                             direct=None, hash=True, timeout=None)["pinned-1"]
    [plain] = dask_client.scatter([list(range(200))], broadcast=True)
    assert len(who_has(dask_client, pinned)) == len(who_has(dask_client, plain)) == 2
    for _ in range(3):
        dask_client.amm.run_once()
    wait_for(lambda: len(who_has(dask_client, plain)) == 1,
             what="the AMM to trim the replicas of a plain (not pinned) broadcast")
    assert len(who_has(dask_client, pinned)) == 2


def test_broadcast_reaches_a_worker_that_joins_and_a_killed_worker_loses_its_keys(
        dask_client, dask_cluster):
    """The widget's model: placement follows a join, and a SIGKILLed worker within 5 s."""
    backend = backend_for(dask_client)
    both = backend.scatter({"both-1": "b" * 100}, workers=None, broadcast=True, direct=None,
                           hash=True, timeout=None)["both-1"]
    dask_cluster.start_worker("worker-2")
    try:
        dask_client.wait_for_workers(3, timeout=60)
        new = names(dask_client)["worker-2"]
        only = backend.scatter({"only-1": 7}, workers=["worker-2"], broadcast=False,
                               direct=None, hash=True, timeout=None)["only-1"]
        wait_for(lambda: new in who_has(dask_client, both), timeout=10,
                 what="the broadcast to reach the worker that joined")
        widget = FuturesWidget(dask_client, {"both": both, "only": only})
        cluster_view = ClusterWidget(dask_client)
        wait_for(lambda: row_is(widget, only.key, "finished", [new])
                 and len(row(widget, both.key)["workers"]) == 3, what="the widget's rows")
        wait_for(lambda: cluster_view.totals.get("n_workers") == 3, what="three workers shown")
    finally:
        dask_cluster.kill_worker("worker-2")
    wait_for(lambda: row_is(widget, only.key, "lost", []), timeout=5,
             what="the killed worker's only key to show as lost")
    wait_for(lambda: new not in row(widget, both.key)["workers"], timeout=5,
             what="the killed worker to leave the broadcast's placement")
    wait_for(lambda: cluster_view.totals.get("n_workers") == 2, timeout=5,
             what="the cluster view to drop the killed worker")
    assert row(widget, both.key)["status"] == "finished"
    widget.close()
    cluster_view.close()


# ------------------------------------------------------------ the widget's model ---

def test_widget_follows_scatter_submit_replicate_release_and_an_error(dask_client):
    backend = backend_for(dask_client)
    addresses = sorted(dask_client.nthreads())
    x = backend.scatter({"x-1": list(range(1000))}, workers=[addresses[0]], broadcast=False,
                        direct=None, hash=True, timeout=None)["x-1"]
    b = backend.scatter({"b-1": 5}, workers=None, broadcast=True, direct=None, hash=True,
                        timeout=None)["b-1"]
    total = dask_client.submit(sum, x, key="total-1")
    bad = dask_client.submit(int, "not a number", key="bad-1")
    widget = FuturesWidget(dask_client, {"x": x, "b": b, "total": total, "bad": bad})

    wait_for(lambda: row_is(widget, "x-1", "finished", [addresses[0]]), what="the scatter")
    assert row(widget, "x-1")["type"] == "list" and row(widget, "x-1")["nbytes"] > 1000
    assert row(widget, "x-1")["name"] == "x"
    wait_for(lambda: row_is(widget, "b-1", "finished", addresses), what="the broadcast")
    wait_for(lambda: row_is(widget, "total-1", "finished"), what="the submitted task")
    assert row(widget, "total-1")["type"] == "int"
    wait_for(lambda: row_is(widget, "bad-1", "error"), what="the failed task")

    dask_client.replicate([x])  # no transition: the plugin sees it by comparing who_has
    wait_for(lambda: row_is(widget, "x-1", "finished", addresses), what="the replicate")
    x.release()
    wait_for(lambda: row_is(widget, "x-1", "released", []), what="the release")
    by_status = widget.summary["keys"]["by_status"]
    assert by_status["released"] == 1 and by_status["error"] == 1
    widget.close()


def test_a_task_its_worker_runs_is_running_there_then_finished(dask_client, tmp_path):
    """Dask's scheduler knows only "processing" (sent, maybe queued); the workers'
    StartReporter says when a task has run for 50 ms, so the view shows "running"."""
    from tests.test_magics import until_path_exists

    release = tmp_path / "release"
    slow = dask_client.submit(until_path_exists(), str(release), key="slow-1", pure=False)
    events = []
    subscription = backend_for(dask_client).subscribe_events(events.extend)
    widget = FuturesWidget(dask_client, {"slow": slow})
    try:
        wait_for(lambda: row_is(widget, "slow-1", "running"), what="the running state")
        # The widget may have seen it in its own snapshot, taken after the batch that says
        # so left the scheduler but before that batch reached this earlier subscription.
        running = wait_for(lambda: [e for e in events if e.get("key") == "slow-1"
                                    and e["status"] == "running"], what="the running event")
        assert running[-1]["processing_on"] in dask_client.nthreads()
        cluster = ClusterWidget(dask_client)
        wait_for(lambda: any(w["by_status"].get("running") for w in cluster.workers),
                 what="the cluster view counting it on its worker")
        cluster.close()
        release.touch()
        wait_for(lambda: row_is(widget, "slow-1", "finished"), what="the end of the task")
        assert slow.result() == "released"
    finally:
        release.touch()
        subscription.close()
        widget.close()


def test_the_views_of_a_dask_cluster_count_keys_keep_memory_and_the_task_stream(dask_client):
    """%cluster, the sidebar and the REST API ask the recorder plugin: the summary counts
    the scheduler's keys as summary.py counts ours, and the memory history and the task
    stream come from what the scheduler already has (heartbeats, startstops)."""
    backend = backend_for(dask_client)
    backend.subscribe_events(lambda batch: None).close()  # as any view does: the plugins go in
    data = backend.scatter({"data-1": list(range(1000))}, workers=None, broadcast=True,
                           direct=None, hash=True, timeout=None)["data-1"]
    done = [dask_client.submit(len, data, key=f"len-{i}") for i in range(3)]
    bad = dask_client.submit(int, "x", key="int-bad")
    dask_client.gather([*done, bad], errors="skip")
    overview = backend.overview()
    keys = overview["keys"]
    assert keys["by_status"] == {"finished": 4, "error": 1} and keys["count"] == 5
    assert keys["replicas"] == 5  # the broadcast on both workers: 2 replicas of one key
    assert keys["nbytes"] == sum(dask_client.nbytes(summary=False).values())
    assert sum(w["nbytes"] for w in overview["workers"]) == keys["replica_nbytes"]
    assert [w["name"] for w in overview["workers"]] == ["worker-0", "worker-1"]
    history = wait_for(lambda: next((h for h in [backend.memory_history()]
                                     if len(h["times"]) >= 2), None),
                       timeout=10, what="two memory samples")
    # The shared cluster may have had other workers in the last five minutes (the
    # history keeps them, null since they left); the live ones have process memory.
    live = [w for w in history["workers"] if w["name"] in ("worker-0", "worker-1")]
    assert len(live) == 2 and all(w["memory"][-1] > 0 for w in live), history["workers"]
    stream = backend.task_stream()
    ran = {t["key"]: t for t in stream["tasks"]}
    assert {"len-0", "len-1", "len-2", "int-bad"} <= set(ran)
    assert ran["int-bad"]["status"] == "error" and ran["len-0"]["status"] == "finished"
    assert ran["len-0"]["name"] == "len" and ran["len-0"]["start"] <= ran["len-0"]["stop"]
    assert ran["len-0"]["worker"] in dask_client.nthreads() and ran["len-0"]["thread"]
    assert backend.task_stream(since=stream["index"])["tasks"] == []  # a cursor: nothing new
    # A live %cluster --tasks hears of tasks that end later from the event stream.
    widget = ClusterWidget(dask_client, tasks=True)
    try:
        later = dask_client.submit(len, data, key="len-later")
        later.result()
        wait_for(lambda: "len-later" in {t["key"] for t in widget.tasks.get("tasks", ())},
                 timeout=10, what="the live task stream to show a later task")
    finally:
        widget.close()
    del done, bad, data, later


def test_two_widgets_on_one_client_both_follow_every_change(dask_client):
    """A second subscription's snapshot must not swallow the first one's next update."""
    [f] = dask_client.scatter([1])
    first = FuturesWidget(dask_client, [f])
    wait_for(lambda: row_is(first, f.key, "finished"), what="the first widget's snapshot")
    [g] = dask_client.scatter([2])
    f.release()
    second = FuturesWidget(dask_client, [f, g])  # subscribes before the plugin's next batch
    wait_for(lambda: row_is(first, f.key, "released"), timeout=5, what="the first widget")
    wait_for(lambda: row_is(second, f.key, "released") and row_is(second, g.key, "finished"),
             timeout=5, what="the second widget")
    first.close()
    second.close()


def test_a_widget_made_after_a_release_was_sent_shows_it_released(dask_client):
    """The snapshot repeats what was let go lately: the batch saying so is already past."""
    [f] = dask_client.scatter([3])
    first = FuturesWidget(dask_client, [f])
    f.release()
    wait_for(lambda: row_is(first, f.key, "released"), timeout=5, what="the first widget")
    # By key, so the row starts from what the scheduler says, not from the Future.
    second = FuturesWidget(dask_client, [f.key])
    assert row_is(second, f.key, "released", [])
    first.close()
    second.close()


def test_without_the_plugin_the_view_polls_and_says_so_once(dask_cluster):
    from scatter_magics.dask.events import hub_for
    from scatter_magics.errors import PollingFallbackWarning

    backend = DaskBackend.connect(scheduler_file=dask_cluster.scheduler_file)
    try:
        hub = hub_for(backend.client)
        hub.mode, hub.install_error = "poll", RuntimeError("pickle is disabled")  # as refused
        [f] = backend.client.scatter([11])
        with pytest.warns(PollingFallbackWarning, match="polls it once a second"):
            widget = FuturesWidget(backend.client, [f])
        assert row_is(widget, f.key, "finished") and len(row(widget, f.key)["workers"]) == 1
        f.release()
        wait_for(lambda: row_is(widget, f.key, "released"), timeout=5, what="a polled release")
        widget.close()
        FuturesWidget(backend.client, []).close()  # warned once: no second warning here
    finally:
        backend.close()


def test_the_plugin_modules_ship_by_value(tmp_path):
    """They import nothing of scatter_magics but each other (and task_capture.py, shipped
    with them), so cloudpickle can send them to any scheduler and worker
    (tests/test_dask_guest.py: one without scatter_magics)."""
    from scatter_magics.dask.install import SHIPPED

    for name in SHIPPED:
        module = importlib.import_module(name)
        tree = ast.parse(open(module.__file__).read())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.level == 0}
        package = {1: "scatter_magics.dask", 2: "scatter_magics"}
        relative = {f"{package[node.level]}.{node.module}" for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level}
        assert not any(n.startswith("scatter_magics") for n in imported), name
        assert relative <= set(SHIPPED), name
    assert "scatter_magics.dask.recorder" in SHIPPED  # the views' recorder travels too


def test_preloaded_scheduler_has_the_plugin_from_the_start(tmp_path):
    from tests.dask_support import DaskCLI

    cli = DaskCLI(tmp_path, preload="scatter_magics.dask.preload")
    try:
        with distributed.Client(scheduler_file=cli.scheduler_file, timeout=30) as client:
            plugins = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
            assert "scatter-magics" in plugins
            events = []
            backend_for(client).subscribe_events(events.extend).close()
            assert events == []  # no workers, no keys: an empty snapshot
    finally:
        cli.stop()



# ------------------------------------------------------------ the sidebar ---

def test_a_dask_cluster_the_notebook_starts_itself_is_registered_until_closed(ip):
    """dask-labextension cannot see it (its #131, #204); after the cell, our sidebar can."""
    from scatter_magics import discovery

    before = {e.id for e in discovery.live_entries()}

    def dask_entries() -> list:  # new ones only: other tests' clusters may be listed
        return [e for e in discovery.live_entries()
                if e.backend == "dask" and e.id not in before]

    ip.run_cell(textwrap.dedent("""\
        from distributed import Client as DaskClient, LocalCluster as DaskCluster
        own = DaskClient(DaskCluster(n_workers=1, processes=False, protocol='tcp://',
                                     dashboard_address=None,
                                     scheduler_kwargs={'dashboard_address': ':0'}))
    """))
    own = ip.user_ns["own"]
    try:
        [entry] = dask_entries()
        assert entry.scheduler_address == own.cluster.scheduler_address
        assert entry.kernel_id is None and entry.pid == os.getpid()
        ip.run_cell("pass")  # later cells do not register it twice
        assert len(dask_entries()) == 1
    finally:
        ip.run_cell("own.close(); own.cluster.close()")
    assert dask_entries() == []
