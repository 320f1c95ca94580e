"""The first large scatter of a session, each system in a session of its own.

    python -m benchmarks.fresh_session [--sessions 5] [--mb 200] [--peers ray,dask]

The runner's "scatter of fresh 200 MB" row gives back what our pool keeps before each rep
(``drop_reusable``), so ours writes into pages the kernel has just made. Ray's object
store has no way to give its pages back: in the runner its ``put`` lands in store pages
that the rows before it had already faulted in. Here every sample is a new session, one
per system, in turns: the system starts, makes one small round trip (connections up),
and then its first ``mb`` MB array is timed. Nothing before it touched those pages, for
any system. Reports each system's median and ours against it (above 1×: ours faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.limits import copy_into_fresh_shm
from benchmarks.systems import make_system

MB = 10**6


def first_scatter(name: str, array: np.ndarray) -> float:
    system = make_system(name)
    system.start(2)
    try:
        assert system.roundtrip(1) == 1
        array[0] = time.time_ns()  # new content: no key to reuse
        start = time.perf_counter()
        handle = system.scatter(array)
        seconds = time.perf_counter() - start
        del handle
        return seconds
    finally:
        system.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--peers", default="ray")
    args = parser.parse_args(argv)
    names = ["scatter_magics", *[p for p in args.peers.split(",") if p]]
    array = np.random.default_rng(args.mb).random(args.mb * MB // 8)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.sessions):
        for name in (names if i % 2 == 0 else names[::-1]):
            samples[name].append(first_scatter(name, array))
    limit = copy_into_fresh_shm(array)
    ours = statistics.median(samples["scatter_magics"])
    print(f"first {args.mb} MB scatter of a session, medians of {args.sessions} sessions "
          f"(one copy into fresh /dev/shm pages: {limit * 1e3:.1f} ms)")
    for name in names:
        median = statistics.median(samples[name])
        print(f"  {name:15s} {median * 1e3:7.1f} ms   ours vs {name}: {median / ours:.2f}×   "
              f"samples {[round(s * 1e3, 1) for s in samples[name]]}")


if __name__ == "__main__":
    main()
