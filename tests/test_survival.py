"""Data that survives a worker's death, and a worker too busy to answer (issue 20).

On the embedded engine: the bytes of a large value are in the pool's shared memory,
which outlives the workers that map it; a small value's pickle is kept by the client
that scattered it; the magics can read a variable again. So SIGKILLing the only holder
loses none of these: another worker (a survivor, or the replacement) takes the key over
and its future stays ``finished`` throughout. A worker whose task holds the GIL for
longer than the heartbeat allows is busy, not dead: what was sent to it waits for it.
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from scatter_magics.errors import FutureLostError
from tests.conftest import wait_for, worker_pids
from tests.test_magics import ip, run  # noqa: F401 (ip: fixture)

pytestmark = pytest.mark.timeout(90)


class KeyStatuses:
    """Every status the scheduler's events gave each key, and its latest holders."""

    def __init__(self, client):
        self.seen: dict = {}
        self.workers: dict = {}
        self._lock = threading.Lock()
        self.subscription = client.subscribe_events(self._on_events)

    def _on_events(self, batch: list) -> None:
        with self._lock:
            for event in batch:
                if event.get("event") == "key":
                    self.seen.setdefault(event["key"], []).append(event["status"])
                    self.workers[event["key"]] = event["workers"]

    def statuses(self, key) -> set:
        with self._lock:
            return set(self.seen.get(key, ()))


def kill(client, address: str) -> None:
    os.kill(worker_pids(client)[address], signal.SIGKILL)


def holders(client, future) -> list[str]:
    return client.who_has([future])[future.key]


def assert_gather_says_b_is_lost(ip, change: str) -> None:
    """``%gather b`` fails in one line naming the variable ``b`` and what to do, after
    ``b`` was ``"changed"`` or ``"deleted"`` and its only worker died."""
    with pytest.raises(FutureLostError) as lost:
        run(ip, "%gather b")
    said = ("changed after it was scattered and its only worker died: %scatter b again"
            if change == "changed" else "was deleted after it was scattered and its only "
            "worker died: assign it and %scatter b again")
    assert lost.value._render_traceback_() == [f"%gather b: b {said}"]  # one line, no traceback


def taken_over(client, future, dead: str) -> list[str]:
    return wait_for(lambda: (h := holders(client, future)) and dead not in h and h,
                    timeout=15, what=f"another worker to take {future.key} over")


# ------------------------------------------------------------ shared memory ---

@pytest.mark.parametrize("n_workers", [1, 2])
def test_a_value_in_shared_memory_outlives_its_only_holder(make_client, n_workers):
    """100 MB through shared memory: SIGKILL the one worker holding it, and a survivor
    (or, alone, the replacement) maps the same segment; the future never turns lost."""
    client = make_client(n_workers=n_workers)
    events = KeyStatuses(client)
    array = np.arange(12_500_000, dtype=np.float64)
    future = client.scatter(array)
    assert client.scheduler_info()["shared_memory"]["keys"] == 1  # it went through a segment
    [holder] = holders(client, future)
    kill(client, holder)
    new = taken_over(client, future, holder)
    np.testing.assert_array_equal(client.gather(future), array)
    assert future.status == "finished"
    assert "lost" not in events.statuses(future.key)
    wait_for(lambda: events.workers.get(future.key) == new, what="the event with the new holder")
    assert client.submit(np.sum, future).result() == array.sum()  # a task reads it there
    events.subscription.close()


# ------------------------------------------------------------ the client's copy ---

def test_small_values_are_sent_again_from_the_clients_copy(make_client):
    client = make_client(n_workers=2)
    events = KeyStatuses(client)
    futures = client.scatter(list(range(10)))
    by_holder = {}
    for f in futures:
        by_holder.setdefault(holders(client, f)[0], []).append(f)
    victim, theirs = next(iter(by_holder.items()))
    kill(client, victim)
    for f in theirs:
        taken_over(client, f, victim)
    assert client.gather(futures) == list(range(10))
    assert client.submit(sum, futures).result() == 45  # on the workers too, not only here
    assert all(f.status == "finished" for f in futures)
    assert not any("lost" in events.statuses(f.key) for f in futures)
    events.subscription.close()


def test_a_large_value_sent_over_the_socket_is_still_lost_with_its_holder(make_client):
    """Neither in shared memory nor small, from a plain Client (no source): lost, as before."""
    client = make_client(n_workers=2)
    # ~0.5 MB of pickle, no buffers; a timeout waits for the worker's acknowledgement
    # (before it, the scheduler still has the value and sends it elsewhere).
    [future] = client.scatter([list(range(100_000))], timeout=30)
    [holder] = holders(client, future)
    kill(client, holder)
    wait_for(lambda: future.status == "lost", what="the future to be lost")
    with pytest.raises(FutureLostError, match="scatter it again"):
        client.gather(future)


# ------------------------------------------------------------ the magics ---

@pytest.fixture
def magics_cluster(ip, make_client):
    client = make_client(n_workers=2)
    ip.user_ns["client"] = client
    return ip, client


def test_the_magics_send_an_unchanged_variable_again(magics_cluster):
    ip, client = magics_cluster
    ip.user_ns["a"] = list(range(100_000))  # socket-path data: no copy is kept anywhere
    future = run(ip, "%scatter a --timeout 30")  # stored: the scheduler keeps no copy
    [holder] = holders(client, future)
    kill(client, holder)
    taken_over(client, future, holder)  # before anyone gathers it
    assert future.status == "finished"
    assert run(ip, "%gather a") == list(range(100_000))


def test_the_magics_send_a_piece_of_a_split_variable_again(magics_cluster):
    """``--split 2`` cut the list in two pieces; the one whose worker died is cut again
    from the unchanged variable, under the same key, and the whole joins as before."""
    ip, client = magics_cluster
    ip.user_ns["c"] = list(range(200_000))  # pieces of ~0.5 MB: the socket, no copy kept
    pieces = run(ip, "%scatter c --split 2 --timeout 30")
    [holder] = holders(client, pieces[0])
    on_it = [piece for piece in pieces if holder in holders(client, piece)]
    kill(client, holder)
    for piece in on_it:
        taken_over(client, piece, holder)
    assert all(piece.status == "finished" for piece in pieces)
    assert run(ip, "%gather c") == list(range(200_000))


@pytest.mark.parametrize("change", ["changed", "deleted"])
def test_the_magics_lose_a_changed_or_deleted_variable_naming_it(magics_cluster, change):
    ip, client = magics_cluster
    ip.user_ns["b"] = list(range(100_000))
    future = run(ip, "%scatter b --timeout 30")  # stored: the scheduler keeps no copy
    if change == "changed":
        ip.user_ns["b"].append(-1)  # in place: the same object, other content
    else:
        del ip.user_ns["b"]
    [holder] = holders(client, future)
    kill(client, holder)
    wait_for(lambda: future.status == "lost", what="b's future to be lost")
    assert_gather_says_b_is_lost(ip, change)


# ------------------------------------------------------------ busy is not dead ---

def test_a_worker_whose_task_holds_the_gil_is_busy_and_loses_nothing(make_client):
    """One worker, a task holding the GIL twice as long as the heartbeat allows, and
    meanwhile a scatter of small values: the worker is busy (not unresponsive), the
    values wait for it, nothing is lost."""
    def hold_the_gil(seconds: float) -> int:  # (made here: cloudpickle sends it by value)
        """Hold the GIL for at least about ``seconds``: one C call (``sum`` of a range),
        sized by the fastest of a few short runs (a slow one would make it short)."""
        import time

        n, fastest = 10**7, float("inf")
        for _ in range(3):
            start = time.perf_counter()
            sum(range(n))
            fastest = min(fastest, time.perf_counter() - start)
        return sum(range(int(seconds * n / fastest)))

    client = make_client(n_workers=1)
    [address] = worker_pids(client)
    events = KeyStatuses(client)
    task = client.submit(hold_the_gil, 6.0)
    wait_for(lambda: client.scheduler_info()["workers"][address]["status"] == "busy",
             timeout=15, what="the worker to be seen busy")
    futures = client.scatter(list(range(10)))
    assert client.gather(futures) == list(range(10))
    assert task.result(timeout=60) > 0
    assert client.submit(sum, futures).result(timeout=30) == 45
    assert all(f.status == "finished" for f in futures)
    assert not any("lost" in events.statuses(f.key) for f in futures)
    assert client.scheduler_info()["workers"][address]["status"] == "running"
    events.subscription.close()
