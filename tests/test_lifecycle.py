"""Clusters start and end cleanly; data lives exactly as long as its futures."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from scatter_magics import Client, LocalCluster, as_completed, get_client, wait
from tests.conftest import exited, wait_for, worker_pids

pytestmark = pytest.mark.timeout(60)


def test_close_ends_every_worker(make_client):
    client = make_client(n_workers=2)
    pids = list(worker_pids(client).values())
    client.close()
    for pid in pids:
        assert exited(pid)


def test_sigkill_of_the_parent_leaves_no_worker(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from scatter_magics import Client
        client = Client(n_workers=2)
        pids = [w["pid"] for w in client.scheduler_info()["workers"].values()]
        print(" ".join(map(str, pids)), flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        parent.kill()
        parent.wait()
        wait_for(lambda: all(exited(p) for p in pids), timeout=10,
                 what="workers to exit after their parent was killed")
    finally:
        parent.kill()
        parent.stdout.close()


def test_dropping_the_last_future_frees_the_data(client):
    future = client.scatter("short-lived", hash=False)
    second = client.scatter("short-lived-2", hash=False)
    key = future.key
    alias = future
    assert key in client.who_has()
    del future
    gc.collect()
    assert key in client.who_has()  # alias still holds it
    del alias
    wait_for(lambda: key not in client.who_has(), what="the key to be released")
    wait_for(lambda: key not in {k for ks in client.has_what().values() for k in ks},
             what="the workers to drop the key")
    assert second.result() == "short-lived-2"


def test_release_is_explicit_too(client):
    future = client.scatter("explicit", hash=False)
    future.release()
    wait_for(lambda: future.key not in client.who_has(), what="release")


def test_inputs_of_a_pending_task_stay_until_it_runs(client):
    data = client.scatter(list(range(100)), hash=False)
    total = client.submit(lambda xs: sum(xs), data)
    key = data[0].key
    del data
    gc.collect()
    assert total.result() == sum(range(100))
    wait_for(lambda: key not in client.who_has(), what="inputs to be released")


def test_local_cluster_is_shared_by_clients():
    with LocalCluster(n_workers=1) as cluster:
        procs = list(cluster.processes.values())
        with Client(cluster) as a, Client(cluster.scheduler_address) as b:
            future = a.scatter("shared", hash=False)
            assert b.who_has()[future.key]
            assert b.submit(len, "abc").result() == 3
        assert cluster.status == "running"
    assert cluster.status == "closed"
    assert all(proc.poll() is not None for proc in procs)


def test_a_closed_cluster_is_not_reached_at_its_old_address():
    """Its port may serve another process's scheduler next (the kernel hands ports out
    again): a client of that address goes over the network, never to the closed one."""
    cluster = LocalCluster(n_workers=1)
    address = cluster.scheduler_address
    cluster.close()
    with pytest.raises(ValueError, match="needs the cluster's secret"):
        Client(address, timeout=5)


def test_get_client_returns_the_latest_open_one(make_client):
    older = make_client(n_workers=1)
    client = make_client(n_workers=1)
    assert get_client() is client
    client.close()
    assert get_client() is older
    older.close()
    try:
        assert get_client() not in (older, client)  # another test's client may be open
    except ValueError as exc:
        assert "No client" in str(exc)


def test_memory_limit_parsing(make_client):
    client = make_client(n_workers=1, memory_limit="1.5GiB")
    [worker] = client.scheduler_info()["workers"].values()
    assert worker["memory_limit"] == int(1.5 * 2**30)
    with pytest.raises(ValueError, match="memory_limit"):
        Client(n_workers=1, memory_limit="lots")


def test_wait_and_as_completed(client):
    futures = client.map(lambda x: x * 2, range(10), pure=False)
    done, not_done = wait(futures, timeout=30)
    assert len(done) == 10 and not not_done
    assert sorted(f.result() for f in as_completed(futures)) == [x * 2 for x in range(10)]


def test_add_done_callback_runs_once_done(client):
    seen = []
    future = client.submit(lambda: "value", pure=False)
    future.add_done_callback(lambda f: seen.append(f.result()))
    wait_for(lambda: seen == ["value"], what="the callback")


def test_asynchronous_client():
    async def main():
        async with Client(n_workers=1, asynchronous=True) as client:
            future = await client.scatter([1, 2, 3])
            assert await client.gather(future) == [1, 2, 3]
            total = client.submit(sum, future)
            assert await total == 6
            assert await client.who_has(total)
        return client.status
    assert asyncio.run(asyncio.wait_for(main(), 60)) == "closed"


def test_asynchronous_client_is_awaitable():
    async def main():
        client = await Client(n_workers=1, asynchronous=True)
        try:
            return await client.gather(await client.scatter(41, hash=False)) + 1
        finally:
            await client.close()
    assert asyncio.run(main()) == 42


def test_event_stream_reports_status_and_placement(make_client):
    client = make_client(n_workers=2)
    batches = []
    subscription = client.subscribe_events(batches.append)
    snapshot = batches[0]
    assert sorted(e["name"] for e in snapshot if e["event"] == "worker-added") == \
        ["worker-0", "worker-1"]

    def latest(key):
        events = [e for b in batches for e in b if e.get("key") == key]
        return events[-1] if events else None

    future = client.scatter("watched", broadcast=True, hash=False)
    wait_for(lambda: latest(future.key) and len(latest(future.key)["workers"]) == 2,
             what="a key event with both workers")
    assert latest(future.key)["status"] == "finished"
    assert latest(future.key)["type"] == "str"
    key = future.key
    del future
    wait_for(lambda: latest(key)["status"] == "released", what="a released event")
    wait_for(lambda: any(e["event"] == "worker-metrics" for b in batches for e in b),
             what="worker metrics")
    subscription.close()
    count = len(batches)
    client.scatter("unwatched", hash=False)
    client.who_has()  # a round trip: any event would have been delivered by now
    assert len(batches) == count


def test_worker_death_appears_in_the_event_stream(make_client):
    client = make_client(n_workers=2)
    batches = []
    client.subscribe_events(batches.append)
    address, pid = sorted(worker_pids(client).items())[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: any(e["event"] == "worker-removed" and e["address"] == address
                         for b in batches for e in b), what="a worker-removed event")


def test_garbage_collection_inside_the_client_does_not_deadlock(client):
    # Futures in reference cycles are freed by the collector, which can run inside
    # the client's own bookkeeping; releasing them there must not take its lock.
    old = gc.get_threshold()
    gc.set_threshold(1)
    try:
        for i in range(300):
            cycle = [client.scatter(i, hash=False)]
            cycle.append(cycle)
    finally:
        gc.set_threshold(*old)
    gc.collect()
    assert client.gather(client.scatter("after", hash=False)) == "after"


def test_subscribing_right_after_the_last_unsubscribe_still_gets_events(client):
    for i in range(20):
        client.subscribe_events(lambda batch: None).close()
        seen = []
        subscription = client.subscribe_events(seen.extend)
        future = client.scatter(f"resubscribe-{i}", hash=False)
        wait_for(lambda: any(e.get("key") == future.key for e in seen), timeout=5,
                 what="an event after resubscribing")
        subscription.close()


def test_subscribers_hear_that_the_client_closed(make_client):
    client = make_client(n_workers=1)
    batches = []
    client.subscribe_events(batches.append)
    client.close()
    assert batches[-1] == [{"event": "closed"}]


def test_a_dropped_client_ends_its_cluster():
    client = Client(n_workers=1)
    procs = list(client.cluster.processes.values())
    del client
    gc.collect()
    wait_for(lambda: all(p.poll() is not None for p in procs), timeout=15,
             what="the dropped client's workers to exit")


def test_a_worker_that_dies_while_starting_is_reported_at_once(tmp_path, monkeypatch):
    # A broken environment: a spawned worker's interpreter finds a package that exits at
    # once (a forked one has its modules from the fork server already).
    fake = tmp_path / "scatter_magics"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "engine").mkdir()
    (fake / "engine" / "__init__.py").write_text("")
    (fake / "engine" / "worker.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)  # `python -m` puts the working directory first on sys.path
    with pytest.raises(RuntimeError, match=r"exited before connecting.*'worker-0': 3"):
        LocalCluster(n_workers=1, timeout=30, start_method="spawn")


def test_a_worker_process_starts_without_the_client_side_imports():
    # Worker start-up time is most of a cold start; the client, scheduler and tornado
    # are a third of it and a worker never uses them (see scatter_magics/__init__.py).
    code = ("import sys, scatter_magics.engine.worker.process; "
            "print(sorted(m for m in ('scatter_magics.engine.client.client', "
            "'scatter_magics.engine.scheduler.server', 'tornado') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_scale_replaces_a_worker_that_died():
    cluster = LocalCluster(n_workers=2, restart_limit=0)  # no supervisor replacements
    client = Client(cluster)
    try:
        _scale_after_a_death(client)
    finally:
        client.close()
        cluster.close()


def _scale_after_a_death(client):
    os.kill(sorted(worker_pids(client).values())[0], signal.SIGKILL)
    wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=30,
             what="the scheduler to notice the dead worker")
    client.cluster.scale(2)
    names = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
    assert len(names) == 2 and "worker-2" in names  # a fresh name, never a reused one
    assert client.gather(client.scatter([1, 2], broadcast=True)) == [1, 2]


def test_gather_of_a_small_scattered_value_needs_no_worker(make_client):
    from scatter_magics.engine.client.client import LOCAL_COPY_LIMIT

    client = make_client(n_workers=1)
    large_value = "x" * (LOCAL_COPY_LIMIT + 1)
    small, large = client.scatter(["small", large_value], hash=False)
    [pid] = worker_pids(client).values()
    os.kill(pid, signal.SIGSTOP)  # the worker cannot answer now
    try:
        assert client.gather(small, timeout=5) == "small"  # the client's own copy
        with pytest.raises(TimeoutError):
            client.gather(large, timeout=0.5)  # too large to keep: read from the worker
    finally:
        os.kill(pid, signal.SIGCONT)
    assert client.gather([small, large]) == ["small", large_value]


def test_small_scatter_returns_before_a_stopped_worker_stores_it(make_client):
    from scatter_magics.engine.client.client import LOCAL_COPY_LIMIT

    client = make_client(n_workers=1)
    [(address, pid)] = worker_pids(client).items()
    value = "y" * (LOCAL_COPY_LIMIT + 1)  # not kept by the client: gather asks the worker
    os.kill(pid, signal.SIGSTOP)
    try:
        future = client.scatter(value, hash=False)  # no explicit timeout: not confirmed
        assert future.status == "finished"
        assert client.who_has([future])[future.key] == [address]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert future.result(timeout=30) == value  # the worker got it first, on that connection


@pytest.mark.parametrize("end", [Client.close, lambda client: client.cluster.close()],
                         ids=["client.close", "cluster.close (as at exit)"])
def test_ending_a_cluster_does_not_release_its_keys_one_by_one(end, monkeypatch, caplog):
    # Closing (or exiting, which closes the clusters) after scattering a million values
    # took 10-15 s, key by key, and at exit timed out with a traceback: the keys go with
    # the cluster, so nothing is released, recovered or reported one key at a time.
    from scatter_magics.engine.scheduler.state import SchedulerState

    walked = []
    forget_client = SchedulerState.forget_client
    monkeypatch.setattr(SchedulerState, "forget_client",
                        lambda state, client_id: walked.append(client_id) or
                        forget_client(state, client_id))
    client = Client(n_workers=2, threads_per_worker=1)
    cluster = client.cluster
    futures = client.scatter(list(range(2_000)))
    assert client.gather(futures[-1]) == 1_999
    with caplog.at_level("WARNING", logger="scatter_magics"):
        end(client)
    client.close()
    assert walked == [] and cluster.status == "closed"
    assert not [r for r in caplog.records if "may hold it" in r.getMessage()]
