"""Every view of one cluster shows the same numbers at the same moment (issue 17, item 1).

One embedded cluster is driven into three states — data scattered (a broadcast and a
split list), tasks run (one failing), a worker killed with a key nobody else holds —
and in each, the numbers every view renders are compared: the scheduler's summary
(``Backend.overview()``, what ``%cluster`` prints), the REST API's cluster object (what
the sidebar card and the Futures panel draw), the live cluster widget's synced traits,
and the futures widget over all the cluster's futures.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from scatter_magics.backend import backend_for
from scatter_magics.lab.clusters import ClusterDirectory
from scatter_magics.notebook.display import ClusterSummary
from scatter_magics.notebook.widget import ClusterWidget, FuturesWidget
from scatter_magics.summary import keys_phrase
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)

KEY_FIELDS = ("count", "by_status", "nbytes", "replicas", "replica_nbytes")
WORKER_FIELDS = ("name", "nkeys", "nbytes", "by_status")


def rest_object(client) -> dict:
    """``GET clusters/<id>``'s object, from the server extension's own directory."""
    directory = ClusterDirectory()

    async def get():
        try:
            return await directory.get(client.cluster.registry_entry.id, {}, limit=0)
        finally:
            directory.close()
    return asyncio.run(get())


def views(client, cluster_widget, futures_widget) -> dict[str, tuple]:
    """What each view shows: the keys' numbers, and per worker what it holds."""
    summary = ClusterSummary.snapshot(backend_for(client), {})
    rest = rest_object(client)
    shown = {
        "%cluster": (summary.keys, summary.workers),
        "REST": (rest["keys"], rest["workers"]),
        "cluster widget": (cluster_widget.totals["keys"], cluster_widget.workers),
        "futures widget": (futures_widget.summary["keys"], None),
    }
    return {view: ({f: keys[f] for f in KEY_FIELDS},
                   None if workers is None else
                   [{f: w[f] for f in WORKER_FIELDS} for w in workers])
            for view, (keys, workers) in shown.items()}


def assert_agree(client, cluster_widget, futures_widget, expected_keys: dict) -> dict:
    """Wait until the live widgets caught up, then every view must say the same."""
    def agreeing():
        seen = views(client, cluster_widget, futures_widget)
        keys = {view: k for view, (k, _) in seen.items()}
        workers = {view: w for view, (_, w) in seen.items() if w is not None}
        same = len({repr(k) for k in keys.values()}) == 1 and \
            len({repr(w) for w in workers.values()}) == 1
        return seen if same and keys["REST"] == {**keys["REST"], **expected_keys} else None
    try:
        return wait_for(agreeing, timeout=10, interval=0.1, what="every view to agree")
    except AssertionError:
        raise AssertionError(f"the views disagree: {views(client, cluster_widget, futures_widget)}")


def test_every_view_shows_the_same_numbers_in_three_states(make_client):
    client = make_client(n_workers=2)
    cluster_widget = ClusterWidget(client)
    futures = []
    futures_widget = None
    try:
        # 1. Scattered: a broadcast (one key, two replicas) and ten elements of a list.
        futures += client.scatter([bytes(1000)], broadcast=True)
        futures += client.scatter(list(range(10)))
        futures_widget = FuturesWidget(client, futures)
        first = assert_agree(client, cluster_widget, futures_widget,
                             {"count": 11, "replicas": 12, "by_status": {"finished": 11}})
        assert keys_phrase(first["REST"][0]).startswith("11 keys (12 replicas), ")

        # 2. Tasks ran next to the data, one of them failed.
        futures_widget.close()
        futures += [client.submit(len, futures[0], key="len-1"),
                    client.submit(int, "x", key="int-bad")]
        wait_for(lambda: futures[-1].status == "error" and futures[-2].status == "finished",
                 what="the tasks to end")
        futures_widget = FuturesWidget(client, futures)
        assert_agree(client, cluster_widget, futures_widget,
                     {"count": 13, "by_status": {"finished": 12, "error": 1}})

        # 3. A worker dies holding a key nobody else has (scattered: nothing recomputes
        #    it): it is lost, and its bytes are in no view's count.
        futures_widget.close()
        [alone] = client.scatter([bytes(2**20)], workers=["worker-0"])
        futures.append(alone)
        futures_widget = FuturesWidget(client, futures)
        before = assert_agree(client, cluster_widget, futures_widget, {"count": 14})
        assert before["REST"][0]["nbytes"] >= 2**20
        os.kill(client.cluster.processes["worker-0"].pid, signal.SIGKILL)
        wait_for(lambda: alone.status == "lost", what="the key only worker-0 held to be lost")
        after = assert_agree(client, cluster_widget, futures_widget, {"count": 14})
        keys = after["REST"][0]
        assert keys["by_status"]["lost"] >= 1
        assert keys["nbytes"] < 2**20, "a lost key's bytes are still counted"
        assert "worker-0" not in [w["name"] for w in after["REST"][1]]
    finally:
        cluster_widget.close()
        if futures_widget is not None:
            futures_widget.close()


def test_the_task_stream_has_a_lane_per_worker_thread_the_function_errors_and_transfers():
    """What the workers' task runners report: the thread a task ran on (a lane each),
    its function's name whatever its key, when it ran, a failure, the fetch of an input
    held by another worker."""
    from scatter_magics import Client

    with Client(n_workers=2, threads_per_worker=2) as client:
        first, second = sorted(client.scheduler_info()["workers"])
        naps = [client.submit(time.sleep, 0.4, key=f"nap-{i}", workers=[first])
                for i in range(2)]
        bad = client.submit(int, "x", key="bad-1", workers=[first])
        [far] = client.scatter([b"x" * 100_000], workers=[second])
        moved = client.submit(len, far, key="moved", workers=[first])
        client.gather([*naps, moved])
        wait_for(lambda: bad.status == "error", timeout=30, what="bad-1 to fail")
        stream = client.view("task-stream")
    ran = {t["key"]: t for t in stream["tasks"]}
    assert {ran[f"nap-{i}"]["thread"] for i in range(2)} == {0, 1}  # side by side
    assert {ran[f"nap-{i}"]["name"] for i in range(2)} == {"sleep"}
    assert all(ran[k]["worker"] == first and ran[k]["start"] < ran[k]["stop"] <= stream["now"]
               for k in ("nap-0", "nap-1"))
    assert ran["bad-1"]["status"] == "error" and ran["bad-1"]["name"] == "int"
    [transfer] = ran["moved"]["transfers"]
    assert transfer["nbytes"] >= 100_000 and transfer["start"] <= ran["moved"]["start"]
