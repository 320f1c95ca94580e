"""The server extension's REST API, through a real Jupyter server (pytest-jupyter's jp_fetch).

Clusters run in separate processes, as kernels' clusters do (``cluster_support.py``: a
small script starts a Client, scatters, and waits on stdin); pytest-jupyter points
``JUPYTER_RUNTIME_DIR`` at a fresh directory per test, and the script inherits it, so
each test sees only its clusters.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from conftest import exited, wait_for

# pytest-jupyter's fixtures (jp_fetch and what it needs), for this module only: its plugin,
# installed suite-wide, would wrap every test's call and event loop, and Playwright's tests
# cannot have their loop closed under them.
from pytest_jupyter.jupyter_server import *  # noqa: F403
from tornado.httpclient import HTTPClientError

from scatter_magics import discovery
from tests.cluster_support import ClusterProcess

API = ("scatter-magics", "api")


def on_server_loop(test):
    """Run an ``async def`` test on pytest-jupyter's event loop (the one jp_fetch uses)."""
    params = list(inspect.signature(test).parameters.values())
    wants_loop = "jp_asyncio_loop" in [p.name for p in params]
    if not wants_loop:
        params.append(inspect.Parameter("jp_asyncio_loop", inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(test)
    def run(**fixtures):
        loop = fixtures["jp_asyncio_loop"] if wants_loop else fixtures.pop("jp_asyncio_loop")
        loop.run_until_complete(test(**fixtures))
    run.__signature__ = inspect.Signature(params)
    return run


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"scatter_magics": True}}}


@pytest.fixture
def start_cluster(jp_environ):
    started = []

    def start(n_workers: int = 1, n_keys: int = 0) -> ClusterProcess:
        cluster = ClusterProcess(n_workers, n_keys)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


async def get_json(jp_fetch, *parts, **kwargs):
    response = await jp_fetch(*API, *parts, **kwargs)
    return json.loads(response.body), response


@pytest.mark.parametrize("method, path, body", [
    ("GET", "clusters", None), ("POST", "clusters", "{}"),
    ("GET", "clusters/some-id", None), ("DELETE", "clusters/some-id", None)])
@on_server_loop
async def test_every_endpoint_refuses_unauthenticated_requests(jp_fetch, method, path, body):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, path, method=method, body=body, headers={"Authorization": ""})
    assert info.value.code == 403


@on_server_loop
async def test_the_listing_websocket_refuses_unauthenticated_requests(jp_ws_fetch):
    with pytest.raises(HTTPClientError) as info:
        await jp_ws_fetch(*API, "clusters", "ws", headers={"Authorization": ""})
    assert info.value.code == 403


async def next_listing(socket, deadline: float) -> list:
    message = await asyncio.wait_for(socket.read_message(), deadline)
    assert message is not None, "the server closed the websocket"
    return json.loads(message)


@on_server_loop
async def test_a_change_on_a_cluster_is_pushed_to_the_listing_websocket(
        jp_ws_fetch, jp_serverapp, start_cluster):
    cluster = start_cluster(n_workers=1, n_keys=2)
    socket = await jp_ws_fetch(*API, "clusters", "ws")
    try:
        first = await next_listing(socket, 10)
        assert [(c["id"], c["keys"]["count"]) for c in first] == [(cluster.id, 2)]
        assert_no_secret(json.dumps(first).encode(), {}, [cluster])
        # A scatter in the cluster's own process: no request from us, the listing comes.
        await asyncio.to_thread(cluster.scatter, 3)
        started = time.monotonic()
        pushed = await next_listing(socket, 5)
        while pushed[0]["keys"]["count"] != 5:  # a worker's memory may have moved first
            pushed = await next_listing(socket, 5 - (time.monotonic() - started))
        assert time.monotonic() - started < 1.0  # the bound, with room on a busy box
        # A new cluster, then its end, reach the socket too.
        other = start_cluster(n_workers=1, n_keys=0)
        pushed = await next_listing(socket, 5)
        while other.id not in [c["id"] for c in pushed]:
            pushed = await next_listing(socket, 5)
        other.stop()
        while other.id in [c["id"] for c in pushed]:
            pushed = await next_listing(socket, 5)
    finally:
        socket.close()
    # The browser gone, the server stops watching (and the clusters stop sending events).
    watch = jp_serverapp.web_app.settings["scatter_magics_watch"]
    deadline = time.monotonic() + 5
    while watch.listeners or not watch._task.done():
        assert time.monotonic() < deadline, "the watch outlived its last listener"
        await asyncio.sleep(0.02)


@on_server_loop
async def test_clusters_of_two_processes_are_listed_with_their_workers_and_keys(
        jp_fetch, start_cluster, caplog):
    caplog.set_level("DEBUG")
    one, two = start_cluster(n_workers=1, n_keys=3), start_cluster(n_workers=2, n_keys=5)
    clusters, response = await get_json(jp_fetch, "clusters")
    by_id = {c["id"]: c for c in clusters}
    assert set(by_id) == {one.id, two.id}
    for cluster, n_workers, n_keys in ((one, 1, 3), (two, 2, 5)):
        listed = by_id[cluster.id]
        assert listed["backend"] == "embedded" and listed["kernel_id"] is None
        assert listed["status"] == "running"
        assert listed["name"] == f"python -c in {discovery._short_path(os.getcwd())}"
        assert len(listed["workers"]) == n_workers
        assert set(listed["workers"][0]) >= {"address", "name", "nthreads", "memory_limit",
                                             "memory", "nkeys", "nbytes"}
        assert sum(w["nkeys"] for w in listed["workers"]) == n_keys
        assert listed["keys"]["count"] == n_keys
        assert listed["keys"]["names"] == (1 if n_keys else 0)  # the elements of one list
        assert listed["keys"]["by_status"] == ({"finished": n_keys} if n_keys else {})
    assert_no_secret(response.body, response.headers, [one, two])
    assert_no_secret(caplog.text.encode(), {}, [one, two])  # nor in any log line


@on_server_loop
async def test_one_cluster_with_a_page_of_its_keys(jp_fetch, start_cluster):
    cluster = start_cluster(n_workers=2, n_keys=5)
    detail, response = await get_json(jp_fetch, "clusters", cluster.id,
                                      params={"offset": 1, "limit": 3})
    assert detail["id"] == cluster.id and detail["keys"]["count"] == 5
    assert detail["keys"]["total"] == 5 and len(detail["keys"]["items"]) == 3
    item = detail["keys"]["items"][0]
    assert item["status"] == "finished" and item["type"] == "int" and item["nbytes"] > 0
    assert item["size"] == item["nbytes"]
    assert len(item["workers"]) == 1 and item["workers"][0] in {
        w["address"] for w in detail["workers"]}
    assert_no_secret(response.body, response.headers, [cluster])
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "clusters", "no-such-cluster")
    assert info.value.code == 404
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "clusters", cluster.id, params={"limit": "many"})
    assert info.value.code == 400


@on_server_loop
async def test_history_tasks_and_sorted_filtered_keys_of_an_embedded_cluster(
        jp_fetch, start_cluster):
    cluster = start_cluster(n_workers=2, n_keys=3)
    history = await wait_for_history(jp_fetch, cluster.id, samples=3)
    assert [w["name"] for w in history["workers"]] == ["worker-0", "worker-1"]
    assert history["interval"] == 1.0 and len(history["times"]) >= 3
    assert all(t2 - t1 < 1.5 for t1, t2 in zip(history["times"], history["times"][1:]))
    for w in history["workers"]:
        assert len(w["memory"]) == len(w["nbytes"]) == len(history["times"])
        assert w["memory"][-1] > 0  # process memory, from the heartbeats
    assert sum(w["nbytes"][-1] for w in history["workers"]) > 0  # the 3 keys, held
    listing, _ = await get_json(jp_fetch, "clusters")
    assert listing[0]["history"]["interval"] == 5.0  # the cards get every fifth sample

    cluster.proc.stdin.write("run 4\n")
    cluster.proc.stdin.flush()
    assert cluster.proc.stdout.readline().strip() == "ran"
    tasks, _ = await get_json(jp_fetch, "clusters", cluster.id, "tasks")
    by_key = {t["key"]: t for t in tasks["tasks"]}
    assert set(by_key) == {"abs-0", "abs-1", "abs-2", "int-bad"}
    assert by_key["int-bad"]["status"] == "error" and by_key["abs-1"]["name"] == "abs"
    assert by_key["abs-1"]["start"] <= by_key["abs-1"]["stop"] <= tasks["now"]
    again, _ = await get_json(jp_fetch, "clusters", cluster.id, "tasks",
                              params={"since": tasks["index"]})
    assert again["tasks"] == [] and again["index"] == tasks["index"]

    detail, _ = await get_json(jp_fetch, "clusters", cluster.id,
                               params={"status": "finished", "name": "abs", "sort": "key",
                                       "order": "desc"})
    assert [i["key"] for i in detail["keys"]["items"]] == ["abs-2", "abs-1", "abs-0"]
    assert detail["keys"]["total"] == 3 and detail["keys"]["items"][0]["name"] == "abs-2"
    assert detail["keys"]["count"] == 7 and detail["keys"]["by_status"] == {"finished": 6,
                                                                            "error": 1}
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "clusters", cluster.id, params={"sort": "colour"})
    assert info.value.code == 400 and b"sort must be one of" in info.value.response.body
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "clusters", "no-such-cluster", "tasks")
    assert info.value.code == 404


@on_server_loop
async def test_files_readable_by_others_or_of_dead_processes_are_not_listed(
        jp_fetch, start_cluster, caplog):
    readable, dead, fine = (start_cluster() for _ in range(3))
    readable_path = discovery.registry_dir() / f"cluster-{readable.id}.json"
    os.chmod(readable_path, 0o644)
    dead.proc.kill()
    dead.proc.wait()
    clusters, _ = await get_json(jp_fetch, "clusters")
    assert [c["id"] for c in clusters] == [fine.id]
    assert any("mode 0644" in r.getMessage() for r in caplog.records)
    assert not (discovery.registry_dir() / f"cluster-{dead.id}.json").exists()  # pruned


@on_server_loop
async def test_a_registry_file_with_a_field_of_the_wrong_type_is_skipped_not_fatal(
        jp_fetch, start_cluster, caplog):
    # Written by hand or by another version: each bad file is passed over with a warning
    # naming the field, and the listing (REST and the sidebars' socket) goes on.
    fine = start_cluster()
    good = json.loads((discovery.registry_dir() / f"cluster-{fine.id}.json").read_text())
    broken = {"create_time": None, "pid": "abc", "scheduler_address": "not an address",
              "connected": "yes", "secret": ["do-not-show-me"]}
    for i, (field, value) in enumerate(broken.items()):
        path = discovery.registry_dir() / f"cluster-odd{i}.json"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as f:
            json.dump({**good, "id": f"odd{i}", field: value}, f)
    try:
        clusters, _ = await get_json(jp_fetch, "clusters")
        assert [c["id"] for c in clusters] == [fine.id]
        said = " ".join(r.getMessage() for r in caplog.records)
        assert all(f"its {field} is" in said for field in broken)
        assert "do-not-show-me" not in said  # a credential's value is never shown
    finally:
        for i in range(len(broken)):
            (discovery.registry_dir() / f"cluster-odd{i}.json").unlink(missing_ok=True)


@on_server_loop
async def test_delete_ends_the_cluster_and_its_workers(jp_fetch, start_cluster):
    cluster = start_cluster(n_workers=2, n_keys=2)
    response = await jp_fetch(*API, "clusters", cluster.id, method="DELETE")
    assert json.loads(response.body) == {"id": cluster.id, "stopped": True}
    wait_for(lambda: all(exited(p) for p in cluster.worker_pids), timeout=10,
             what="workers to exit")
    clusters, _ = await get_json(jp_fetch, "clusters")
    assert clusters == []
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "clusters", cluster.id, method="DELETE")
    assert info.value.code == 404


@on_server_loop
async def test_a_server_owned_cluster_starts_lists_and_stops(jp_fetch, jp_environ):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "clusters", method="POST", body=json.dumps({"n_workers": 0}))
    assert info.value.code == 400 and b"n_workers" in info.value.response.body
    response = await jp_fetch(*API, "clusters", method="POST",
                              body=json.dumps({"n_workers": 1, "name": "shared"}))
    assert response.code == 201
    started = json.loads(response.body)
    try:
        assert started["name"] == "shared" and started["server_owned"] is True
        assert len(started["workers"]) == 1
        entry = discovery.find_entry(started["id"])
        assert entry is not None and entry.pid == os.getpid()
        assert_no_secret(response.body, response.headers, [entry.secret])
    finally:
        response = await jp_fetch(*API, "clusters", started["id"], method="DELETE")
    assert json.loads(response.body)["stopped"] is True


@on_server_loop
async def test_a_dataset_published_on_a_server_owned_cluster_is_listed_after_its_client_left(
        jp_fetch, jp_environ):
    from scatter_magics import Client

    response = await jp_fetch(*API, "clusters", method="POST", body=json.dumps({"n_workers": 1}))
    started = json.loads(response.body)
    try:
        entry = discovery.find_entry(started["id"])
        with Client(entry.scheduler_address, secret=entry.secret) as kernels_client:
            kernels_client.publish_dataset(df=kernels_client.scatter(["a", "b"], hash=False))
        answer, _ = await get_json(jp_fetch, "clusters", started["id"])
        [dataset] = answer["datasets"]  # the client is gone; the dataset is the cluster's
        assert dataset["name"] == "df" and dataset["nbytes"] > 0
        assert dataset["workers"] == ["worker-0"]
        listing, _ = await get_json(jp_fetch, "clusters")
        assert next(c for c in listing if c["id"] == started["id"])["datasets"] == [dataset]
    finally:
        await jp_fetch(*API, "clusters", started["id"], method="DELETE")


@on_server_loop
async def test_unchanged_listing_answers_not_modified(jp_fetch, start_cluster):
    start_cluster(n_workers=1, n_keys=1)
    codes = []
    for _ in range(10):  # a worker's memory may cross a MiB between two requests
        _, first = await get_json(jp_fetch, "clusters")
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch(*API, "clusters", headers={"If-None-Match": first.headers["Etag"]})
        codes.append(info.value.code)
        if codes[-1] == 304:
            break
    assert codes[-1] == 304, codes


async def wait_for_history(jp_fetch, cluster_id: str, samples: int, timeout: float = 10):
    """The cluster's ``history`` once it has ``samples`` samples (they come once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        detail, _ = await get_json(jp_fetch, "clusters", cluster_id, params={"limit": 0})
        if len(detail["history"]["times"]) >= samples or time.monotonic() > deadline:
            assert len(detail["history"]["times"]) >= samples, detail["history"]
            return detail["history"]
        await asyncio.sleep(0.2)


def assert_no_secret(body: bytes, headers, clusters) -> None:
    secrets = [c if isinstance(c, str) else discovery.find_entry(c.id).secret for c in clusters]
    text = body.decode() + json.dumps(dict(headers))
    for secret in secrets:
        assert secret and secret not in text


DASK_SCRIPT = textwrap.dedent("""
    import sys
    from scatter_magics.dask.backend import DaskBackend
    backend = DaskBackend.start(n_workers=2, threads_per_worker=1, memory_limit="1GiB")
    futures = backend.client.scatter(list(range(4)))
    print(backend.scheduler_info()["address"], flush=True)
    for line in sys.stdin:  # a line: run that many tasks
        ran = backend.client.gather([backend.client.submit(abs, -i, key=f"abs-{i}")
                                     for i in range(int(line))])
        print("ran", flush=True)
        del ran
    backend.close()
""")


@on_server_loop
async def test_a_dask_cluster_is_listed_and_stopped(jp_fetch, jp_ws_fetch, jp_environ):
    proc = subprocess.Popen([sys.executable, "-c", DASK_SCRIPT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip()
        assert address, "the Dask cluster did not start"
        [listed], _ = await get_json(jp_fetch, "clusters")
        assert listed["backend"] == "dask" and listed["scheduler_address"] == address
        assert listed["status"] == "running" and len(listed["workers"]) == 2
        assert listed["keys"]["count"] == 4 and listed["keys"]["by_status"] == {"finished": 4}
        assert listed["keys"]["names"] == 1  # four ints, int-<token>: one name, as Dask groups them
        assert sum(w["nkeys"] for w in listed["workers"]) == 4
        # The recorder the probe installed keeps memory and the task stream from now on.
        history = await wait_for_history(jp_fetch, listed["id"], samples=2)
        assert {w["name"] for w in history["workers"]} == {"worker-0", "worker-1"}
        proc.stdin.write("3\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ran"
        tasks, _ = await get_json(jp_fetch, "clusters", listed["id"], "tasks")
        assert {t["key"] for t in tasks["tasks"]} >= {"abs-0", "abs-1", "abs-2"}
        assert all(t["name"] == "abs" and t["status"] == "finished" for t in tasks["tasks"])
        # Not the resource tracker: multiprocessing's spawned children, which distributed
        # retitles "dask worker [...]" when setproctitle is installed (we depend on it).
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if any(s in " ".join(p.cmdline()) for s in ("spawn_main", "dask worker"))]
        assert workers
        socket = await jp_ws_fetch(*API, "clusters", "ws")  # Dask: asked again, not subscribed
        assert [c["id"] for c in await next_listing(socket, 10)] == [listed["id"]]
        response = await jp_fetch(*API, "clusters", listed["id"], method="DELETE")
        assert json.loads(response.body)["stopped"] is True
        clusters, _ = await get_json(jp_fetch, "clusters")
        assert clusters == []
        while await next_listing(socket, 5):  # its end is pushed too
            pass
        socket.close()
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"Dask workers {alive} outlived the DELETE"
    finally:
        # Not close(): a Dask client whose scheduler was shut down retries for 30 s first.
        proc.kill()
        proc.wait()


@on_server_loop
async def test_a_cluster_a_kernel_joins_is_listed_while_it_stays_connected(
        jp_fetch, jp_environ, start_cluster, dask_cluster, tmp_path):
    """Issue 21, item 4: a remote Dask scheduler the sidebar would not see otherwise, and
    a cluster of another process joined by id (one card, its connections listed)."""
    from IPython.core.interactiveshell import InteractiveShell

    from tests.test_magics import make_shell, run

    shell = make_shell(tmp_path / "ipython")
    try:
        run(shell, f"%cluster connect {dask_cluster.address}")
        [card], _ = await get_json(jp_fetch, "clusters")
        assert card["scheduler_address"] == dask_cluster.address and card["remote"] is True
        assert card["backend"] == "dask" and card["status"] == "running"
        assert [w["name"] for w in card["workers"]] == ["worker-0", "worker-1"]
        [connection] = card["connected"]
        assert set(connection) == {"id", "kernel_id", "name"}
        # Issue 20: its published datasets beside the summary (the recorder lists them).
        shell.user_ns["letters"] = ["a", "b", "c"]
        run(shell, "%scatter letters --publish")
        [card], _ = await get_json(jp_fetch, "clusters")
        [dataset] = card["datasets"]
        assert dataset["name"] == "letters" and dataset["nbytes"] > 0
        assert set(dataset["workers"]) <= {"worker-0", "worker-1"} and dataset["workers"]
        shell.user_ns["client"].unpublish_dataset("letters")  # the shared cluster's
        with pytest.raises(HTTPClientError) as refused:  # others may be using it
            await jp_fetch(*API, "clusters", card["id"], method="DELETE")
        assert refused.value.code == 409
        run(shell, "%cluster stop")
        assert (await get_json(jp_fetch, "clusters"))[0] == []

        owned = start_cluster(n_workers=1, n_keys=2)
        run(shell, f"%cluster connect {owned.id}")
        [card], _ = await get_json(jp_fetch, "clusters")
        assert card["id"] == owned.id and card["remote"] is False
        assert len(card["connected"]) == 1 and card["keys"]["count"] == 2
        run(shell, "%cluster stop")
        [card], _ = await get_json(jp_fetch, "clusters")
        assert card["connected"] == []
    finally:
        shell.run_line_magic("unload_ext", "scatter_magics")
        InteractiveShell.clear_instance()


@on_server_loop
async def test_a_notebook_joined_to_a_cluster_the_sidebar_stops_is_not_stranded(
        jp_fetch, jp_environ, start_cluster, tmp_path):
    """Issue 21, item 3: the sidebar's Stop of a cluster another process owns, while a
    kernel is connected to it: that kernel's widgets say why, its next magic says the
    cluster is gone in one line, and it starts another."""
    from IPython.core.interactiveshell import InteractiveShell

    from tests.cluster_support import Joined, assert_recovers
    from tests.test_magics import make_shell

    shell = make_shell(tmp_path / "ipython")
    cluster = start_cluster(n_workers=1, n_keys=2)
    try:
        joined = Joined(shell, cluster)
        response = await jp_fetch(*API, "clusters", cluster.id, method="DELETE")
        assert json.loads(response.body) == {"id": cluster.id, "stopped": True}
        assert_recovers(shell, joined, cluster, "stopped from the Jupyter sidebar", "%gather v")
    finally:
        shell.run_line_magic("unload_ext", "scatter_magics")
        InteractiveShell.clear_instance()


def test_an_extension_that_fails_to_load_is_logged_not_raised(caplog):
    from scatter_magics.lab import _load_jupyter_server_extension

    class BrokenServer:  # no web_app: setting up the handlers fails
        log = logging.getLogger("test-server")

    _load_jupyter_server_extension(BrokenServer())
    assert "runs without it" in caplog.text

