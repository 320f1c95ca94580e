"""Many threads on one Client, with the interpreter switching threads as often as it can.

The races these tests found: two concurrent stores of one key each took a segment and
the second record hid the first (stranded until close); and a scatter that reused a
key's segment while the batched release of that key freed it pointed the workers at a
segment another key then overwrote (a gather returned the wrong array).
"""

from __future__ import annotations

import gc
import sys
import threading

import numpy as np
import pytest

from scatter_magics.engine.shm import pool as shm
from tests.conftest import wait_for

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")]

THREADS = 8
ROUNDS = 60
ITEMS = 4 * shm.THRESHOLD // 8  # float64s: well over the shared-memory threshold
VALUES = 3  # few distinct contents, so threads keep re-scattering each other's keys


@pytest.fixture
def fine_switching():
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def hammer(client, worker: int, errors: list) -> None:
    """Scatter, gather and submit shared contents; record any value that comes back wrong."""
    for i in range(ROUNDS):
        value = float((worker + i) % VALUES)
        future = client.scatter(np.full(ITEMS, value))
        total = client.submit(np.sum, future)
        got = client.gather(future)
        if not (got[0] == value and got[-1] == value):
            errors.append(f"gathered {got[0]}/{got[-1]} for {value}")
        if total.result() != value * ITEMS:
            errors.append(f"task saw sum {total.result()} for {value}")
        del future, total, got


def test_threads_on_one_client_never_see_wrong_data_or_strand_segments(make_client,
                                                                      fine_switching):
    client = make_client(n_workers=2)
    pool = client.cluster.shm_pool
    errors: list[str] = []
    threads = [threading.Thread(target=hammer, args=(client, n, errors)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    gc.collect()
    # Every future is gone: no key may keep a segment, and every segment is reusable.
    wait_for(lambda: not any(client.has_what().values()), what="every key to be released")
    wait_for(lambda: pool.stats()["keys"] == 0, what="the pool to hold no key")
    stats = pool.stats()
    assert stats["in_use_bytes"] == 0, stats


def test_concurrent_stores_of_one_key_share_one_segment():
    pool = shm.SharedMemoryPool()
    try:
        data = np.arange(ITEMS, dtype=np.float64)
        refs: list = []
        barrier = threading.Barrier(THREADS)

        def store():
            barrier.wait()
            buffers, pinned = pool.store("k", [data])
            refs.append(buffers[0])

        threads = [threading.Thread(target=store) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len({ref.name for ref in refs}) == 1
        assert pool.stats()["segments"] == 1
        pool.unpin(["k"] * THREADS)
        assert pool.stats()["keys"] == 0 and pool.stats()["in_use_bytes"] == 0
    finally:
        pool.close()


def test_a_segment_being_rescattered_is_not_freed_by_the_release_of_its_key():
    """Release (the scheduler forgot the key) lands between a re-scatter's store and send."""
    pool = shm.SharedMemoryPool()
    try:
        mine, other = np.full(ITEMS, 1.0), np.full(ITEMS, 2.0)
        pool.store("mine", [mine])
        pool.recorded(["mine"])
        pool.unpin(["mine"])  # the first scatter of "mine" is done; the scheduler holds it
        [ref], pinned = pool.store("mine", [mine])  # scattered again: the same segment ...
        pool.release_key("mine")  # ... as the batched release of the old future lands
        pool.store("other", [other])  # must not get (and overwrite) that segment
        np.testing.assert_array_equal(pool.view(ref).view(np.float64), mine)
        pool.recorded(["mine"])
        pool.unpin(["mine"])
        np.testing.assert_array_equal(pool.view(ref).view(np.float64), mine)
    finally:
        pool.close()


def test_copies_started_before_the_key_is_known_are_adopted_once(make_client, fine_switching):
    """A large value is copied while its key is hashed; concurrent twins keep one copy."""
    client = make_client(n_workers=1)
    pool = client.cluster.shm_pool
    size = shm.WRITE_AHEAD_MIN // 8 + 4096  # float64s: just above the write-ahead size
    errors: list[str] = []
    kept: list = []
    barrier = threading.Barrier(THREADS)

    def twin(n):
        value = float(n % 2)  # two contents, four threads each, at the same moment
        barrier.wait()
        future = client.scatter(np.full(size, value))
        got = client.gather(future)
        if not (got[0] == value and got[-1] == value):
            errors.append(f"gathered {got[0]} for {value}")
        kept.append(future)

    threads = [threading.Thread(target=twin, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len({f.key for f in kept}) == 2
    stats = pool.stats()
    assert stats["keys"] == 2 and stats["in_use_bytes"] <= 2 * 2 * size * 8  # no stray copy
    kept.clear()
    gc.collect()
    wait_for(lambda: pool.stats()["in_use_bytes"] == 0, what="both segments to be free")
