"""Kernel-side cost of the live futures widget with 10,000 live futures.

    python -m benchmarks.widget_cost [--n 10000] [--reps 5]

Runs an embedded cluster (2 workers) in this process, with no kernel: the widget's comm
is ipywidgets' ``DummyComm``, so "send" here is the JSON encoding of the state a real
kernel would put on IOPub (``json.dumps``), measured separately. Reports medians:

- build: ``FuturesWidget(client, futures)`` (subscribe, snapshot of every key, first page)
- flush: one coalesced update (page + summary + traits) and the JSON of what it sends
- burst: CPU on the loop thread to fold 10,000 ``key`` events into the table, synthetic
  (one batch) and live (``client.cancel`` of all 10,000 futures, as the scheduler sends it)
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import tracemalloc

from scatter_magics import Client
from scatter_magics.notebook.widget import FuturesWidget
from scatter_magics.sizes import format_bytes


class TimedWidget(FuturesWidget):
    """A FuturesWidget that adds up the thread CPU time of its loop-thread work."""

    def __init__(self, *args, **kwargs):
        self.apply_cpu = self.flush_cpu = 0.0
        self.events = self.flushes = 0
        super().__init__(*args, **kwargs)

    def _apply(self, batch):
        start = time.thread_time()
        try:
            return super()._apply(batch)
        finally:
            self.apply_cpu += time.thread_time() - start
            self.events += len(batch)

    def _flush(self):
        start = time.thread_time()
        try:
            super()._flush()
        finally:
            self.flush_cpu += time.thread_time() - start
            self.flushes += 1


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def median_time(fn, reps: int) -> float:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the widget did not settle")
        time.sleep(0.005)


def measure(n: int, reps: int) -> dict[str, str]:
    out = {}
    with Client(n_workers=2) as client:
        futures = client.scatter(list(range(n)), hash=False)

        def build():
            FuturesWidget(client, futures).close()

        out["build"] = ms(median_time(build, reps))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        widget = FuturesWidget(client, futures)
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        out["memory of one widget"] = f"{grown / 2**20:.1f} MiB (tracemalloc)"
        out["flush, nothing changed"] = ms(median_time(widget._flush, reps * 20))

        def flush_other_page():  # every flush sends new rows, as after a change
            widget._view["page"] = 1 - widget._view["page"]
            widget._flush()

        out["flush, new rows sent"] = ms(median_time(flush_other_page, reps * 20))
        state = widget.get_state(widget._synced_state)
        out["JSON of one update"] = (f"{ms(median_time(lambda: json.dumps(state), reps * 20))}, "
                                     f"{format_bytes(len(json.dumps(state)))}")
        widget.set_view(page=0, status="finished")  # a filter makes a flush scan all rows
        wait_until(lambda: widget.status_filter == "finished")
        out["flush with a status filter"] = ms(median_time(widget._flush, reps * 20))
        widget.close()

        batch = [{"event": "key", "key": f.key, "status": "lost", "workers": [],
                  "nbytes": 28, "type": "int"} for f in futures]
        timed = TimedWidget(client, futures)
        timed.apply_cpu = 0.0
        start = time.thread_time()
        timed._apply(batch)
        out["burst, 10k events in one batch (apply)"] = ms(time.thread_time() - start)
        timed.close()

        live = TimedWidget(client, futures)
        live.apply_cpu = live.flush_cpu = 0.0
        live.events = live.flushes = 0
        start = time.monotonic()
        client.cancel(futures)
        wait_until(lambda: live.summary["keys"]["by_status"].get("cancelled") == n)
        settled = time.monotonic() - start
        out["burst, live cancel of all"] = (
            f"{live.events} events, apply CPU {ms(live.apply_cpu)}, {live.flushes} flushes "
            f"costing {ms(live.flush_cpu)}, all shown after {ms(settled)}")
        live.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="live futures")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per median")
    args = parser.parse_args()
    print(f"widget cost with {args.n} live futures (medians of {args.reps}+ reps)")
    for name, value in measure(args.n, args.reps).items():
        print(f"  {name:42s} {value}")


if __name__ == "__main__":
    main()
