"""Child process: what one copy costs on this machine, with no system at all (the limit).

``python -m benchmarks.limits [--quick] --out F`` writes one record per row it has a limit
for, as ``{"row", "system": "one copy", "seconds"}``, the median of a few reps:

- *scatter of fresh N MB*: the array copied once into pages the kernel has just made —
  a new ``/dev/shm`` file, by ``pwrite`` and by a copy through a mapping split over the
  cores (the faster counts; here they are level: 83-91 and 80-82 ms for 200 MB). Every system that keeps the data in shared memory pays at least this when
  it may reuse nothing (the pages are allocated and zeroed, then written).
- *scatter N MB array*, *scatter 1 GiB DataFrame*, *broadcast N MB …*: the array copied
  once into pages that exist already (what a pool or an object store reuses), on one
  thread or split over the cores, the faster; a broadcast's workers then map it, which
  no copy is needed for.
- *gather N MB array*, *gather 1 GiB DataFrame*: the array copied once out of a shared
  mapping into fresh private memory, the writable array of the client's own that the row
  asks for.

Each limit runs in this child of its own, like the systems' sessions, on the same data.
"""

import argparse
import concurrent.futures
import json
import mmap
import os
import statistics
import tempfile
import time

import numpy as np

from benchmarks import workloads
from benchmarks.report import LIMIT
from benchmarks.workloads import MB

REPS = 5
SHM = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def _timed(fn, reps=REPS):
    samples = []
    for _ in range(reps):
        samples.append(fn())
    return statistics.median(samples)


def copy_into_fresh_shm(array):
    """Seconds to put ``array`` into a new shared-memory file (the faster of two ways)."""
    data = memoryview(array).cast("B")

    def by_pwrite():
        fd, path = tempfile.mkstemp(dir=SHM, prefix="limit-")
        try:
            start = time.perf_counter()
            os.pwrite(fd, data, 0)
            return time.perf_counter() - start
        finally:
            os.close(fd)
            os.unlink(path)

    def by_mapping():
        fd, path = tempfile.mkstemp(dir=SHM, prefix="limit-")
        try:
            os.ftruncate(fd, len(data))
            start = time.perf_counter()
            with mmap.mmap(fd, len(data)) as region:
                target = np.frombuffer(region, dtype=np.uint8)
                _copy_split(target, np.frombuffer(data, np.uint8))  # faults on every core
                elapsed = time.perf_counter() - start
                del target  # (the mapping may close now)
            return elapsed
        finally:
            os.close(fd)
            os.unlink(path)

    return min(_timed(by_pwrite), _timed(by_mapping))


def copy_into_warm_shm(array):
    """Seconds to copy ``array`` into shared-memory pages that exist already, on one
    thread or split over every core (the faster counts: numpy's copy releases the GIL)."""
    fd, path = tempfile.mkstemp(dir=SHM, prefix="limit-")
    try:
        os.ftruncate(fd, array.nbytes)
        with mmap.mmap(fd, array.nbytes) as region:
            target = np.frombuffer(region, dtype=array.dtype)
            target[:] = array  # the pages now exist
            seconds = min(_timed(lambda: _copy(target, array)),
                          _timed(lambda: _copy_split(target, array)))
            del target
        return seconds
    finally:
        os.close(fd)
        os.unlink(path)


def copy_out_of_shm(array):
    """Seconds to copy ``array`` from a shared mapping into fresh private memory."""
    fd, path = tempfile.mkstemp(dir=SHM, prefix="limit-")
    try:
        os.pwrite(fd, memoryview(array).cast("B"), 0)
        with mmap.mmap(fd, array.nbytes, prot=mmap.PROT_READ) as region:
            source = np.frombuffer(region, dtype=array.dtype)
            source.sum()  # mapped and read once: the reader's page faults are not the copy's

            def copy():
                start = time.perf_counter()
                out = source.copy()
                elapsed = time.perf_counter() - start
                del out
                return elapsed
            seconds = _timed(copy)
            del source
        return seconds
    finally:
        os.close(fd)
        os.unlink(path)


def _copy(target, source):
    start = time.perf_counter()
    np.copyto(target, source)
    return time.perf_counter() - start


def _copy_split(target, source):
    threads = os.cpu_count() or 1
    step = -(-len(source) // threads)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        for piece in [pool.submit(np.copyto, target[i:i + step], source[i:i + step])
                      for i in range(0, len(source), step)]:
            piece.result()
        return time.perf_counter() - start


def limits(cfg):
    """``[(row, seconds)]`` for every row of ``cfg`` that has a one-copy limit."""
    rng = np.random.default_rng(0)
    out = []
    for mb in cfg.array_mb:
        array = rng.random(mb * MB // 8)
        scatter, gather = copy_into_warm_shm(array), copy_out_of_shm(array)
        out += [(f"scatter {mb} MB array", scatter), (f"gather {mb} MB array", gather),
                (f"scatter {mb} MB array, direct, no hash", scatter),
                (f"gather {mb} MB array, direct", gather)]
        del array
    fresh = rng.random(cfg.fresh_mb * MB // 8)
    out.append((workloads.fresh_row(cfg.fresh_mb), copy_into_fresh_shm(fresh)))
    del fresh
    frame = rng.random(cfg.frame_mib * 2**20 // 8)
    size = workloads._size(cfg.frame_mib)
    out += [(f"scatter {size} DataFrame", copy_into_warm_shm(frame)),
            (f"gather {size} DataFrame", copy_out_of_shm(frame))]
    del frame
    for mb in cfg.broadcast_mb:
        seconds = copy_into_warm_shm(rng.random(mb * MB // 8))
        out += [(workloads.broadcast_row(mb, n), seconds) for n in cfg.broadcast_workers]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    cfg = workloads.QUICK if args.quick else workloads.FULL
    with open(args.out, "w") as out:
        for row, seconds in limits(cfg):
            out.write(json.dumps({"row": row, "system": LIMIT, "seconds": seconds}) + "\n")


if __name__ == "__main__":
    main()
