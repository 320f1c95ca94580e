"""Chaos tests for supervised workers: killed, frozen, orphaned, and what they held.

Each test does to a worker what the OOM killer, a debugger or a crashing kernel does,
then checks the cluster heals (or says clearly why it cannot) and the data stays right.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scatter_magics import Client
from scatter_magics.engine.backend import EmbeddedBackend
from scatter_magics.engine.cluster.local import LocalCluster
from scatter_magics.errors import FutureLostError
from scatter_magics.notebook.display import ClusterSummary
from tests.conftest import exited, wait_for, worker_pids

pytestmark = pytest.mark.timeout(60)


def events_of(batches: list, kind: str) -> list[dict]:
    return [e for batch in list(batches) for e in batch if e["event"] == kind]


def names(client) -> list[str]:
    return sorted(w["name"] for w in client.scheduler_info()["workers"].values())


# ------------------------------------------------------------ replacement ---

def test_a_killed_worker_is_replaced_under_a_new_name(make_client):
    client = make_client(n_workers=2)
    batches: list = []
    client.subscribe_events(batches.append)
    (address, pid), _ = sorted(worker_pids(client).items())
    dead_name = client.scheduler_info()["workers"][address]["name"]
    os.kill(pid, signal.SIGKILL)  # what the OOM killer does

    def replaced() -> bool:  # one snapshot: two calls could straddle the death's notice
        workers = client.scheduler_info()["workers"]
        return len(workers) == 2 and address not in workers

    wait_for(replaced, timeout=15, what="a replacement worker")
    assert names(client) == sorted({"worker-0", "worker-1", "worker-2"} - {dead_name})
    [removed] = events_of(batches, "worker-removed")
    assert removed["name"] == dead_name and removed["reason"] == "was killed by SIGKILL"
    [added] = [e for e in events_of(batches, "worker-added") if e["name"] == "worker-2"]
    assert added["replaces"] == dead_name
    info = client.scheduler_info()
    assert info["supervision"]["restarts"] == 1 and info["supervision"]["replacing"]
    assert EmbeddedBackend(client).n_workers() == 2 == client.cluster._alive()
    assert client.gather(client.scatter([1, 2, 3], broadcast=True)) == [1, 2, 3]


def test_the_widget_shows_the_death_and_the_replacement(make_client):
    from scatter_magics.notebook.cluster_table import ClusterTable

    client = make_client(n_workers=1)
    table = ClusterTable()
    client.subscribe_events(table.apply)
    os.kill(next(iter(worker_pids(client).values())), signal.SIGKILL)
    wait_for(lambda: [w["name"] for w in table.rows()] == ["worker-1"], timeout=15,
             what="the widget to show the replacement only")
    assert table.rows()[0]["note"] == "replaces worker-0, which was killed by SIGKILL"


def test_tasks_fail_saying_why_rather_than_wait_when_no_worker_is_left():
    # A crash loop that killed every worker: what waits to run, and what is submitted
    # then, fails with the supervisor's words (it hung for ever), until scale() again.
    import time

    from scatter_magics.errors import NoWorkersError

    cluster = LocalCluster(n_workers=1, restart_limit=1, restart_window=60)
    client = Client(cluster)
    try:
        os.kill(next(iter(worker_pids(client).values())), signal.SIGKILL)
        wait_for(lambda: names(client) == ["worker-1"], timeout=15, what="the replacement")
        sleeper = client.submit(time.sleep, 30, pure=False)
        wait_for(lambda: client.processing() and any(client.processing().values()),
                 timeout=15, what="the task to run")
        os.kill(next(iter(worker_pids(client).values())), signal.SIGKILL)  # budget spent
        with pytest.raises(NoWorkersError, match="No worker is alive"):
            sleeper.result(timeout=15)
        with pytest.raises(NoWorkersError, match="no worker is left to run it"):
            client.submit(abs, -1, pure=False).result(timeout=15)
        cluster.scale(1)
        assert client.submit(abs, -2, pure=False).result(timeout=30) == 2
    finally:
        client.close()
        cluster.close()


def test_the_restart_budget_stops_a_crash_loop_and_says_so(caplog):
    cluster = LocalCluster(n_workers=1, restart_limit=2, restart_window=60)
    client = Client(cluster)
    try:
        caplog.set_level(logging.ERROR, logger="scatter_magics.engine.cluster.supervisor")
        for expected in ("worker-1", "worker-2"):
            os.kill(next(iter(worker_pids(client).values())), signal.SIGKILL)
            wait_for(lambda: names(client) == [expected], timeout=15, what=expected)
        os.kill(next(iter(worker_pids(client).values())), signal.SIGKILL)  # the third death
        wait_for(lambda: client.scheduler_info()["supervision"]["message"], timeout=15,
                 what="the supervisor to give up")
        message = client.scheduler_info()["supervision"]["message"]
        assert "worker-2 was killed by SIGKILL and was not replaced" in message
        assert "2 workers died within 60 s (the restart budget)" in message
        assert not client.scheduler_info()["supervision"]["replacing"]
        assert any(message == r.getMessage() for r in caplog.records)
        # The user sees it where they look: %cluster, and the live-worker counts.
        summary = ClusterSummary.snapshot(EmbeddedBackend(client), {})
        assert "Warning: worker-2 was killed by SIGKILL" in repr(summary)
        from scatter_magics.notebook.widget import ClusterWidget
        widget = ClusterWidget(client)
        try:
            wait_for(lambda: widget.totals.get("notice") == message, what="the widget's notice")
            assert "worker-2 was killed by SIGKILL" in widget.to_html()
        finally:
            widget.close()
        assert EmbeddedBackend(client).n_workers() == 0 == cluster._alive()
        # An explicit scale() starts again, with a fresh budget.
        cluster.scale(1)
        assert names(client) == ["worker-3"]
        assert client.scheduler_info()["supervision"]["message"] is None
        assert client.gather(client.scatter("back", hash=False)) == "back"
    finally:
        client.close()
        cluster.close()


def test_counts_are_of_live_workers_even_before_the_scheduler_notices():
    cluster = LocalCluster(n_workers=2, restart_limit=0)  # nobody replaces the dead one
    client = Client(cluster)
    try:
        pid = sorted(worker_pids(client).values())[0]
        os.kill(pid, signal.SIGKILL)
        cluster.processes[next(n for n, p in cluster.processes.items() if p.pid == pid)].wait()
        assert EmbeddedBackend(client).n_workers() == 1  # what %cluster stop reports
        assert "workers=1" in repr(cluster)
    finally:
        client.close()
        cluster.close()


# ------------------------------------------------------------ orphans ---

def test_workers_outlive_the_short_lived_thread_that_created_the_cluster():
    # PR_SET_PDEATHSIG fires when the *thread* that forked a worker ends (prctl(2)):
    # the workers must be forked by a thread that lives as long as the cluster.
    import threading

    made: list = []
    creator = threading.Thread(target=lambda: made.append(Client(n_workers=1)))
    creator.start()
    creator.join()
    client = made[0]
    try:
        pid = next(iter(worker_pids(client).values()))
        assert client.submit(lambda: 1, pure=False).result(timeout=30) == 1
        assert not exited(pid) and client.scheduler_info()["supervision"]["restarts"] == 0
    finally:
        client.close()


OWNER_WITH_A_FORKED_HELPER = textwrap.dedent("""
    import multiprocessing, os, sys, time
    import numpy as np
    from scatter_magics import Client

    def helper():
        time.sleep(600)

    if __name__ == "__main__":
        client = Client(n_workers=2)
        kept = client.scatter(np.ones(1 << 20))  # 8 MiB: a shared-memory segment
        # What a notebook does when it uses multiprocessing: fork (Linux's default
        # before Python 3.14), and the child inherits every descriptor we hold.
        child = multiprocessing.get_context("fork").Process(target=helper, daemon=False)
        child.start()
        pids = [w["pid"] for w in client.scheduler_info()["workers"].values()]
        print(child.pid, client.cluster.shm_pool.prefix, *pids, flush=True)
        time.sleep(600)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /dev/shm: Linux")
def test_workers_end_with_their_owner_even_when_a_forked_child_lives(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(OWNER_WITH_A_FORKED_HELPER)
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    helper_pid = 0
    try:
        helper, prefix, *pids = owner.stdout.readline().split()
        helper_pid, pids = int(helper), [int(p) for p in pids]
        assert len(pids) == 2 and not any(exited(p) for p in pids)
        assert any(name.startswith(prefix) for name in os.listdir("/dev/shm"))
        owner.kill()
        owner.wait()
        wait_for(lambda: all(exited(p) for p in pids), timeout=10,
                 what="the workers to exit after their owner was killed")
        wait_for(lambda: not any(n.startswith(prefix) for n in os.listdir("/dev/shm")),
                 timeout=10, what="the owner's shared memory to be unlinked")
        assert not exited(helper_pid)  # it really was there all along, holding what it inherited
    finally:
        owner.kill()
        owner.stdout.close()
        if helper_pid and not exited(helper_pid):
            os.kill(helper_pid, signal.SIGKILL)


# ------------------------------------------------------------ heartbeats ---

@pytest.mark.parametrize("direct", [False, True])
def test_a_frozen_worker_is_unresponsive_gets_no_data_and_comes_back(make_client, direct):
    client = make_client(n_workers=2)
    batches: list = []
    client.subscribe_events(batches.append)
    (frozen, pid), (other, _) = sorted(worker_pids(client).items())
    os.kill(pid, signal.SIGSTOP)  # a debugger, or a C call that never returns
    try:
        wait_for(lambda: client.scheduler_info()["workers"][frozen]["status"] == "unresponsive",
                 timeout=10, what="the frozen worker to be marked unresponsive")
        assert [e["status"] for e in events_of(batches, "worker-status")] == ["unresponsive"]
        assert "(unresponsive)" in repr(ClusterSummary.snapshot(EmbeddedBackend(client), {}))
        # Plain scatters, with no timeout, go to the responsive worker and do not hang.
        futures = client.scatter(list(range(20)), hash=False, direct=direct)
        assert {a for f in futures for a in client.who_has([f])[f.key]} == {other}
        assert client.gather(futures) == list(range(20))
        [everywhere] = client.scatter(["b"], broadcast=True, hash=False, direct=direct)
        assert client.who_has([everywhere])[everywhere.key] == [other]
        assert client.submit(len, "abc", pure=False).result(timeout=30) == 3
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: client.scheduler_info()["workers"][frozen]["status"] == "running",
             timeout=10, what="the resumed worker to be responsive again")
    assert events_of(batches, "worker-status")[-1]["status"] == "running"
    futures = client.scatter(list(range(20, 40)), hash=False, direct=direct)
    assert {a for f in futures for a in client.who_has([f])[f.key]} == {frozen, other}
    # The broadcast made while it was frozen reaches it now (a standing broadcast).
    wait_for(lambda: set(client.who_has([everywhere])[everywhere.key]) == {frozen, other},
             timeout=10, what="the broadcast to reach the resumed worker")


def test_a_worker_frozen_past_worker_ttl_is_ended_and_what_waited_on_it_gets_an_answer():
    """A gather whose only holder froze is not stuck for ever: after worker_ttl the
    worker is ended and replaced; its task is recomputed, its scattered data in shared
    memory goes to the replacement, and data that went over the socket is lost."""
    cluster = LocalCluster(n_workers=2, worker_ttl=2)
    client = Client(cluster)
    try:
        total = client.submit(lambda: 7 * 6, pure=False)
        assert total.result(timeout=30) == 42
        [frozen] = client.who_has([total])[total.key]
        pid = worker_pids(client)[frozen]
        data = client.scatter(b"over the socket" * 10_000, workers=[frozen])
        array = client.scatter(np.arange(1_000_000), workers=[frozen])  # in shared memory
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(FutureLostError) as lost:
            client.gather(data)  # no timeout: the worker_ttl bounds the wait
        assert data.key in str(lost.value) and frozen in str(lost.value)
        assert "no heartbeat for 2 s" in str(lost.value) and "worker_ttl" in str(lost.value)
        wait_for(lambda: exited(pid), what="the frozen worker's process to end")
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=15,
                 what="a replacement worker")
        assert client.gather(total, timeout=30) == 42  # recomputed elsewhere
        np.testing.assert_array_equal(client.gather(array, timeout=30), np.arange(1_000_000))
    finally:
        client.close()
        cluster.close()


def test_a_task_restricted_to_a_dead_worker_runs_on_its_replacement(make_client):
    client = make_client(n_workers=2)
    (address, pid), _ = sorted(worker_pids(client).items())
    dead_name = client.scheduler_info()["workers"][address]["name"]
    done = client.submit(lambda: 5, workers=[address], pure=False)
    assert done.result(timeout=30) == 5
    os.kill(pid, signal.SIGKILL)
    # Its result is recomputed where it may run: the replacement, not a vanished address.
    assert client.gather(done, timeout=30) == 5
    [holder] = client.who_has([done])[done.key]
    assert client.scheduler_info()["workers"][holder]["replaces"] == dead_name


def test_worker_ttl_must_be_positive_or_none():
    with pytest.raises(ValueError, match="worker_ttl"):
        LocalCluster(n_workers=0, worker_ttl=0)


# ------------------------------------------------------------ death mid-scatter ---

def kill_while_receiving(client, address: str, pid: int, direct: bool, scatter):
    """Run ``scatter()`` while the worker at ``address`` is stopped, SIGKILL it mid-put."""
    import concurrent.futures

    channels = client._workers.channels if direct else client.cluster.scheduler.worker_channels
    client.scatter("warm", workers=[address], direct=direct)  # the connection exists
    os.kill(pid, signal.SIGSTOP)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            pending = pool.submit(scatter)
            wait_for(lambda: channels[address]._replies, what="the put-data to be in flight")
        finally:
            os.kill(pid, signal.SIGKILL)
        return pending.result(timeout=30)


@pytest.mark.parametrize("direct", [False, True])
def test_a_scatter_whose_worker_dies_midway_lands_on_a_survivor(make_client, direct):
    client = make_client(n_workers=2)
    (victim, pid), (survivor, _) = sorted(worker_pids(client).items())
    values = [np.full(1000, i) for i in range(6)]  # round-robin: half go to the victim
    futures = kill_while_receiving(client, victim, pid, direct,
                                   lambda: client.scatter(values, hash=False, direct=direct))
    assert all(f.status == "finished" for f in futures)
    # Through the scheduler a small scatter returns before the workers acknowledge it;
    # what the victim never stored is resent to the survivor, never lost.
    wait_for(lambda: {a for f in futures for a in client.who_has([f])[f.key]} == {survivor},
             timeout=15, what="every key on the survivor alone")
    assert all(f.status == "finished" for f in futures)
    for value, got in zip(values, client.gather(futures)):
        np.testing.assert_array_equal(got, value)


@pytest.mark.parametrize("direct", [False, True])
def test_a_scatter_whose_only_allowed_worker_dies_names_the_key_and_worker(make_client, direct):
    from scatter_magics.errors import WorkerDiedError

    client = make_client(n_workers=2)
    (victim, pid), _ = sorted(worker_pids(client).items())
    with pytest.raises(WorkerDiedError) as info:
        kill_while_receiving(client, victim, pid, direct, lambda: client.scatter(
            {"precious": 1}, workers=[victim], direct=direct))
    message = str(info.value)
    assert "'precious'" in message and victim in message  # the worker's own address
    # The dead worker is replaced; the cluster is usable and nothing half-scattered stays.
    wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=15,
             what="the replacement")
    assert "precious" not in client.who_has()
    assert client.gather(client.scatter({"precious": 2})) == {"precious": 2}


# ------------------------------------------------------------ standing broadcast ---

def holders(client, future) -> set[str]:
    """Names of the workers holding ``future`` (an address while it is not known yet)."""
    where = client.who_has([future])[future.key]
    workers = client.scheduler_info()["workers"]
    return {workers[a]["name"] if a in workers else a for a in where}


@pytest.mark.parametrize("direct", [False, True])
def test_a_broadcast_stays_on_every_worker_replacements_and_new_ones(make_client, direct):
    client = make_client(n_workers=2)
    array = np.arange(1 << 18)  # 2 MiB: in shared memory
    everywhere = client.scatter(array, broadcast=True, direct=direct)
    assert holders(client, everywhere) == {"worker-0", "worker-1"}
    os.kill(worker_pids(client)[client.who_has([everywhere])[everywhere.key][0]], signal.SIGKILL)
    wait_for(lambda: len(holders(client, everywhere)) == 2 and "worker-2" in holders(
        client, everywhere), timeout=15, what="the replacement to receive the broadcast")
    client.cluster.scale(3)
    wait_for(lambda: holders(client, everywhere) == set(names(client)) and len(names(client)) == 3,
             timeout=15, what="the new worker to receive the broadcast")
    def holds_locally(key: str) -> bool:
        from scatter_magics.engine.worker import process as worker
        return key in worker.CURRENT.data

    for name in names(client):  # really there, not fetched on demand
        assert client.submit(holds_locally, everywhere.key, workers=[name],
                             pure=False).result(timeout=30)
    np.testing.assert_array_equal(client.gather(everywhere), array)


def test_a_restricted_broadcast_goes_to_the_allowed_workers_and_their_replacements(make_client):
    client = make_client(n_workers=3)
    some = client.scatter("for 0 and 1", broadcast=True, workers=["worker-0", "worker-1"],
                          hash=False)
    assert holders(client, some) == {"worker-0", "worker-1"}
    client.cluster.scale(4)  # worker-3 is not allowed
    os.kill(worker_pids(client)[next(a for a, w in client.scheduler_info()["workers"].items()
                                     if w["name"] == "worker-0")], signal.SIGKILL)
    wait_for(lambda: holders(client, some) == {"worker-1", "worker-4"}, timeout=15,
             what="worker-0's replacement to receive the broadcast")
    assert len(names(client)) == 4 and "worker-3" not in holders(client, some)


# ------------------------------------------------------------ recompute ---

def test_a_result_whose_holder_died_is_recomputed_from_its_inputs(make_client):
    from scatter_magics.errors import FutureLostError

    client = make_client(n_workers=2)
    x = client.scatter(np.arange(10), broadcast=True)  # the input survives any one death
    y = client.submit(lambda a: a * 2, x, pure=False)
    z = client.submit(lambda b: int(b.sum()), y, pure=False)  # runs where y is
    assert z.result(timeout=30) == 90
    # Neither small (the client sends those again) nor in shared memory (those survive).
    scattered = client.scatter(b"only here" * 10_000, workers=client.who_has([y])[y.key],
                               hash=False)
    gone_input = client.scatter(np.ones(3), workers=client.who_has([y])[y.key], hash=False)
    w = client.submit(lambda v: v + 1, gone_input, pure=False)
    w.result(timeout=30)
    del gone_input  # released once w no longer needs it: w cannot be recomputed
    wait_for(lambda: len(client.who_has()) == 5, what="the input of w to be released")
    [holder] = client.who_has([y])[y.key]
    holder_name = client.scheduler_info()["workers"][holder]["name"]
    assert client.who_has([w])[w.key] == [holder]
    os.kill(worker_pids(client)[holder], signal.SIGKILL)

    np.testing.assert_array_equal(y.result(timeout=30), np.arange(10) * 2)
    assert z.result(timeout=30) == 90 and z.status == "finished"
    assert holder not in client.who_has([y, z])[y.key] + client.who_has([y, z])[z.key]
    wait_for(lambda: scattered.status == "lost" and w.status == "lost", what="the lost keys")
    lost = str(scattered.exception())
    assert scattered.key in lost and holder_name in lost and holder in lost
    assert "was killed by SIGKILL" in lost and "scatter it again" in lost
    assert "cannot be recomputed" in str(w.exception())
    with pytest.raises(FutureLostError, match=scattered.key):
        client.gather(scattered)


def test_a_task_that_kills_its_workers_fails_after_three_retries(make_client):
    from scatter_magics.errors import KilledWorkerError

    client = make_client(n_workers=2)

    def out_of_memory():
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would, every time

    with pytest.raises(KilledWorkerError, match="was running on 4 workers that died"):
        client.submit(out_of_memory, pure=False).result(timeout=45)
    wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=15,
             what="the replacements")
    assert client.submit(lambda: "fine", pure=False).result(timeout=30) == "fine"


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm")
@pytest.mark.parametrize("how", ["sigterm", "dropped-connection"])
def test_one_worker_ending_leaves_the_shared_memory_to_the_others(make_client, how):
    client = make_client(n_workers=2)
    array = np.arange(1 << 18)  # in shared memory
    everywhere = client.scatter(array, broadcast=True)
    prefix = client.cluster.shm_pool.prefix
    segments = {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}
    assert segments
    address, pid = sorted(worker_pids(client).items())[0]
    if how == "sigterm":
        os.kill(pid, signal.SIGTERM)  # `kill <pid>`
    else:  # the scheduler drops it (as it does a peer sending garbage): it exits
        scheduler = client.cluster.scheduler
        client.loop.call_soon(lambda: scheduler.worker_channels[address].close())
    wait_for(lambda: "worker-2" in holders(client, everywhere), timeout=15,
             what="the replacement to map the broadcast's segment")
    assert segments <= set(os.listdir("/dev/shm"))
    np.testing.assert_array_equal(client.gather(everywhere), array)


@pytest.mark.parametrize("direct", [False, True])
def test_a_scatter_caught_by_a_worker_freezing_goes_elsewhere(make_client, direct):
    import concurrent.futures

    client = make_client(n_workers=2)
    (frozen, pid), (other, _) = sorted(worker_pids(client).items())
    client.scatter(["warm", "up"], hash=False, direct=direct)  # connections to both exist
    os.kill(pid, signal.SIGSTOP)  # before anyone knows: half of this scatter goes there
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.scatter, list(range(10)), hash=False, direct=direct)
            futures = pending.result(timeout=30)  # no timeout= given, and no hang
        # (through the scheduler: resent once the frozen worker is found unresponsive)
        wait_for(lambda: {a for f in futures for a in client.who_has([f])[f.key]} == {other},
                 timeout=15, what="every key on the responsive worker")
        assert client.gather(futures) == list(range(10))
    finally:
        os.kill(pid, signal.SIGCONT)

    def count_stored_keys():
        from scatter_magics.engine.worker import process as worker
        return len(worker.CURRENT.data)

    def holds_only_recorded_keys():  # what reached it while frozen was taken back
        recorded = len(client.has_what()[frozen])
        task = client.submit(count_stored_keys, workers=[frozen], pure=False)
        return task.result(timeout=30) == recorded  # (its own result is not stored yet)

    wait_for(lambda: client.scheduler_info()["workers"][frozen]["status"] == "running",
             timeout=10, what="the worker to answer again")
    wait_for(holds_only_recorded_keys, timeout=10, what="the abandoned copies to be deleted")
