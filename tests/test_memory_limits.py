"""``memory_limit`` is enforced: data goes where there is room, or is refused before it moves."""

from __future__ import annotations

import numpy as np
import pytest

from scatter_magics.engine.shm import limits
from scatter_magics.errors import MemoryLimitError

pytestmark = pytest.mark.timeout(60)

MiB = 2**20


def array(mb: float, seed: int) -> np.ndarray:
    return np.full(int(mb * MiB) // 8, float(seed))


def names_by_address(client) -> dict[str, str]:
    return {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}


@pytest.fixture
def limited(make_client):
    """Two workers with a 40 MiB limit each."""
    return make_client(n_workers=2, memory_limit="40MiB")


def test_scatters_go_to_the_worker_with_room(limited):
    client = limited
    w0, w1 = sorted(names_by_address(client))
    full = [client.scatter(array(15, seed), workers=[w0]) for seed in (1, 2)]  # w0: 30 of 40
    more = [client.scatter(array(15, seed)) for seed in (3, 4)]
    assert {a for f in more for a in client.who_has(f)[f.key]} == {w1}
    assert client.gather(more[1])[0] == 4.0
    del full


def test_a_scatter_with_no_room_anywhere_is_refused_before_anything_moves(limited):
    client = limited
    kept = [client.scatter(array(15, seed)) for seed in range(4)]  # 30 MiB on each worker
    before = client.has_what()
    with pytest.raises(MemoryLimitError) as info:
        client.scatter({"too-big": array(15, 9)})
    message = str(info.value)
    assert "'too-big'" in message and "15 MiB" in message and "memory_limit 40 MiB" in message
    assert all(name in message for name in names_by_address(client).values())
    assert client.has_what() == before
    assert client.cluster.shm_pool.stats()["keys"] == len(kept)  # its segment was given back
    assert client.gather(client.scatter(array(5, 5)))[0] == 5.0  # still usable
    del kept


def test_three_150MB_scatters_never_put_300MB_on_a_200MB_worker(make_client):
    """The issue's reproduction, scaled down ten times."""
    client = make_client(n_workers=2, memory_limit="20MiB")
    first, second = client.scatter(array(15, 1)), client.scatter(array(15, 2))
    with pytest.raises(MemoryLimitError):
        client.scatter(array(15, 3))
    info = client.scheduler_info()["workers"]
    assert all(w["nbytes"] <= w["memory_limit"] for w in info.values())
    del first, second


def test_a_broadcast_is_refused_when_one_worker_lacks_room(limited):
    client = limited
    w0, _ = sorted(names_by_address(client))
    kept = client.scatter(array(30, 1), workers=[w0])
    with pytest.raises(MemoryLimitError, match=names_by_address(client)[w0]):
        client.scatter(array(15, 2), broadcast=True)
    assert len([k for keys in client.has_what().values() for k in keys]) == 1
    del kept


def test_a_task_result_over_the_limit_fails_that_task(make_client):
    client = make_client(n_workers=1, memory_limit="20MiB")
    future = client.submit(np.ones, 3_000_000)  # 22.9 MiB
    with pytest.raises(MemoryLimitError, match="memory_limit") as info:
        future.result(timeout=30)
    assert future.key in str(info.value) and "worker-0" in str(info.value)
    assert client.submit(np.ones, 1000).result(timeout=30).sum() == 1000  # still usable


def test_scattering_more_than_the_machine_has_free_is_refused(make_client, monkeypatch):
    client = make_client(n_workers=1)
    monkeypatch.setattr(limits, "available_memory", lambda: 10 * MiB)
    with pytest.raises(MemoryLimitError, match=r"'big'.*15 MiB.*10 MiB of memory free"):
        client.scatter({"big": array(15, 1)})
    assert not any(client.has_what().values())
    assert client.cluster.shm_pool.stats()["keys"] == 0
    monkeypatch.undo()
    assert client.gather(client.scatter({"big": array(15, 1)}))["big"][0] == 1.0


def test_concurrent_scatters_never_overfill_a_worker(limited):
    """Eight threads at once: room is reserved while a scatter is in flight."""
    import threading

    client = limited
    kept, refused = [], []

    def scatter(seed):
        try:
            kept.append(client.scatter(array(15, seed)))
        except MemoryLimitError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=scatter, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(kept) == 4 and len(refused) == 4  # two 15 MiB arrays fit under each 40 MiB limit
    info = client.scheduler_info()["workers"]
    assert all(w["nbytes"] <= w["memory_limit"] for w in info.values())


# ---------------------------------------------------------------- the state alone ---

def limited_state():
    from scatter_magics.engine.scheduler.state import SchedulerState

    state = SchedulerState()
    state.add_worker("tcp://a:1", "worker-0", nthreads=1, memory_limit=100)
    state.add_worker("tcp://b:2", "worker-1", nthreads=1, memory_limit=100)
    return state


def test_placement_skips_a_full_worker_and_counts_reservations():
    state = limited_state()
    state.add_data("c", {"x": ["tcp://a:1"]}, {"x": 80}, {})
    assert state.place({"y": 50})["y"] == ["tcp://b:2"]  # worker-0 is next, but full
    state.reserve({"y": ["tcp://b:2"]}, {"y": 60})
    with pytest.raises(MemoryLimitError, match=r"'w' \(50 B\).*worker-0.*80 B.*worker-1.*60 B"):
        state.place({"w": 50})
    state.reserve({"y": ["tcp://b:2"]}, {"y": 60}, -1)
    assert state.place({"w": 50}) == {"w": ["tcp://b:2"]}


def test_a_key_a_worker_holds_costs_it_nothing():
    state = limited_state()
    state.add_data("c", {"x": ["tcp://a:1"]}, {"x": 90}, {})
    assert state.place({"x": 90}, workers=["tcp://a:1"]) == {"x": ["tcp://a:1"]}
    assert state.place({"x": 90}, broadcast=True) == {"x": ["tcp://a:1", "tcp://b:2"]}


def test_no_limit_means_no_refusal():
    from scatter_magics.engine.scheduler.state import SchedulerState

    state = SchedulerState()
    state.add_worker("tcp://a:1", "worker-0", nthreads=1, memory_limit=0)
    assert state.place({"huge": 10**15}) == {"huge": ["tcp://a:1"]}


def test_a_value_larger_than_free_memory_is_refused_before_it_is_hashed(make_client, monkeypatch):
    from scatter_magics import tokenize as tokenize_module

    client = make_client(n_workers=1)
    monkeypatch.setattr(limits, "available_memory", lambda: 10 * MiB)
    hashed = []
    monkeypatch.setattr(tokenize_module, "_update_buffer",
                        lambda h, view: hashed.append(view.nbytes))
    with pytest.raises(MemoryLimitError, match=r"ndarray \(15 MiB\).*10 MiB of memory free"):
        client.scatter(array(15, 1))
    assert hashed == []
    assert client.cluster.shm_pool.stats()["keys"] == 0


def test_concurrent_direct_scatters_cannot_both_take_the_same_room(make_client):
    """A direct scatter holds its room from choosing its worker until it is recorded."""
    import concurrent.futures
    import os
    import signal

    from tests.conftest import wait_for, worker_pids

    client = make_client(n_workers=1, memory_limit="20MiB")
    [(address, pid)] = worker_pids(client).items()
    worker = client.cluster.scheduler.state.workers[address]
    os.kill(pid, signal.SIGSTOP)  # the first scatter stays in flight, its room held
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.scatter, array(15, 1), direct=True)
            wait_for(lambda: worker.reserved > 0, what="the first scatter to hold its room")
            with pytest.raises(MemoryLimitError, match="memory_limit 20 MiB"):
                client.scatter(array(15, 2), direct=True)
            os.kill(pid, signal.SIGCONT)
            future = first.result(timeout=30)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert client.gather(future)[0] == 1.0
    assert worker.reserved == 0 and worker.nbytes <= 20 * MiB
