"""``as_completed`` with Dask's whole API, against both engines.

Each test takes ``any_client`` (a scatter_magics ``Client``, then a ``distributed.Client``
on a cluster of the same shape) and ``api``, the package ``as_completed`` comes from: the
same code passing both ways shows our iterator behaves as Dask's. Tasks that must stay
pending wait behind ``gate`` (conftest).
"""

from __future__ import annotations

import asyncio
import operator
import time

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def test_batches_give_every_future_once(any_client, api):
    futures = any_client.map(operator.add, range(8), [1] * 8, pure=False)
    batches = list(api.as_completed(futures).batches())
    assert all(batches)  # never an empty batch
    assert sorted(f.key for batch in batches for f in batch) == sorted(f.key for f in futures)


def test_next_batch_counts_and_readiness(any_client, api, gate):
    gated, open_gate = gate
    done = any_client.submit(operator.add, 1, 2, pure=False)
    done.result(timeout=30)
    blocked = any_client.submit(gated, 7, pure=False)
    seq = api.as_completed()
    assert seq.next_batch(block=False) == [] and seq.is_empty() and not seq.has_ready()
    seq.update([done, blocked])
    assert seq.count() == 2 and not seq.is_empty()
    wait_for(seq.has_ready, timeout=30, what="the finished future to be ready")
    assert repr(seq) == "<as_completed: waiting=1 done=1>"
    assert seq.next_batch(block=False) == [done]
    assert seq.count() == 1 and not seq.has_ready()
    open_gate()
    assert seq.next_batch() == [blocked]
    assert seq.is_empty()
    with pytest.raises(StopIteration):
        next(seq)


def test_clear_forgets_waiting_and_ready_futures(any_client, api, gate):
    gated, _ = gate
    done = any_client.submit(operator.add, 2, 2, pure=False)
    done.result(timeout=30)
    seq = api.as_completed([done, any_client.submit(gated, 1, pure=False)])
    wait_for(seq.has_ready, timeout=30, what="the finished future to be ready")
    seq.clear()
    assert seq.is_empty() and seq.count() == 0
    assert list(seq) == []


def test_a_future_added_twice_is_yielded_twice(any_client, api):
    future = any_client.submit(operator.add, 3, 4, pure=False)
    seq = api.as_completed([future])
    seq.add(future)
    assert list(seq) == [future, future]


def test_only_futures_are_accepted(any_client, api):
    with pytest.raises(TypeError, match="Input must be a future"):
        api.as_completed([1])


def test_with_results_gives_values_in_batches_too(any_client, api):
    futures = any_client.map(operator.mul, range(5), [10] * 5, pure=False)
    assert sorted(v for _, v in api.as_completed(futures, with_results=True)) == \
        [0, 10, 20, 30, 40]
    batches = api.as_completed(futures, with_results=True).batches()
    assert sorted(v for batch in batches for _, v in batch) == [0, 10, 20, 30, 40]


def test_with_results_raises_a_failed_tasks_error(any_client, api):
    with pytest.raises(ZeroDivisionError):
        list(api.as_completed([any_client.submit(operator.truediv, 1, 0, pure=False)],
                              with_results=True))


def test_raise_errors_false_gives_the_error_as_exc_info(any_client, api):
    future = any_client.submit(operator.truediv, 2, 0, pure=False)
    [(got, (kind, exc, _))] = api.as_completed([future], with_results=True,
                                               raise_errors=False)
    assert got is future and kind is ZeroDivisionError and isinstance(exc, ZeroDivisionError)


@pytest.mark.parametrize("timeout", [0.3, "300ms"])
def test_timeout_counts_from_construction(any_client, api, gate, timeout):
    gated, _ = gate
    seq = api.as_completed([any_client.submit(gated, 1, pure=False)], timeout=timeout)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        next(seq)
    assert 0.2 < time.monotonic() - started < 10


def test_async_for_on_an_asynchronous_client(any_client, api, gate):
    gated, _ = gate
    address = any_client.scheduler_info()["address"]

    async def main():
        async with type(any_client)(address, asynchronous=True) as client:
            futures = client.map(operator.add, range(4), [10] * 4, pure=False)
            plain = [await f async for f in api.as_completed(futures)]
            valued = [v async for _, v in api.as_completed(futures, with_results=True)]
            late = api.as_completed([client.submit(gated, 1, pure=False)], timeout="300ms")
            with pytest.raises(TimeoutError):
                await late.__anext__()
            return sorted(plain), sorted(valued)

    assert asyncio.run(asyncio.wait_for(main(), 60)) == ([10, 11, 12, 13], [10, 11, 12, 13])
