"""Dask's coordination primitives and the Client's house-keeping, against both
implementations (issue 19, items 4 and 5): the same code, only the import changed.

``any_client`` is a scatter_magics ``Client`` or a ``distributed.Client`` on two
one-thread workers; ``api`` is the package the names come from. A ``Lock`` or
``Semaphore`` takes the current client, as in Dask, and the other primitives are given
``client=`` so that a second client in a test cannot take them over.
"""

from __future__ import annotations

import operator
import os
import threading
import time
import zipfile

import pytest

from tests.conftest import api_of, client_of_kind, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=["scatter_magics", "dask"])
def any_client(request):
    client = client_of_kind(request.param, n_workers=2, threads_per_worker=1)
    yield client
    client.close()


def workers_of(client) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


def gate(path: str):
    """A task that waits for ``path`` to exist (30 s at most)."""
    def wait_for_gate(*_):
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        return "opened"
    return wait_for_gate


def holds(client, key) -> bool:
    """Whether ``client`` still counts a Future of ``key`` (each client's own book)."""
    if hasattr(client, "refs"):
        return client.refs.get(key) is not None
    return key in client.futures


# ---------------------------------------------------------------- item 4: coordination ---

def test_a_variable_shares_values_and_futures_between_clients(any_client, api):
    x = api.Variable("shared-x", client=any_client)
    x.set(123)
    other = type(any_client)(any_client.scheduler_info()["address"])
    try:
        seen = api.Variable("shared-x", client=other)
        assert seen.get(timeout=10) == 123
        future = any_client.submit(operator.add, 40, 2, pure=False)
        x.set(future)
        del future  # the variable holds the key now
        got = seen.get(timeout=10)
        assert got.result(timeout=30) == 42
    finally:
        other.close()
    with pytest.raises(TimeoutError):
        api.Variable("never-set", client=any_client).get(timeout=0.1)
    x.delete()


def test_a_variable_pickled_into_a_task_stops_it(any_client, api):
    def loop_until_stopped(stop):
        deadline = time.monotonic() + 30
        while not stop.get() and time.monotonic() < deadline:
            time.sleep(0.01)
        return stop.get()

    stop = api.Variable("stop-flag", client=any_client)
    stop.set(False)
    running = any_client.submit(loop_until_stopped, stop, pure=False)
    stop.set(True)
    assert running.result(timeout=30) is True


def test_a_queue_carries_values_and_futures(any_client, api):
    def produce(queue, n):
        for i in range(n):
            queue.put(i)
        return n

    queue = api.Queue("work-queue", client=any_client)
    assert any_client.submit(produce, queue, 3, pure=False).result(timeout=30) == 3
    assert queue.qsize() == 3
    assert queue.get(timeout=5) == 0
    assert queue.get(batch=True) == [1, 2]
    with pytest.raises(TimeoutError):
        queue.get(timeout=0.1)
    queue.put(any_client.submit(operator.mul, 6, 7, pure=False))
    assert queue.get(timeout=5).result(timeout=30) == 42


def test_a_lock_has_one_holder_across_clients_and_tasks(any_client, api, tmp_path):
    lock = api.Lock("the-lock")
    assert lock.acquire(timeout=5)
    other = api.Lock("the-lock")
    assert not other.acquire(timeout=0.2)
    assert lock.locked()
    lock.release()
    assert other.acquire(timeout=5)
    other.release()
    with pytest.raises(RuntimeError):
        other.release()

    counter = tmp_path / "counter"
    counter.write_text("0")

    def increment(path, lock):
        with lock:  # read, wait, write: without the lock, updates would be lost
            value = int(open(path).read())
            time.sleep(0.02)
            with open(path, "w") as f:
                f.write(str(value + 1))

    any_client.gather(any_client.map(increment, [str(counter)] * 6, [lock] * 6, pure=False))
    assert counter.read_text() == "6"


def test_an_event_wakes_the_tasks_waiting_for_it(any_client, api):
    event = api.Event("the-event", client=any_client)
    assert not event.wait(timeout=0.1)
    waiter = any_client.submit(lambda e: e.wait(timeout=20), event, pure=False)
    event.set()
    assert waiter.result(timeout=30) is True
    assert event.is_set()
    event.clear()
    assert not event.is_set()


def test_a_semaphore_leases_at_most_max_leases(any_client, api):
    sem = api.Semaphore(max_leases=2, name="the-semaphore")
    assert sem.acquire(timeout=5) and sem.acquire(timeout=5)
    other = api.Semaphore(max_leases=2, name="the-semaphore")
    assert not other.acquire(timeout=0.2)
    assert sem.get_value() == 2
    sem.release()
    assert other.acquire(timeout=5)
    other.release()
    sem.release()
    with pytest.raises(RuntimeError):
        sem.release()


def test_fire_and_forget_runs_tasks_nobody_keeps(any_client, api, tmp_path):
    def write(_, path):
        with open(path, "w") as f:
            f.write("written")

    first = any_client.submit(gate(str(tmp_path / "go")), pure=False)
    last = any_client.submit(write, first, str(tmp_path / "out"), pure=False)
    api.fire_and_forget(last)
    key = last.key
    del first, last  # without fire_and_forget, the waiting task would be forgotten
    wait_for(lambda: not holds(any_client, key), what="the client to let the key go")
    (tmp_path / "go").touch()
    wait_for(lambda: (tmp_path / "out").exists(), timeout=30, what="the forgotten task's file")


def test_futures_of_and_default_client(any_client, api):
    a, b = any_client.scatter([1, 2], hash=False)
    assert {f.key for f in api.futures_of([a, {"x": (b, 3)}, "text"])} == {a.key, b.key}
    assert api.default_client() is any_client


# ---------------------------------------------------------------- item 5: house-keeping ---

def test_run_calls_a_function_on_every_worker(any_client):
    assert sorted(any_client.run(os.getpid)) == workers_of(any_client)
    first = workers_of(any_client)[0]
    assert any_client.run(lambda dask_worker: dask_worker.address, workers=[first]) == \
        {first: first}
    with pytest.raises(ZeroDivisionError):
        any_client.run(operator.truediv, 1, 0)
    returned = any_client.run(operator.truediv, 1, 0, on_error="return")
    assert all(isinstance(v, ZeroDivisionError) for v in returned.values())
    assert any_client.run(operator.truediv, 1, 0, on_error="ignore") == {}


def test_run_on_scheduler_gives_the_scheduler(any_client):
    name = any_client.run_on_scheduler(lambda dask_scheduler: type(dask_scheduler).__name__)
    assert name == "Scheduler"
    assert any_client.run_on_scheduler(operator.add, 1, 2) == 3


def test_wait_for_workers_and_versions(any_client):
    any_client.wait_for_workers(2, timeout=10)
    with pytest.raises(TimeoutError):
        any_client.wait_for_workers(5, timeout=0.2)
    versions = any_client.get_versions(check=True)
    assert set(versions["workers"]) == set(workers_of(any_client))
    assert versions["client"]["packages"]["python"] == \
        versions["scheduler"]["packages"]["python"]


def test_upload_file_makes_a_module_importable_on_every_worker(any_client, tmp_path):
    path = tmp_path / "uploaded_mod_19.py"
    path.write_text("VALUE = 'first'\n")
    any_client.upload_file(str(path))
    assert set(any_client.run(lambda: __import__("uploaded_mod_19").VALUE).values()) == {"first"}
    path.write_text("VALUE = 'second'\n")  # a new version is reloaded
    any_client.upload_file(str(path))
    future = any_client.submit(lambda: __import__("uploaded_mod_19").VALUE, pure=False)
    assert future.result(timeout=30) == "second"
    archive = tmp_path / "zipped_pkg_19.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped_pkg_19/__init__.py", "ANSWER = 42\n")
    any_client.upload_file(str(archive))
    assert set(any_client.run(lambda: __import__("zipped_pkg_19").ANSWER).values()) == {42}


def test_get_executor_is_a_concurrent_futures_executor(any_client):
    with any_client.get_executor() as executor:
        assert executor.submit(operator.add, 1, 2).result(timeout=30) == 3
        assert list(executor.map(abs, [-1, -2, -3])) == [1, 2, 3]
    with pytest.raises(RuntimeError):
        executor.submit(abs, 1)


# Dask balances process memory, and only between workers past thresholds of their
# memory_limit (30% / 60%, a 10% gap): set to balance the data held, as ours does.
REBALANCE_DATA = {"distributed.worker.memory.rebalance.measure": "managed",
                  "distributed.worker.memory.rebalance.sender-min": 0.0,
                  "distributed.worker.memory.rebalance.recipient-max": 1.0,
                  "distributed.worker.memory.rebalance.sender-recipient-gap": 0.0}


@pytest.mark.parametrize("kind", ["scatter_magics", "dask"])
def test_rebalance_spreads_data_held_by_one_worker(kind):
    dask = pytest.importorskip("dask")
    with dask.config.set(REBALANCE_DATA), \
            client_of_kind(kind, processes=False, n_workers=2, threads_per_worker=1) as client:
        first = workers_of(client)[0]
        values = [bytes(2**20) + bytes([i]) for i in range(8)]  # 1 MiB each
        futures = client.scatter(values, workers=[first], hash=False)
        client.rebalance(futures)
        held = {w: len(keys) for w, keys in client.has_what().items()}
        assert held == {w: 4 for w in workers_of(client)}
        assert client.gather(futures) == values


@pytest.mark.parametrize("kind", ["scatter_magics", "dask"])
def test_workers_in_this_process_pickle_nothing(kind):
    with client_of_kind(kind, processes=False, n_workers=1, threads_per_worker=6) as client:
        unpicklable = threading.Lock()
        future = client.scatter(unpicklable, hash=False)
        assert client.gather(future) is unpicklable
        same = client.submit(lambda lock: lock, future, pure=False)
        assert same.result(timeout=30) is unpicklable
        made = client.submit(threading.Lock, pure=False).result(timeout=30)
        assert type(made) is type(unpicklable)
        assert list(client.nthreads().values()) == [6]
        api = api_of(client)
        total = client.submit(lambda: sum(api.get_client().gather(
            api.get_client().map(abs, [-1, -2]))), pure=False)
        assert total.result(timeout=30) == 3  # a task gets a client (ours: the user's own)


@pytest.mark.parametrize("kind", ["scatter_magics", "dask"])
def test_scale_upload_and_restart(kind, tmp_path):
    with client_of_kind(kind, n_workers=1, threads_per_worker=1) as client:
        module = tmp_path / "late_joiner_mod_19.py"
        module.write_text("HERE = True\n")
        client.upload_file(str(module))
        data = client.scatter(list(range(8)), hash=False)
        client.cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        assert set(client.run(lambda: __import__("late_joiner_mod_19").HERE).values()) == {True}
        client.cluster.scale(1)
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=60,
                 what="a worker retired")
        assert client.gather(data) == list(range(8))  # their data moved first
        pids = set(client.run(os.getpid).values())
        pending = client.submit(abs, -1, resources={"NOWHERE": 1}, pure=False)  # never runs
        client.restart()
        assert all(f.status == "cancelled" for f in [*data, pending])
        assert not pids & set(client.run(os.getpid).values())
        assert client.submit(operator.add, 1, 2, pure=False).result(timeout=30) == 3


def test_the_live_view_sees_workers_in_this_process():
    from scatter_magics import Client

    with Client(processes=False, n_workers=2) as client:
        batches = []
        subscription = client.subscribe_events(batches.append)
        client.scatter([1, 2, 3], hash=False)
        wait_for(lambda: sum(e["event"] == "key" for b in batches for e in b) >= 3,
                 what="key events")
        added = [e for b in batches for e in b if e["event"] == "worker-added"]
        assert sorted(e["name"] for e in added) == ["worker-0", "worker-1"]
        subscription.close()



def test_a_lock_is_given_back_when_its_holder_leaves_or_gives_up():
    from scatter_magics import Client, Lock
    from scatter_magics.engine.client.coordination import _request

    with Client(n_workers=1) as client:
        leaver = Client(client.scheduler_address)
        assert Lock("kept", client=leaver).acquire(timeout=5)
        leaver.close()  # (a task's client dies with its worker the same way)
        mine = Lock("kept", client=client)
        assert mine.acquire(timeout=5)
        # A waiter that gives up (Ctrl-C cancels its wait) must not be granted the lock
        # for nobody when it is released.
        msg = {"op": "semaphore-acquire", "name": "kept", "lease": "abandoned",
               "max_leases": 1}
        with pytest.raises(TimeoutError):
            client.sync(_request, client, msg, None, callback_timeout=0.2)
        mine.release()
        assert Lock("kept", client=client).acquire(timeout=5)
