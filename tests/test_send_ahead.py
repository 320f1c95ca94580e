"""Small scatters that return before the loop thread sends them (engine/client/send_ahead.py),
and the collector held back during bulk calls (engine/client/gc_pause.py)."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from scatter_magics.engine.client.future import FutureState
from scatter_magics.engine.client.gc_pause import BULK, paused_collection
from scatter_magics.engine.client.send_ahead import MAX_AHEAD, SendAhead
from scatter_magics.errors import FutureLostError
from tests.conftest import wait_for


def hold_scatters_at_a_gate(client, monkeypatch) -> threading.Event:
    """Scatters of ``client`` wait on the loop until the returned event is set, as a
    scatter waiting for a worker would."""
    gate = threading.Event()
    transfer = client._scattering.transfer

    async def held_at_the_gate(*args):
        await asyncio.to_thread(gate.wait, 10)
        await transfer(*args)

    monkeypatch.setattr(client._scattering, "transfer", held_at_the_gate)
    return gate


def test_a_tight_loop_of_small_scatters_stores_every_value(client):
    futures = [client.scatter(i, hash=False) for i in range(500)]
    assert all(f.status == "finished" for f in futures)
    assert len(client._ahead._queued) <= MAX_AHEAD  # the loop kept up: a bounded queue
    # Requests made after the scatters reach the scheduler after them: every key is placed.
    held = client.who_has(futures)
    assert all(held[f.key] for f in futures)
    assert client.submit(sum, futures).result(timeout=30) == sum(range(500))
    assert client.gather(futures) == list(range(500))


def test_a_value_released_right_after_its_scatter_is_freed(client):
    key = client.scatter("dropped at once", hash=False).key  # the Future is gone already
    scheduler = client.cluster.scheduler
    wait_for(lambda: key not in scheduler.state.keys, timeout=10, what="the key to be released")
    assert not any(key in worker.keys for worker in scheduler.state.workers.values())


def test_a_release_does_not_overtake_its_scatter_still_on_the_way(make_client, monkeypatch):
    client = make_client(n_workers=1)
    gate = hold_scatters_at_a_gate(client, monkeypatch)
    flushed = threading.Event()
    flush = client.refs.flush

    def flush_and_tell():
        flush()
        flushed.set()

    monkeypatch.setattr(client.refs, "flush", flush_and_tell)
    key = client.scatter("on its way", hash=False).key  # sent ahead, then dropped
    try:
        assert flushed.wait(10)  # the release came due while the scatter was held
        assert key in client.refs._dropped  # so it was held back, not sent
    finally:
        gate.set()
    scheduler = client.cluster.scheduler
    wait_for(lambda: key not in scheduler.state.keys, timeout=10, what="the key to be released")


def test_a_submit_does_not_overtake_its_input_still_on_the_way(make_client, monkeypatch):
    client = make_client(n_workers=1)
    gate = hold_scatters_at_a_gate(client, monkeypatch)
    future = client.scatter("on its way", hash=False)
    threading.Timer(0.2, gate.set).start()  # the worker "comes back" while submit waits
    total = client.submit(len, future)  # reaches the scheduler after the scatter
    assert total.result(timeout=30) == len("on its way")


def test_a_release_of_an_input_does_not_overtake_the_submit_reading_it(make_client,
                                                                       monkeypatch):
    # `client.submit(sum, client.scatter([1, 2]))`: the scattered futures are dropped as
    # soon as submit returns, while the submit itself may still wait on the loop.
    client = make_client(n_workers=1)
    gate, flushed = threading.Event(), threading.Event()
    request, flush = client._ahead.link.request, client.refs.flush

    async def submit_held_at_the_gate(msg):
        if msg["op"] == "submit":
            await asyncio.to_thread(gate.wait, 10)
        return await request(msg)

    def flush_and_tell():
        flush()
        flushed.set()

    monkeypatch.setattr(client._ahead.link, "request", submit_held_at_the_gate)
    monkeypatch.setattr(client.refs, "flush", flush_and_tell)
    total = client.submit(sum, client.scatter([1, 2], hash=False))
    try:
        assert flushed.wait(10)  # the release came due while the submit was held
    finally:
        gate.set()
    assert total.result(timeout=30) == 3


def test_scattering_the_same_small_value_twice_keeps_one_key(client):
    first = client.scatter("same content")
    second = client.scatter("same content")
    assert first.key == second.key
    del first
    assert second.result(timeout=10) == "same content"
    assert client.submit(len, second).result(timeout=30) == len("same content")


def test_a_scatter_that_fails_on_the_loop_marks_its_future_lost():
    state = FutureState("k")
    state.finish("int", b"pickle")
    ahead = SendAhead(loop_thread=None, link=None)
    ahead._count(["k"], +1)  # as send() leaves it
    ahead._queued.append(None)

    async def refused():
        raise RuntimeError("no worker would take it")

    asyncio.run(ahead._send(refused, ["k"], [state]))
    assert state.status == "lost"
    with pytest.raises(FutureLostError, match="never stored") as info:
        state.raise_if_failed()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not ahead.in_flight("k") and not ahead._queued  # its release may go now


def test_paused_collection_restores_the_collector_after_nested_and_threaded_use():
    assert gc.isenabled()
    inside = threading.Event()
    release = threading.Event()

    def other_thread():
        with paused_collection(BULK):
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_thread)
    with paused_collection(BULK):
        assert not gc.isenabled()
        thread.start()
        inside.wait(10)
    assert not gc.isenabled()  # the other thread is still building
    release.set()
    thread.join(10)
    assert gc.isenabled()
    with paused_collection(BULK - 1):  # a small call leaves the collector alone
        assert gc.isenabled()


def test_paused_collection_keeps_a_callers_disabled_collector_disabled():
    gc.disable()
    try:
        with paused_collection(BULK):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_long_list_scatter_and_gather_leave_the_collector_enabled(client):
    values = list(range(2 * BULK))
    assert client.gather(client.scatter(values)) == values
    assert gc.isenabled()


# ------------------------------------------------------------ submits sent ahead ---

def test_submit_and_map_return_without_waiting_for_the_loop(make_client):
    client = make_client(n_workers=2)
    gate = threading.Event()
    client.loop.call_soon(gate.wait, 10)  # the loop thread is busy until the gate opens
    try:
        one = client.submit(abs, -5, pure=False)
        many = client.map(abs, [-1, -2, -3], pure=False)
        returned_while_the_loop_was_busy = not gate.is_set()
    finally:
        gate.set()
    assert returned_while_the_loop_was_busy
    assert one.result(timeout=30) == 5 and client.gather(many) == [1, 2, 3]


def test_a_submit_after_a_small_scatter_goes_after_it_though_submits_queue_before(
        make_client):
    # submit, scatter, submit, all queued while the loop is busy: the second submit
    # reads the scattered key, so it must not leave with the first one, ahead of it.
    client = make_client(n_workers=2)
    gate = threading.Event()
    client.loop.call_soon(gate.wait, 10)
    try:
        x = client.submit(abs, -10, pure=False)
        y = client.scatter(600)
        total = client.submit(sum, [x, y], pure=False)
        totals = client.map(lambda a, b: a + b, [x] * 3, [y] * 3)
    finally:
        gate.set()
    assert total.result(timeout=30) == 610 and client.gather(totals) == [610] * 3


def test_requests_after_submits_sent_ahead_reach_the_scheduler_after_them(make_client,
                                                                           tmp_path):
    client = make_client(n_workers=2)
    gate = tmp_path / "open"

    def wait_for_the_gate(path):  # made here: pickled by value
        import os
        import time
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return True

    futures = [client.submit(wait_for_the_gate, str(gate), pure=False) for _ in range(300)]
    try:
        assert set(client.who_has(futures)) == {f.key for f in futures}  # all known
        last = futures[-1]
        client.cancel([last])  # a cancel right behind its submit finds the task to cancel
        wait_for(lambda: last.status == "cancelled", timeout=10, what="the cancel")
    finally:
        gate.touch()
    assert client.gather(futures[:-1]) == [True] * 299
    # A task dropped right after its submit is released once the scheduler has it.
    key = client.submit(abs, -7, pure=False).key
    scheduler = client.cluster.scheduler
    wait_for(lambda: key not in scheduler.state.keys, timeout=10, what="the key to be released")


def test_submits_the_scheduler_cannot_take_turn_into_errors_with_the_reason(make_client):
    client = make_client(n_workers=1)
    client._link.close()  # the scheduler is gone for this client (a dropped connection)
    future = client.submit(abs, -1, pure=False)
    with pytest.raises(Exception, match="link to the scheduler is closed"):
        future.result(timeout=10)
    assert future.status == "error"
    assert "the scheduler refused the task" in future._state.traceback
