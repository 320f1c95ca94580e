"""The rest of Dask's Client surface the audit found different, against both engines
where Dask has the behaviour: ``gather`` of an iterator, ``nthreads(workers=)``, the
executor's ``with`` block, ``run(wait=False)``, ``run_on_scheduler``'s
``dask_scheduler``, declared resources in ``scheduler_info()``, ``memory_limit`` as a
fraction, ``id``/``futures``/``dashboard_link``/``_repr_html_``, and tasks that are
coroutine functions.

``any_client`` is a scatter_magics ``Client``, then a ``distributed.Client``, each on two
one-thread workers: a test passing both ways shows the behaviour is Dask's.
"""

from __future__ import annotations

import asyncio
import operator
import time

import psutil
import pytest

from tests.conftest import client_of_kind, wait_for

pytestmark = pytest.mark.timeout(120)


def test_gather_of_an_iterator_gives_a_generator_of_values(any_client):
    futures = any_client.map(operator.add, range(4), [1] * 4, pure=False)
    values = any_client.gather(iter(futures))
    assert iter(values) is values  # read lazily, one by one, as Dask's
    assert list(values) == [1, 2, 3, 4]


def test_nthreads_of_some_workers(any_client):
    first, second = sorted(any_client.nthreads())
    assert any_client.nthreads(workers=[first]) == {first: 1}
    assert any_client.nthreads(second) == {second: 1}
    assert any_client.ncores() == {first: 1, second: 1}
    assert any_client.nthreads(workers=["tcp://127.0.0.1:1"]) == {}  # not there: left out


def test_leaving_an_executor_block_leaves_every_future_done(any_client):
    with any_client.get_executor() as executor:
        futures = [executor.submit(operator.add, i, 1) for i in range(6)]
        # A slow callback holds up the thread that settles the returned futures.
        futures[0].add_done_callback(lambda _: time.sleep(0.5))
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [1, 2, 3, 4, 5, 6]


def test_run_without_waiting_leaves_a_coroutine_running_and_returns_none(any_client, tmp_path):
    path = tmp_path / "ran"

    async def touch(name):
        await asyncio.sleep(0.05)
        with open(name, "a") as f:
            f.write(".")

    assert any_client.run(touch, str(path), wait=False) is None
    wait_for(lambda: path.exists() and len(path.read_text()) == 2, timeout=30,
             what="the coroutine to run on both workers")
    with pytest.raises(Exception, match="(?i)combination not supported|coroutine function"):
        any_client.run(operator.add, 1, 2, wait=False)  # a plain function: Dask refuses


def test_run_on_scheduler_gives_the_scheduler_as_dask_scheduler(any_client):
    workers = any_client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.workers))
    assert workers == sorted(any_client.scheduler_info()["workers"])


@pytest.mark.parametrize("kind", ["scatter_magics", "dask"])
def test_scheduler_info_shows_the_declared_resources(kind):
    client = client_of_kind(kind, n_workers=1, threads_per_worker=1, resources={"GPU": 2})
    try:
        [worker] = client.scheduler_info()["workers"].values()
        assert worker["resources"] == {"GPU": 2}
    finally:
        client.close()


def test_a_memory_limit_up_to_one_is_a_fraction_of_the_machines_memory(make_client):
    client = make_client(n_workers=1, memory_limit=0.5)
    [worker] = client.scheduler_info()["workers"].values()
    assert worker["memory_limit"] == pytest.approx(psutil.virtual_memory().total / 2, rel=0.01)


def test_the_client_names_itself_and_the_futures_it_holds(any_client):
    assert any_client.id.startswith("Client-")
    assert any_client.id in any_client._repr_html_()
    assert isinstance(any_client.dashboard_link, str)
    future = any_client.submit(operator.add, 1, 2, pure=False)
    key = future.key
    assert key in any_client.futures
    del future
    wait_for(lambda: key not in any_client.futures, timeout=10,
             what="the released key to leave client.futures")


def test_a_coroutine_function_task_runs_to_its_end_on_the_worker(any_client):
    async def double(x):
        await asyncio.sleep(0.01)
        return 2 * x

    async def fails():
        await asyncio.sleep(0)
        raise KeyError("raised in a coroutine")

    assert any_client.submit(double, 4, pure=False).result(timeout=30) == 8
    assert any_client.gather(any_client.map(double, range(3), pure=False)) == [0, 2, 4]
    with pytest.raises(KeyError, match="raised in a coroutine"):
        any_client.submit(fails, pure=False).result(timeout=30)


def test_a_future_made_from_a_key_alone_belongs_to_the_current_client(client):
    # (Dask's Future(key) binds only inside client.as_current(), or raises on use.)
    from scatter_magics import Future

    held = client.scatter([1, 2, 3])[1]
    again = Future(held.key)
    assert again.client is client and again.result(timeout=30) == 2


def test_a_gathers_progress_knows_the_total_before_the_bytes_come(client):
    # One large result travels as one message: the bar cannot count it as it comes, but
    # it can say how much is coming (the scheduler knows each result's size).
    import numpy as np

    result = client.submit(np.ones, 2**20 // 8, pure=False)  # a 1 MiB computed value
    wait_for(lambda: result.status == "finished", timeout=30, what="the task")
    reports = []
    client.gather(result, progress=lambda stage, done, total: reports.append(
        (stage, done, total)))
    transfers = [r for r in reports if r[0] == "transfer"]
    assert transfers[0][1] == 0 and transfers[0][2] >= 2**20 and transfers[-1][1] >= 2**20
