"""The rest of Dask's futures API, run against both implementations (issue 19).

As in test_parity.py, each test takes ``any_client``: once a scatter_magics ``Client``
and once a ``distributed.Client`` on a cluster of the same shape, and ``api``, the
package its names come from (``as_completed``, ``get_worker``, ``Variable``, ...), so a
test is Dask code with only the import changed. Here: the keywords ``submit`` and ``map``
keep for themselves, retries, priorities, resources; ``progress``; tasks that use the
cluster (``get_client``, ``secede``, ``worker_client``); asynchronous clients.
"""

from __future__ import annotations

import asyncio
import operator
import os
import time
import traceback

import pytest

from tests.conftest import api_of, client_of_kind, wait_for

pytestmark = pytest.mark.timeout(120)


def workers_of(client) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


def fails_until(path: str, attempts: int):
    """A task that raises until it has been run ``attempts`` times (counted in ``path``)."""
    def flaky(x):
        with open(path, "a") as f:
            f.write(".")
        with open(path) as f:
            if len(f.read()) < attempts:
                raise ValueError(f"attempt failed for {x}")
        return x + 1
    return flaky


def blocked_until(path: str):
    """A task that waits for ``path`` to exist (30 s at most), then says when it ran."""
    def block(label):
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        return label, time.monotonic()
    return block


# ---------------------------------------------------------------- item 1: keywords ---

def test_reserved_keywords_never_reach_the_function(any_client):
    # operator.getitem takes no keyword arguments: any that leaked would raise TypeError.
    future = any_client.submit(operator.getitem, [10, 20, 30], 1, priority=1, retries=2,
                               fifo_timeout="50 ms", allow_other_workers=False, pure=False)
    assert future.result(timeout=30) == 20
    futures = any_client.map(operator.getitem, [[1, 2], [3, 4]], [0, 1], priority=-1,
                             retries=1, batch_size=1, pure=False)
    assert any_client.gather(futures) == [1, 4]


def test_retries_run_a_failing_task_again(any_client, tmp_path):
    future = any_client.submit(fails_until(str(tmp_path / "count"), 3), 1, retries=2,
                               pure=False)
    assert future.result(timeout=30) == 2
    futures = any_client.map(fails_until(str(tmp_path / "other"), 2), [5], retries=5,
                             pure=False)
    assert any_client.gather(futures) == [6]


def test_too_few_retries_fail_and_retry_runs_them_again(any_client, tmp_path):
    flaky = fails_until(str(tmp_path / "count"), 3)
    future = any_client.submit(flaky, 1, retries=1, pure=False)
    with pytest.raises(ValueError, match="attempt failed"):
        future.result(timeout=30)
    assert future.status == "error"
    future.retry()  # the third attempt succeeds
    assert future.result(timeout=30) == 2
    again = any_client.submit(fails_until(str(tmp_path / "again"), 2), 7, pure=False)
    with pytest.raises(ValueError):
        again.result(timeout=30)
    any_client.retry([again])
    assert again.result(timeout=30) == 8


def held_by_dask_worker(client, address: str) -> set:
    def held(dask_worker):
        return {key for key, ts in dask_worker.state.tasks.items()
                if ts.state in ("ready", "executing")}
    return client.run(held, workers=[address])[address]


def test_higher_priority_runs_first_among_queued_tasks(any_client, tmp_path):
    target = workers_of(any_client)[0]
    block = blocked_until(str(tmp_path / "go"))
    first = any_client.submit(block, "first", workers=[target], pure=False)
    low = [any_client.submit(block, f"low-{i}", workers=[target], pure=False)
           for i in range(2)]
    high = any_client.submit(block, "high", workers=[target], priority=1, pure=False)
    keys = {f.key for f in [first, *low, high]}
    wait_for(lambda: keys <= set(any_client.processing().get(target, ())), timeout=30,
             what="every task queued on the worker")
    if type(any_client).__module__.startswith("distributed"):
        # Dask's scheduler sends a task on its batched stream a few ms after it counts
        # it processing: the worker must hold all of them before the first one ends.
        wait_for(lambda: keys <= held_by_dask_worker(any_client, target), timeout=30,
                 what="every task on the Dask worker")
    (tmp_path / "go").touch()
    started = dict(any_client.gather([first, *low, high]))
    assert started["high"] < started["low-0"] and started["high"] < started["low-1"]


def test_an_as_completed_loop_built_on_priority_finishes(any_client, api):
    # dask-examples' futures.ipynb: new work is submitted with priority=1 as results come.
    seq = api.as_completed(any_client.map(operator.add, range(6), [1] * 6))
    results = []
    for future in seq:
        y = future.result()
        results.append(y)
        if y < 20:
            seq.add(any_client.submit(operator.add, y, 10, priority=1))
    assert sorted(results)[-6:] == [21, 22, 23, 24, 25, 26]


def test_allow_other_workers_makes_workers_a_preference(any_client):
    future = any_client.submit(operator.add, 1, 2, workers=["tcp://127.0.0.1:1"],
                               allow_other_workers=True, pure=False)
    assert future.result(timeout=30) == 3
    with pytest.raises(ValueError, match="allow_other_workers"):
        any_client.submit(operator.add, 1, 2, allow_other_workers=True)


@pytest.mark.parametrize("kind", ["scatter_magics", "dask"])
def test_resources_decide_where_and_how_many_tasks_run(kind):
    def hold(label):
        start = time.monotonic()
        time.sleep(0.2)  # long enough to overlap, if two were let in at once
        return start, time.monotonic()

    with client_of_kind(kind, processes=False, n_workers=1, threads_per_worker=2,
                        resources={"GPU": 1}) as client:
        api = api_of(client)
        first, second = client.map(hold, ["a", "b"], resources={"GPU": 1}, pure=False)
        (start_1, end_1), (start_2, end_2) = client.gather([first, second])
        assert end_1 <= start_2 or end_2 <= start_1  # one GPU: one at a time
        nowhere = client.submit(abs, -1, resources={"TPU": 1}, pure=False)
        with pytest.raises(TimeoutError):
            api.wait([nowhere], timeout=0.3)  # no worker has a TPU: it waits
        assert nowhere.status == "pending"
        assert client.submit(abs, -2, pure=False).result(timeout=30) == 2


def test_traceback_and_cancelled(any_client, tmp_path):
    def explode(x):
        raise KeyError(x)

    future = any_client.submit(explode, 3, pure=False)
    tb = future.traceback(timeout=30)
    assert any("explode" in line for line in traceback.format_tb(tb))
    assert not future.cancelled()
    fine = any_client.submit(operator.add, 1, 1, pure=False)
    assert fine.traceback(timeout=30) is None
    slow = any_client.submit(blocked_until(str(tmp_path / "go")), "slow", pure=False)
    slow.cancel()
    wait_for(slow.cancelled, what="the future cancelled")
    (tmp_path / "go").touch()  # a running task is not interrupted: let it end


# ---------------------------------------------------------------- item 2: progress ---

def test_progress_in_a_terminal_waits_for_every_future(any_client, api, capsys):
    futures = any_client.map(time.sleep, [0.05] * 4, pure=False)
    assert api.progress(futures, notebook=False) is None
    assert all(f.done() for f in futures)


def test_progress_in_a_notebook_shows_a_bar_per_kind_of_task(client, capsys):
    from scatter_magics import progress
    from scatter_magics.notebook.progress_bar import WidgetView
    from scatter_magics.notebook.progress_futures import FuturesBar

    published = []
    view = WidgetView(publish=lambda bundle, display_id, update: published.append(bundle))
    futures = client.map(operator.add, range(5), range(5), pure=False)
    FuturesBar("add", futures, view).wait()
    assert view.bar.value == 1.0 and view.bar.bar_style == "success"
    assert published[-1]["text/plain"].startswith("add: done in")
    failing = client.submit(operator.truediv, 1, 0, pure=False)
    FuturesBar("truediv", [failing], view).wait()
    assert view.bar.bar_style == "danger"
    # progress() itself: one bar per task name, drawn where the cell's output goes.
    assert progress(client.map(abs, [-1, -2]), client.submit(operator.neg, 1),
                    notebook=True) is None
    printed = []  # outside a kernel, IPython's display() prints what it would show

    def settled() -> bool:
        printed.append(capsys.readouterr().out)
        return all(f"{name}: done in" in "".join(printed) for name in ("abs", "neg"))
    wait_for(settled, what="both bars settled")


# ---------------------------------------------------------------- item 3: tasks using the cluster ---

def test_tasks_that_submit_and_gather_do_not_deadlock_with_every_thread_doing_it(any_client,
                                                                                  api):
    def fib(n):
        if n < 2:
            return n
        with api.worker_client() as client:
            a, b = client.submit(fib, n - 1), client.submit(fib, n - 2)
            return a.result() + b.result()

    assert any_client.submit(fib, 7).result(timeout=60) == 13


def test_get_client_secede_rejoin_in_every_task(any_client, api):
    def total(n):
        client = api.get_client()
        futures = client.map(operator.mul, range(n), [2] * n, pure=False)
        api.secede()
        values = client.gather(futures)
        api.rejoin()
        return sum(values)

    # More such tasks than threads (2): without secede the last ones would wait for ever.
    assert any_client.gather(any_client.map(total, [3, 4, 5, 6], pure=False)) == [6, 12, 20, 30]


def test_get_worker_names_the_worker_running_the_task(any_client, api):
    future = any_client.submit(lambda: api.get_worker().address, pure=False)
    assert future.result(timeout=30) == any_client.who_has([future])[future.key][0]
    with pytest.raises(ValueError):
        api.get_worker()  # not in a task


def test_get_client_outside_tasks_is_the_current_client(any_client, api):
    assert api.get_client() is any_client
    assert api.default_client() is any_client


# ---------------------------------------------------------------- item 7: asynchronous ---

def test_every_new_method_is_awaitable_on_an_asynchronous_client(any_client, api, tmp_path):
    address = any_client.scheduler_info()["address"]
    module = tmp_path / "async_uploaded.py"
    module.write_text("VALUE = 'uploaded'\n")

    async def main():
        async with type(any_client)(address, asynchronous=True) as client:
            await client.wait_for_workers(2, timeout=30)
            pids = await client.run(os.getpid)
            assert sorted(pids) == workers_of(any_client)
            assert await client.run_on_scheduler(os.getpid) == os.getpid()
            versions = await client.get_versions()
            assert set(versions) == {"scheduler", "workers", "client"}
            failing = client.submit(operator.truediv, 1, 0, pure=False)
            with pytest.raises(ZeroDivisionError):
                await failing
            await client.retry([failing])
            with pytest.raises(ZeroDivisionError):
                await failing
            await client.upload_file(str(module))
            await client.rebalance()
            variable = api.Variable("async-variable", client=client)
            await variable.set(41)
            assert await variable.get(timeout=10) == 41
            deleted = variable.delete()  # (Dask's sends, and returns None)
            if deleted is not None:
                await deleted
            return True

    assert asyncio.run(asyncio.wait_for(main(), 90))


def test_await_an_asynchronous_client(any_client):
    address = any_client.scheduler_info()["address"]

    async def main():
        client = await type(any_client)(address, asynchronous=True)
        try:
            return await client.submit(operator.add, 20, 22, pure=False)
        finally:
            await client.close()

    assert asyncio.run(asyncio.wait_for(main(), 60)) == 42

