"""LoopThread.sync: the one door from the notebook's thread into the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from scatter_magics.engine.wire.loop import LoopThread

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def loop_thread():
    thread = LoopThread("test-loop")
    yield thread
    thread.stop()


def test_sync_returns_the_value_and_raises_the_coroutines_own_error(loop_thread):
    async def value():
        await asyncio.sleep(0)
        return 42

    async def fails():
        raise KeyError("inside the loop")

    assert loop_thread.sync(value()) == 42
    with pytest.raises(KeyError, match="inside the loop"):
        loop_thread.sync(fails())


def test_a_timeout_cancels_the_coroutine_on_the_loop(loop_thread):
    cancelled = threading.Event()

    async def forever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError, match="within 0.05 s"):
        loop_thread.sync(forever(), timeout=0.05)
    assert cancelled.wait(10), "the coroutine kept running after sync() gave up"


def test_sync_from_the_loop_thread_is_refused(loop_thread):
    async def nested():
        inner = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="deadlock"):
            loop_thread.sync(inner)
        return "refused"

    assert loop_thread.sync(nested()) == "refused"


def test_call_later_runs_on_the_loop_after_the_delay_from_any_thread(loop_thread):
    ran = threading.Event()
    where = []

    def callback(value):
        where.append((threading.current_thread().name, value))
        ran.set()

    loop_thread.call_later(0.01, callback, "from outside")
    assert ran.wait(10) and where == [("test-loop", "from outside")]
    ran.clear()
    loop_thread.call_soon(loop_thread.call_later, 0, callback, "from inside")
    assert ran.wait(10) and where[-1] == ("test-loop", "from inside")


def test_call_later_on_a_stopped_loop_does_nothing():
    thread = LoopThread("stopped-loop")
    thread.stop()
    thread.call_later(0, pytest.fail, "ran on a stopped loop")  # no error either


def test_call_runs_a_plain_function_on_the_loop_and_returns_its_result(loop_thread):
    assert loop_thread.call(threading.current_thread) is loop_thread._thread
    with pytest.raises(KeyError, match="inside"):
        loop_thread.call(lambda: {}["inside"])

    async def from_the_loop_thread():  # runs at once there: no hand-over, no deadlock
        return loop_thread.call(lambda x: x + 1, 41)

    assert loop_thread.sync(from_the_loop_thread()) == 42
