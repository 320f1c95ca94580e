"""A worker's own data handling, driven directly on an event loop (no processes)."""

from __future__ import annotations

import asyncio

import pytest

from scatter_magics.engine.wire.serialize import serialize, wire
from scatter_magics.engine.worker import process as worker_module


@pytest.fixture
def worker():
    w = worker_module.Worker("tcp://127.0.0.1:1", "secret", "w", nthreads=1, memory_limit=0)
    yield w  # (never started: no task threads, nothing to end)
    w.uploads.close()


def test_get_data_waits_for_a_key_still_on_its_way(worker):
    # The scheduler tells others where small data is before the worker acknowledges
    # it; a request on another connection may come first.
    async def main():
        asking = worker._get_data(None, {"keys": ["k"]})
        assert asyncio.iscoroutine(asking)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, worker._put_data, None, {"data": {"k": wire(serialize(7))}})
        return await asyncio.wait_for(asking, 5)

    reply = asyncio.run(main())
    assert list(reply) == ["k"]


def test_get_data_of_a_key_that_never_comes_is_a_key_error(worker, monkeypatch):
    monkeypatch.setattr(worker_module, "ARRIVAL_WAIT", 0.1)

    async def main():
        worker._put_data(None, {"data": {"other": wire(serialize(1))}})
        return await worker._get_data(None, {"keys": ["other", "never"]})

    with pytest.raises(KeyError, match="never"):
        asyncio.run(main())


def test_get_data_of_held_keys_answers_at_once(worker):
    worker._put_data(None, {"data": {"k": wire(serialize("v"))}})
    assert list(worker._get_data(None, {"keys": ["k"]})) == ["k"]


# ---------------------------------------------------------------- the task threads (issue 19) ---

from scatter_magics.engine.worker.runner import TaskRunner  # noqa: E402


def run_jobs(nthreads: int, schedule, resources=None) -> list:
    """Run ``schedule(runner, log, done)`` on a loop; the ``(key, ok, value)`` reports."""
    async def main():
        reports, all_done = [], asyncio.Event()
        expected = []

        def on_done(key, ok, value, ran):
            reports.append((key, ok, value))
            if len(reports) == len(expected):
                all_done.set()
        runner = TaskRunner(nthreads, on_done, resources)
        try:
            expected.extend(await schedule(runner))
            await asyncio.wait_for(all_done.wait(), 10)
        finally:
            runner.close()
        return reports
    return asyncio.run(main())


def test_queued_tasks_run_by_priority():
    import threading

    gate, order = threading.Event(), []

    async def schedule(runner):
        runner.run("blocker", lambda: gate.wait(10))
        for key, priority in [("low-0", (0, 1, 1)), ("low-1", (0, 1, 2)), ("high", (-1, 1, 3))]:
            runner.run(key, lambda key=key: order.append(key), priority)
        gate.set()
        return ["blocker", "low-0", "low-1", "high"]

    run_jobs(1, schedule)
    assert order == ["high", "low-0", "low-1"]


def test_a_task_runs_only_with_its_resources_free():
    import threading

    holding, gate, plain_ran, seen = (threading.Event(), threading.Event(), threading.Event(),
                                      {})

    def gpu_first():
        holding.set()
        gate.wait(10)

    async def schedule(runner):
        runner.run("gpu-1", gpu_first, resources={"GPU": 1})
        await asyncio.to_thread(holding.wait, 10)
        runner.run("gpu-2", lambda: seen.setdefault("gpu-2", gate.is_set()), resources={"GPU": 1})
        # The other thread is free: a task without resources runs meanwhile.
        runner.run("plain", lambda: (seen.setdefault("plain", gate.is_set()), plain_ran.set()))
        await asyncio.to_thread(plain_ran.wait, 10)
        gate.set()
        return ["gpu-1", "gpu-2", "plain"]

    run_jobs(2, schedule, {"GPU": 1})
    assert seen == {"plain": False, "gpu-2": True}  # gpu-2 waited for gpu-1's GPU


def test_a_seceded_task_gives_its_thread_to_the_next_and_rejoins():
    import threading

    released, ran_meanwhile = threading.Event(), []

    async def schedule(runner):
        def waits_for_another():
            assert runner.secede()
            released.wait(10)  # only the next task can set it: it needs this thread's slot
            assert runner.rejoin()
            return "rejoined"

        runner.run("outer", waits_for_another)
        runner.run("inner", lambda: (ran_meanwhile.append(True), released.set()))
        return ["outer", "inner"]

    reports = run_jobs(1, schedule)
    assert sorted((key, ok) for key, ok, _ in reports) == [("inner", True), ("outer", True)]
    assert ran_meanwhile == [True]


def test_a_rejoining_task_waits_for_a_slot_and_the_worker_keeps_its_thread_count():
    import threading

    inner_running, inner_may_end, order = threading.Event(), threading.Event(), []

    async def schedule(runner):
        def outer():
            assert runner.secede()
            inner_running.wait(10)
            order.append("rejoining")
            inner_may_end.set()
            assert runner.rejoin()  # only once "inner" is done is a slot free
            order.append("rejoined")

        def inner():
            inner_running.set()
            inner_may_end.wait(10)
            order.append("inner done")

        runner.run("outer", outer)
        runner.run("inner", inner)
        await asyncio.to_thread(inner_may_end.wait, 10)
        runner.run("after", lambda: order.append("after"))  # on the one thread left
        return ["outer", "inner", "after"]

    reports = run_jobs(1, schedule)
    assert all(ok for _, ok, _ in reports)
    assert order.index("inner done") < order.index("rejoined")
    assert order[0] == "rejoining"
