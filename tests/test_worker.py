"""A worker's own data handling, driven directly on an event loop (no processes)."""

from __future__ import annotations

import asyncio

import pytest

from scatter_magics.engine.wire.serialize import serialize, wire
from scatter_magics.engine.worker import process as worker_module


@pytest.fixture
def worker():
    w = worker_module.Worker("tcp://127.0.0.1:1", "secret", "w", nthreads=1, memory_limit=0)
    yield w
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
