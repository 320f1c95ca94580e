"""Where tasks run, on real clusters, ours and Dask's: the whole cluster is used, inputs
are copied when a queue is longer than the copy, ``workers=`` is never broken, and
queued work moves to workers that join (work stealing).

Each test runs against a scatter_magics ``Client`` and a ``distributed.Client`` of the
same shape, as tests/test_parity.py does. Times are measured in benchmarks/ (the
"40 tasks on one worker's input" row), never asserted here.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter

import cloudpickle
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)
# The tasks below travel by value: workers cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_client(kind: str, n_workers: int, threads: int):
    if kind == "dask":
        distributed = pytest.importorskip("distributed")
        cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads,
                                           processes=True, dashboard_address=":0")
        return distributed.Client(cluster)
    from scatter_magics import Client

    return Client(n_workers=n_workers, threads_per_worker=threads)


@pytest.fixture(scope="module", params=["scatter_magics", "dask"])
def three_workers(request):
    client = make_client(request.param, 3, 2)
    wait_for(lambda: len(client.scheduler_info()["workers"]) == 3, timeout=60,
             what="three workers")
    yield client
    cluster = client.cluster
    client.close()
    if request.param == "dask":
        cluster.close()


def pid_after(seconds: float, *inputs) -> int:
    time.sleep(seconds)
    return os.getpid()


def pid_of(client, address: str) -> int:
    return client.submit(os.getpid, workers=[address], pure=False).result()


def test_tasks_on_one_workers_small_input_use_every_worker(three_workers):
    client = three_workers
    first = sorted(client.scheduler_info()["workers"])[0]
    [x] = client.scatter([list(range(10))], workers=[first])
    futures = [client.submit(pid_after, 0.3, x, i) for i in range(18)]
    ran = Counter(client.gather(futures))
    assert len(ran) == 3, f"18 tasks of 0.3 s ran on {len(ran)} of 3 workers: {ran}"


def test_a_workers_restriction_holds_while_the_others_are_idle(three_workers):
    client = three_workers
    second = sorted(client.scheduler_info()["workers"])[1]
    futures = [client.submit(pid_after, 0.1, i, workers=[second]) for i in range(8)]
    assert set(client.gather(futures)) == {pid_of(client, second)}


def pid_once(path: str, *inputs) -> int:
    while not os.path.exists(path):  # held until the test lets every task go
        time.sleep(0.01)
    time.sleep(0.1)
    return os.getpid()


@pytest.mark.parametrize("kind", ["scatter_magics", "dask"])
def test_queued_tasks_move_to_a_worker_that_joins(kind, tmp_path):
    client = make_client(kind, 1, 1)
    cluster = client.cluster
    go = str(tmp_path / "go")
    try:
        futures = [client.submit(pid_once, go, i) for i in range(10)]  # queued on one thread
        cluster.scale(2)
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=60,
                 what="the second worker")
        open(go, "w").close()
        ran = Counter(client.gather(futures))
        assert len(ran) == 2, f"the worker that joined ran none of the 10 queued tasks: {ran}"
    finally:
        client.close()
        if kind == "dask":
            cluster.close()
