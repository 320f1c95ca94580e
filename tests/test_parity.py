"""The core of Dask's scatter/gather/submit semantics, run against both implementations.

Each test takes ``any_client``: once a scatter_magics ``Client`` and once a
``distributed.Client`` on a ``LocalCluster`` of the same shape. Passing both ways is
what "our semantics are Dask's" means.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import operator
from collections import namedtuple

import numpy as np
import pandas as pd
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def is_future(x) -> bool:
    return type(x).__name__ == "Future" and hasattr(x, "key")


def workers_of(client) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


# ---------------------------------------------------------------- shapes ---

def test_single_object_gives_one_future(any_client):
    future = any_client.scatter(123)
    assert is_future(future)
    assert future.status == "finished"
    assert future.result() == 123


@pytest.mark.parametrize("kind", [list, tuple, set, frozenset])
def test_container_gives_same_container_of_futures(any_client, kind):
    # Distinct values per case: Dask races when a key's old futures are released
    # while the same key is scattered again (its scheduler then forgets the new data).
    values = [f"{kind.__name__}-{i}" for i in range(3)]
    futures = any_client.scatter(kind(values))
    assert type(futures) is kind
    assert len(futures) == 3
    assert all(is_future(f) for f in futures)
    assert sorted(any_client.gather(list(futures))) == values


def test_list_keeps_order(any_client):
    futures = any_client.scatter(["a", "b", "c"])
    assert any_client.gather(futures) == ["a", "b", "c"]


def test_namedtuple_keeps_its_type(any_client):
    Point = namedtuple("Point", "x y")
    futures = any_client.scatter(Point(1, 2))
    assert isinstance(futures, Point)
    assert any_client.gather(list(futures)) == [1, 2]


def test_dict_keys_become_future_keys(any_client):
    futures = any_client.scatter({"x": 1, "y": 2, "z": 3})
    assert set(futures) == {"x", "y", "z"}
    assert futures["x"].key == "x"
    assert any_client.gather(futures) == {"x": 1, "y": 2, "z": 3}


def test_dict_keys_keep_their_type_tuples_too(any_client):
    futures = any_client.scatter({("x", 0): "zero", ("x", 1): "one", 7: "seven"})
    assert futures[("x", 0)].key == ("x", 0) and futures[7].key == 7
    assert any_client.gather(futures) == {("x", 0): "zero", ("x", 1): "one", 7: "seven"}
    who_has = any_client.who_has(futures)
    assert set(who_has) == {("x", 0), ("x", 1), 7}
    held = {key for keys in any_client.has_what().values() for key in keys}
    assert {("x", 0), ("x", 1), 7} <= held
    assert "key: ('x', 0)" in repr(futures[("x", 0)])
    assert any_client.submit(operator.add, futures[("x", 1)], "!").result(timeout=30) == "one!"


def test_range_is_scattered_element_wise(any_client):
    futures = any_client.scatter(range(7001, 7004))
    assert any_client.gather(futures) == [7001, 7002, 7003]


# ---------------------------------------------------------------- keys ---

@pytest.mark.parametrize("value, prefix", [
    (1, "int-"), (2.5, "float-"), ("text", "str-"), (b"raw", "bytes-"),
    ((1, "a"), "tuple-"), (np.arange(5), "ndarray-"),
    (pd.DataFrame({"a": [1, 2]}), "DataFrame-"),
])
def test_hashed_key_is_typename_and_token(any_client, value, prefix):
    [future] = any_client.scatter([value])
    assert future.key.startswith(prefix)
    [again] = any_client.scatter([value])
    assert again.key == future.key


def test_equal_data_gives_the_same_key(any_client):
    a = any_client.scatter(np.arange(1000))
    b = any_client.scatter(np.arange(1000))
    c = any_client.scatter(np.arange(1001))
    assert a.key == b.key != c.key


def test_no_hash_gives_random_keys(any_client):
    a = any_client.scatter(7, hash=False)
    b = any_client.scatter(7, hash=False)
    assert a.key != b.key
    assert a.key.startswith("int-")
    assert any_client.gather([a, b]) == [7, 7]


# ---------------------------------------------------------------- placement ---

def test_broadcast_puts_a_replica_on_every_worker(any_client):
    [future] = any_client.scatter([np.ones(100)], broadcast=True)
    holders = any_client.who_has([future])[future.key]
    assert sorted(holders) == workers_of(any_client)


def test_workers_by_address_restricts_placement(any_client):
    target = workers_of(any_client)[1]
    futures = any_client.scatter([1, 2, 3, 4], workers=[target], hash=False)
    who_has = any_client.who_has(futures)
    assert all(list(holders) == [target] for holders in who_has.values())


def test_workers_as_host_port_pair(any_client):
    target = workers_of(any_client)[0]
    host, port = target.split("://")[1].rsplit(":", 1)
    future = any_client.scatter("pair", workers=[(host, int(port))], hash=False)
    assert list(any_client.who_has([future])[future.key]) == [target]


def test_broadcast_within_workers(any_client):
    target = workers_of(any_client)[0]
    [future] = any_client.scatter(["only-one"], broadcast=True, workers=[target], hash=False)
    assert list(any_client.who_has([future])[future.key]) == [target]


def test_round_robin_spreads_elements(any_client):
    futures = any_client.scatter(list(range(100, 110)), hash=False)
    holders = {w for hs in any_client.who_has(futures).values() for w in hs}
    assert holders == set(workers_of(any_client))


@pytest.mark.parametrize("direct", [True, False])
def test_direct_and_through_scheduler_move_the_same_data(any_client, direct):
    # Content differs per case: Dask races when a hashed key the previous case released
    # is scattered again before the release lands ("Couldn't gather keys ... forgotten").
    data = np.random.default_rng(int(direct)).random(300_000)
    future = any_client.scatter(data, direct=direct)
    np.testing.assert_array_equal(any_client.gather(future, direct=direct), data)


def test_replicate_copies_to_all_workers(any_client):
    future = any_client.scatter("replicate-me", hash=False)
    any_client.replicate([future])
    assert sorted(any_client.who_has([future])[future.key]) == workers_of(any_client)


def test_replicate_with_n_reduces_the_replicas(any_client):
    future = any_client.scatter("reduce-me", hash=False)
    any_client.replicate([future])
    assert len(any_client.who_has([future])[future.key]) == 2
    any_client.replicate([future], n=1)
    wait_for(lambda: len(any_client.who_has([future])[future.key]) == 1, what="one replica")
    [holder] = any_client.who_has([future])[future.key]
    wait_for(lambda: sum(future.key in keys for keys in any_client.has_what().values()) == 1,
             what="one worker holding the key")
    assert future.key in any_client.has_what()[holder]
    assert future.result() == "reduce-me"


def test_has_what_and_nthreads(any_client):
    future = any_client.scatter("held", hash=False)
    [holder] = any_client.who_has([future])[future.key]
    assert future.key in any_client.has_what()[holder]
    assert any_client.nthreads() == {w: 1 for w in workers_of(any_client)}


def test_scheduler_info_describes_workers(any_client):
    info = any_client.scheduler_info()
    assert len(info["workers"]) == 2
    for worker in info["workers"].values():
        assert worker["nthreads"] == 1
        assert worker["memory_limit"] > 0
        assert "name" in worker


# ---------------------------------------------------------------- gather ---

def test_gather_keeps_nested_structure(any_client):
    a, b, c = any_client.scatter([1, 2, 3], hash=False)
    nested = {"pair": (a, b), "list": [c, {"deep": a}], "plain": 5}
    assert any_client.gather(nested) == {"pair": (1, 2), "list": [3, {"deep": 1}], "plain": 5}


def test_gather_raise_reraises_the_task_exception(any_client):
    future = any_client.submit(operator.truediv, 1, 0)
    with pytest.raises(ZeroDivisionError):
        any_client.gather([future])


def test_gather_skip_drops_failed_futures(any_client):
    good = any_client.submit(operator.add, 1, 1)
    bad = any_client.submit(operator.truediv, 1, 0)
    assert any_client.gather([good, bad], errors="skip") == [2]


# ---------------------------------------------------------------- submit ---

def test_submit_resolves_futures_next_to_the_data(any_client):
    [data] = any_client.scatter([np.arange(10)], broadcast=True)
    results = [any_client.submit(np.add, data, i) for i in range(5)]
    values = any_client.gather(results)
    for i, value in enumerate(values):
        np.testing.assert_array_equal(value, np.arange(10) + i)


def test_futures_nested_in_arguments_are_resolved(any_client):
    a, b = any_client.scatter([3, 4], hash=False)
    future = any_client.submit(lambda xs, d: sum(xs) + d["k"], [a, b], {"k": a})
    assert future.result() == 10


def test_pure_submit_gives_the_same_key(any_client):
    assert any_client.submit(operator.add, 1, 2).key == any_client.submit(operator.add, 1, 2).key
    assert any_client.submit(operator.add, 1, 2, pure=False).key != \
        any_client.submit(operator.add, 1, 2, pure=False).key


def test_tasks_chain_on_pending_futures(any_client):
    first = any_client.submit(operator.mul, 6, 7)
    second = any_client.submit(operator.add, first, 1)
    assert second.result() == 43


def test_map_submits_one_task_per_element(any_client):
    futures = any_client.map(operator.mul, range(5), range(5))
    assert any_client.gather(futures) == [0, 1, 4, 9, 16]


def test_submit_with_workers_runs_there(any_client):
    target = workers_of(any_client)[1]
    future = any_client.submit(operator.add, 2, 3, workers=[target], pure=False)
    assert future.result() == 5
    assert list(any_client.who_has([future])[future.key]) == [target]


def test_cancel_marks_the_future_cancelled(any_client):
    future = any_client.scatter("to-cancel", hash=False)
    any_client.cancel([future])
    wait_for(lambda: future.status == "cancelled", what="status 'cancelled'")
    with pytest.raises(concurrent.futures.CancelledError):
        any_client.gather(future)


# ---------------------------------------------------------------- by value ---

def test_exception_class_made_in_a_function_is_reraised(any_client):
    # Not importable on a worker, as a class made in a notebook cell: it travels by value.
    class LocalError(Exception):
        pass

    def fail(x):
        raise LocalError("bad input", x)

    future = any_client.submit(fail, 3, pure=False)
    with pytest.raises(LocalError) as info:
        future.result(timeout=30)
    assert info.value.args == ("bad input", 3)
    assert isinstance(future.exception(timeout=30), LocalError)


def test_exception_class_of_a_notebook_cell_is_reraised(any_client):
    cell_error = type("CellError", (ValueError,), {"__module__": "__main__"})

    def fail():
        raise cell_error("from a cell")

    future = any_client.submit(fail, pure=False)
    with pytest.raises(cell_error, match="from a cell"):
        any_client.gather(future)


def test_result_of_a_class_made_in_a_function_comes_back(any_client):
    class Box:
        def __init__(self, value):
            self.value = value

    [data] = any_client.scatter([Box(1)], hash=False)
    future = any_client.submit(lambda box: Box(box.value + 1), data, pure=False)
    result = future.result(timeout=30)
    assert type(result) is Box and result.value == 2


def test_a_task_on_a_cancelled_future_is_cancelled(any_client):
    x = any_client.scatter("cancelled-input", hash=False)
    any_client.cancel([x])
    y = any_client.submit(operator.add, x, "!")
    with pytest.raises(concurrent.futures.CancelledError):
        y.result(timeout=30)
    assert y.status == "cancelled"


# ---------------------------------------------------------------- datasets ---

def another_client(any_client):
    """A second client of the same cluster, as another notebook's would be."""
    address = any_client.scheduler_info()["address"]
    if type(any_client).__module__.startswith("distributed"):
        return type(any_client)(address, set_as_default=False)
    return type(any_client)(address)


def test_published_data_outlives_the_client_that_published_it(any_client):
    publisher = another_client(any_client)
    try:
        futures = publisher.scatter(["p", "q", "r"], hash=False)
        publisher.publish_dataset(letters=futures, plain={"n": 7})
        assert {"letters", "plain"} <= set(any_client.list_datasets())
    finally:
        publisher.close()  # its futures go; the datasets still hold their keys
    got = any_client.get_dataset("letters")
    assert any_client.gather(got) == ["p", "q", "r"]
    assert any_client.get_dataset("plain") == {"n": 7}
    any_client.unpublish_dataset(["letters", "plain"])
    assert not {"letters", "plain"} & set(any_client.list_datasets())
    assert any_client.gather(got) == ["p", "q", "r"]  # our futures hold them still


def test_publish_dataset_forms_and_mistakes(any_client):
    future = any_client.scatter("forms", hash=False)
    any_client.publish_dataset(future, name="by-name")
    any_client.publish_dataset({"by-dict": future})
    assert {"by-name", "by-dict"} <= set(any_client.list_datasets())
    with pytest.raises(KeyError, match="already exists"):
        any_client.publish_dataset(future, name="by-name")
    any_client.publish_dataset(42, name="by-name", override=True)
    assert any_client.get_dataset("by-name") == 42
    [by_dict, by_name] = any_client.get_dataset(["by-dict", "by-name"])
    assert by_dict.result() == "forms" and by_name == 42
    with pytest.raises(ValueError, match="positional argument must be"):
        any_client.publish_dataset(future, future)
    with pytest.raises(ValueError, match="If name is provided"):
        any_client.publish_dataset(name="nothing")
    with pytest.raises(KeyError, match="not found"):
        any_client.get_dataset("never-published")
    assert any_client.get_dataset("never-published", default=None) is None
    any_client.unpublish_dataset("never-published")  # nothing to do, no error
    any_client.unpublish_dataset(["by-name", "by-dict"])
    assert not {"by-name", "by-dict"} & set(any_client.list_datasets())


def test_datasets_is_a_mutable_mapping(any_client):
    any_client.datasets["mapped"] = any_client.scatter("mapping", hash=False)
    assert "mapped" in any_client.datasets and "mapped" in list(any_client.datasets)
    assert "absent" not in any_client.datasets
    assert any_client.datasets["mapped"].result() == "mapping"
    count = len(any_client.datasets)
    del any_client.datasets["mapped"]
    assert len(any_client.datasets) == count - 1


# ---------------------------------------------------------------- asynchronous ---

def test_asynchronous_client_awaits_start_and_close(any_client):
    client_class, address = type(any_client), any_client.scheduler_info()["address"]

    async def main():
        client = await client_class(address, asynchronous=True)
        future = await client.scatter(41, hash=False)
        assert await client.gather(future) == 41
        await client.close()
        async with client_class(address, asynchronous=True) as again:
            assert await again.submit(operator.add, 1, 2, pure=False) == 3
        return client.status, again.status

    assert asyncio.run(asyncio.wait_for(main(), 60)) == ("closed", "closed")


def test_sync_runs_a_coroutine_function_on_the_clients_loop(any_client):
    # The door distributed's own wait() and Future.exception() use; ours use it too.
    async def add(x, y=0):
        await asyncio.sleep(0)
        return x + y

    assert any_client.sync(add, 40, y=2) == 42
    with pytest.raises(TimeoutError):
        any_client.sync(asyncio.sleep, 10, callback_timeout=0.05)
