"""Large buffers through shared memory: one copy, read-only replicas, nothing left in /dev/shm."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scatter_magics.engine.shm import pool as shm
from scatter_magics.engine.shm import reuse
from scatter_magics.errors import SharedMemoryWarning
from scatter_magics.tokenize import tokenize
from tests.conftest import wait_for, worker_pids

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")]

BIG = 4 * shm.THRESHOLD  # bytes: large enough to go through shared memory


def segments(prefix: str) -> list[str]:
    return [n for n in os.listdir(shm.SHM_DIR) if n.startswith(prefix)]


def big_array(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(BIG // 8)


def test_scatter_goes_through_one_segment_and_round_trips(make_client):
    client = make_client(n_workers=2)
    pool = client.cluster.shm_pool
    data = big_array()
    [future] = client.scatter([data], broadcast=True)
    assert len(segments(pool.prefix)) == 1  # a broadcast to two workers is one copy
    assert client.submit(np.sum, future, workers="worker-1").result() == pytest.approx(data.sum())
    back = client.gather(future)
    np.testing.assert_array_equal(back, data)
    assert not back.flags.writeable
    info = client.scheduler_info()
    assert all(w["nbytes"] >= data.nbytes for w in info["workers"].values())
    assert data.nbytes <= info["nbytes"] < 2 * data.nbytes  # the shared copy counts once


def test_a_worker_cannot_change_another_replica(make_client):
    client = make_client(n_workers=2)
    [future] = client.scatter([big_array(1)], broadcast=True)

    def mutate(x):
        x[0] = -1.0
        return x

    with pytest.raises(ValueError, match="read-only"):
        client.submit(mutate, future, workers="worker-0").result()
    copied = client.submit(lambda x: (x.copy().__setitem__(0, -1.0), x[0])[1], future,
                           workers="worker-1")
    assert copied.result() != -1.0
    assert client.gather(future)[0] != -1.0


def test_results_that_view_shared_memory_are_copied(make_client):
    client = make_client(n_workers=1)
    data = big_array(2)
    future = client.scatter(data)
    head = client.submit(lambda x: x[:10], future)
    expected = data[:10].copy()
    head.result()
    key = future.key
    del future
    wait_for(lambda: key not in client.who_has(), what="the input to be released")
    client.scatter(big_array(3))  # may reuse the released segment
    np.testing.assert_array_equal(client.gather(head), expected)


def test_released_segments_are_reused_not_recreated(make_client):
    client = make_client(n_workers=1)
    pool = client.cluster.shm_pool
    for seed in range(4):
        future = client.scatter(big_array(seed))
        key = future.key
        del future
        gc.collect()
        wait_for(lambda: key not in client.who_has(), what="release")
    assert len(segments(pool.prefix)) == 1


def test_gathered_view_keeps_its_segment(make_client):
    client = make_client(n_workers=1)
    data = big_array(4)
    future = client.scatter(data)
    kept = client.gather(future)
    key = future.key
    del future
    wait_for(lambda: key not in client.who_has(), what="release")
    client.scatter(big_array(5))  # must not land in the segment `kept` still views
    np.testing.assert_array_equal(kept, data)


def test_gathering_what_this_client_scattered_asks_no_worker(make_client):
    """The client reads its own shared memory, as Ray's ``get`` of its own object does:
    with every worker stopped (SIGSTOP), the gather still returns, unchanged."""
    client = make_client(n_workers=2)
    data = big_array(6)
    future, direct = client.scatter(data), client.scatter(big_array(7), direct=True)
    pids = list(worker_pids(client).values())
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        np.testing.assert_array_equal(client.gather(future, timeout=5), data)
        np.testing.assert_array_equal(client.gather(direct, direct=True, timeout=5),
                                      big_array(7))
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert client.gather(client.submit(len, future)) == len(data)  # the workers still serve


def test_close_unlinks_every_segment(make_client):
    client = make_client(n_workers=2)
    prefix = client.cluster.shm_pool.prefix
    client.scatter([big_array(6), big_array(7)])
    assert segments(prefix)
    client.close()
    assert segments(prefix) == []


def test_segments_of_a_killed_kernel_are_removed_by_its_workers():
    script = textwrap.dedent(f"""
        import numpy as np, time
        from scatter_magics import Client
        client = Client(n_workers=2)
        client.scatter(np.ones({BIG // 8}), broadcast=True)
        print(client.cluster.shm_pool.prefix, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        prefix = parent.stdout.readline().strip()
        assert prefix.startswith("smg-") and segments(prefix)
        parent.kill()
        parent.wait()
        wait_for(lambda: not segments(prefix), timeout=10, what="/dev/shm to be cleaned")
    finally:
        parent.kill()
        parent.stdout.close()


def test_segments_left_by_a_cluster_killed_with_its_workers_are_swept(tmp_path):
    # The OOM killer takes the kernel and its workers at once: nobody unlinks, and tmpfs
    # would keep the memory until reboot. The next pool sweeps what no process can use.
    from scatter_magics.engine.shm import cleanup

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is free now
    orphan = tmp_path / f"smg-{dead.pid}-0123abcd-0"
    live_owner = tmp_path / f"smg-{os.getpid()}-0123abcd-0"
    mapped = tmp_path / f"smg-{dead.pid}-4567cdef-0"  # its owner died, a reader did not
    foreign = tmp_path / "smg-not-ours"
    for path in (orphan, live_owner, mapped, foreign):
        path.write_bytes(b"x" * 4096)
    reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import mmap, sys
        with open({str(mapped)!r}, "rb") as f:
            view = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        print("mapped", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "mapped"
        swept = cleanup.sweep_orphaned_segments.__wrapped__(str(tmp_path))
    finally:
        reader.stdin.close()
        reader.wait(10)
        reader.stdout.close()
    assert swept == (str(orphan),)
    assert not orphan.exists() and live_owner.exists() and mapped.exists() and foreign.exists()


def test_remote_client_reads_shared_memory_by_name(client):
    from scatter_magics import Client

    data = big_array(8)
    future = client.scatter(data)
    other = Client(client.scheduler_address.replace("127.0.0.1", "localhost"), secret=client.secret)
    try:
        [same] = other.scatter([data])  # a remote client sends bytes over the socket
        assert same.key == future.key
        np.testing.assert_array_equal(other.gather(same), data)
    finally:
        other.close()


def test_a_failed_scatter_gives_its_shared_memory_back(make_client):
    client = make_client(n_workers=1)
    pool = client.cluster.shm_pool
    [(address, pid)] = worker_pids(client).items()
    os.kill(pid, signal.SIGSTOP)
    try:
        data = big_array(9)
        with pytest.raises(TimeoutError):
            client.scatter(data, timeout=0.3)
    finally:
        os.kill(pid, signal.SIGCONT)
    key = f"ndarray-{tokenize(data)}"
    wait_for(lambda: not pool.holds(key), what="the failed scatter's segment to be released")
    assert client.gather(client.scatter(data)).sum() == pytest.approx(data.sum())


def test_cluster_shows_the_shared_memory_mode(make_client):
    from scatter_magics.backend import backend_for
    from scatter_magics.notebook.display import ClusterSummary

    client = make_client(n_workers=1)
    info = client.scheduler_info()["shared_memory"]
    assert info["mode"] == "shared-memory" and info["directory"] == shm.SHM_DIR
    assert info["capacity"] > 0 and info["fallbacks"] == 0
    headline = ClusterSummary.snapshot(backend_for(client), {}).headline()
    assert f"shared memory: {shm.SHM_DIR}" in headline


def test_a_list_scatter_failing_on_a_later_item_gives_earlier_segments_back(make_client):
    import threading

    from scatter_magics.errors import SerializationError

    client = make_client(n_workers=1)
    pool = client.cluster.shm_pool
    for _ in range(3):
        with pytest.raises(SerializationError):
            client.scatter([big_array(21), big_array(22), threading.Lock()])
        assert pool.stats()["keys"] == 0 and pool.stats()["in_use_bytes"] == 0
    assert client.gather(client.scatter(big_array(21))).sum() == pytest.approx(big_array(21).sum())


def test_a_failed_write_names_the_key_and_leaves_the_cluster_usable(make_client, monkeypatch):
    import errno

    from scatter_magics.errors import SharedMemoryError

    client = make_client(n_workers=1)

    def broken_pwrite(fd, data, offset):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(shm.os, "pwrite", broken_pwrite)
    with pytest.raises(SharedMemoryError, match="'precious'") as info:
        client.scatter({"precious": big_array(23)})
    assert isinstance(info.value.__cause__, OSError)
    monkeypatch.undo()
    assert client.cluster.shm_pool.stats()["keys"] == 0
    assert client.gather(client.scatter({"precious": big_array(23)}))["precious"].shape == (BIG // 8,)


def test_idle_segments_are_given_back_after_a_while(make_client, monkeypatch):
    monkeypatch.setattr(shm, "IDLE_SECONDS", 0.2)  # how often the cluster trims
    monkeypatch.setattr(reuse, "IDLE_SECONDS", 0.2)  # how long a segment may idle
    client = make_client(n_workers=1)
    prefix = client.cluster.shm_pool.prefix
    future = client.scatter(big_array(24))
    assert segments(prefix)
    del future
    wait_for(lambda: not segments(prefix), timeout=10, what="the idle segment to be unlinked")


def test_idle_segments_above_the_cap_are_given_back_at_once(make_client, monkeypatch):
    monkeypatch.setattr(reuse, "MAX_IDLE_BYTES", 0)
    client = make_client(n_workers=1)
    pool = client.cluster.shm_pool
    future = client.scatter(big_array(25))
    del future
    wait_for(lambda: pool.stats()["segments"] == 0, timeout=2, what="the segment to go")
    assert segments(pool.prefix) == []


def test_a_reused_segment_holds_exactly_what_was_written_last():
    """Reuse writes through a warm mapping where pages exist, with pwrite beyond them."""
    pool = shm.SharedMemoryPool()
    try:
        names = set()
        for i, mb in enumerate([3.0, 3.9, 2.0, 3.5]):  # all fit the first 4 MiB segment
            data = np.full(int(mb * 2**20) // 8, float(i))
            [ref], pinned = pool.store(f"k{i}", [data])
            names.add(ref.name)
            np.testing.assert_array_equal(pool.view(ref).view(np.float64), data)
            pool.unpin([f"k{i}"])
        assert len(names) == 1
    finally:
        pool.close()


def test_a_large_copy_into_warm_pages_is_split_over_threads_and_exact():
    """Past copier.SPLIT_FROM, a write into pages that exist is split over helper threads
    (pieces on page boundaries, the last one short); every byte lands, in order."""
    import threading

    pool = shm.SharedMemoryPool()
    try:
        sizes = [24 << 20, (20 << 20) + 4104, (24 << 20) - 8]  # warm from the first on
        for i, nbytes in enumerate(sizes):
            data = np.random.default_rng(i).integers(0, 255, nbytes, dtype=np.uint8)
            [ref], _ = pool.store(f"k{i}", [data])
            np.testing.assert_array_equal(pool.view(ref), data)
            pool.unpin([f"k{i}"])
            pool.release_key(f"k{i}")
        helpers = [t for t in threading.enumerate() if t.name.startswith("scatter-magics-shm-copy")]
        assert helpers or (os.cpu_count() or 1) < 2
    finally:
        pool.close()
    assert not [t for t in threading.enumerate()
                if t.name.startswith("scatter-magics-shm-copy") and t.is_alive()]


def test_a_value_copied_while_hashed_is_stored_once(make_client, monkeypatch):
    from scatter_magics.engine.shm import limits
    from scatter_magics.errors import MemoryLimitError

    client = make_client(n_workers=1)
    pool = client.cluster.shm_pool
    data = np.random.default_rng(31).random(shm.WRITE_AHEAD_MIN // 8 * 2)
    future = client.scatter(data)
    assert pool.stats()["segments"] == 1
    again = client.scatter(data)  # the same content: no second copy, ahead or not
    assert again.key == future.key and pool.stats()["segments"] == 1
    np.testing.assert_array_equal(client.gather(again), data)
    del future, again
    wait_for(lambda: pool.stats()["keys"] == 0, what="the key to be released")
    # A scatter that fails after its copy began (here: refused) gives the copy back at once.
    def refuse(key, size, total, free):
        raise MemoryLimitError(f"refused {key!r}")
    monkeypatch.setattr(limits, "check_machine_memory", refuse)
    started = []
    write_ahead = pool.write_ahead
    monkeypatch.setattr(pool, "write_ahead", lambda b: started.append(write_ahead(b)) or started[-1])
    with pytest.raises(MemoryLimitError):
        client.scatter(data + 1)
    assert started and started[0] is not None  # the copy had begun
    monkeypatch.undo()
    wait_for(lambda: pool.stats()["in_use_bytes"] == 0, what="the early copy to be given back")


def test_the_pieces_of_one_array_are_copied_once_into_one_segment():
    """A run of keys whose buffers are consecutive slices of one array (a split) is one
    copy in one segment; the segment is reused only when the last piece is let go."""
    pool = shm.SharedMemoryPool()
    try:
        data = np.random.default_rng(40).random(16 * 2**20 // 8)  # 16 MiB, 2 MiB a piece
        pieces = np.array_split(data, 8)
        keys = [f"arr[{i}/8]" for i in range(8)]
        stored = pool.store_run(keys, [[p] for p in pieces])
        refs = [ref for [ref], pinned in stored]
        assert all(pinned for _, pinned in stored) and len({r.name for r in refs}) == 1
        assert pool.stats()["segments"] == 1 and pool.stats()["copied_bytes"] == data.nbytes
        for ref, piece in zip(refs, pieces):
            np.testing.assert_array_equal(pool.view(ref).view(np.float64), piece)
        assert pool.store_run(keys, [[p] for p in pieces]) is None  # stored: key by key
        pool.recorded(keys)
        pool.unpin(keys)
        for key in keys[:-1]:
            pool.release_key(key)
        assert pool.stats()["idle_bytes"] == 0  # the last piece still needs the segment
        pool.release_key(keys[-1])
        assert pool.stats()["keys"] == 0 and pool.stats()["in_use_bytes"] == 0
    finally:
        pool.close()


def test_a_run_that_does_not_fit_travels_over_the_socket(monkeypatch):
    pool = shm.SharedMemoryPool()
    try:
        monkeypatch.setattr(pool.space, "fits", lambda size: False)
        pieces = np.array_split(np.ones(4 * 2**20 // 8), 2)
        with pytest.warns(SharedMemoryWarning, match="not enough for 4 MiB"):
            stored = pool.store_run(["a", "b"], [[p] for p in pieces])
        assert [(b[0] is p, pinned) for (b, pinned), p in zip(stored, pieces)] == [
            (True, False), (True, False)]
        assert pool.stats()["keys"] == 0 and pool.stats()["segments"] == 0
    finally:
        pool.close()


def test_a_run_store_copies_consecutive_pieces_together_and_the_rest_alone():
    from types import SimpleNamespace

    from scatter_magics.engine.shm.runs import RunStore

    pool = shm.SharedMemoryPool()
    try:
        whole = np.random.default_rng(41).random(12 * 2**20 // 8)
        other = np.random.default_rng(42).random(2 * 2**20 // 8)
        items = [SimpleNamespace(buffers=[p]) for p in np.array_split(whole, 4)]
        items.insert(2, SimpleNamespace(buffers=[b"small"]))  # inline: does not break the run
        items.append(SimpleNamespace(buffers=[other]))  # elsewhere in memory: alone
        store = RunStore(pool)
        for i, item in enumerate(items):
            store.add(f"k{i}", item)
        store.flush()
        names = [item.buffers[0].name for item in items if isinstance(item.buffers[0], shm.ShmRef)]
        assert len(names) == 5 and len(set(names[:4])) == 1 and names[4] != names[0]
        assert sorted(store.pinned) == ["k0", "k1", "k3", "k4", "k5"]
        assert pool.stats()["copied_bytes"] == whole.nbytes + other.nbytes
    finally:
        pool.close()
