"""What memory over time and the task stream cost the scheduler (issue 17, items 3 and 4).

    python -m benchmarks.history_cost [--workers 2 8 32] [--reps 7]

Pure, no cluster: the scheduler's own state (``SchedulerState``) and the ring buffers it
keeps, driven as the scheduler drives them. Reports medians over ``--reps`` runs:

- heartbeat: ``SchedulerState.update_metrics`` (what each worker's heartbeat, every 0.5 s,
  costs the scheduler), and of that the history's share (``MemoryHistory.update``);
- sample: ``MemoryHistory.tick``, once a second, with N workers;
- answer: ``as_dict()`` of a full history (300 samples, N workers): only when someone
  asks (``GET clusters/<id>``, ``%cluster``); its JSON size;
- memory: the full ring buffer's bytes (tracemalloc);
- task record: ``TaskStream.add`` of one record, against ``SchedulerState.task_finished``;
- Dask: ``Recorder.transition`` per transition, and per ended task.

Writes benchmarks/RESULTS-history.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time
import tracemalloc

from scatter_magics.history import MemoryHistory
from scatter_magics.sizes import format_bytes
from scatter_magics.task_stream import TaskStream

RESULTS = pathlib.Path(__file__).with_name("RESULTS-history.md")


def per_call(fn, n: int, reps: int) -> float:
    """Median seconds per call of ``fn(i)`` over ``reps`` runs of ``n`` calls."""
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        runs.append((time.perf_counter() - start) / n)
    return statistics.median(runs)


def scheduler_with(n_workers: int):
    from scatter_magics.engine.scheduler.state import SchedulerState

    state = SchedulerState()
    for i in range(n_workers):
        state.add_worker(f"tcp://127.0.0.1:{40000 + i}", f"worker-{i}", 1, 2**30)
    return state


def full_history(n_workers: int) -> MemoryHistory:
    history = MemoryHistory()
    for second in range(300):
        for i in range(n_workers):
            history.update(f"tcp://127.0.0.1:{40000 + i}", f"worker-{i}",
                           memory=2**25 + second, nbytes=2**20 * second)
        history.tick(float(second))
    return history


def measure(n_workers: int, reps: int) -> dict:
    state = scheduler_with(n_workers)
    addresses = list(state.workers)
    heartbeat = per_call(lambda i: state.update_metrics(addresses[i % n_workers], 2**25 + i,
                                                        now=i * 0.001), 20_000, reps)
    history = MemoryHistory()
    update = per_call(lambda i: history.update(addresses[i % n_workers], memory=i, nbytes=i),
                      20_000, reps)
    for a in addresses:
        history.update(a, "w", memory=1, nbytes=1)
    clock = iter(range(10**9))  # a second later at each call, across the repetitions
    tick = per_call(lambda i: history.tick(float(next(clock))), 2_000, reps)
    full = full_history(n_workers)
    answer = per_call(lambda i: full.as_dict(), 50, reps)
    size = len(json.dumps(full.as_dict()))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = full_history(n_workers)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    del kept
    return {"workers": n_workers, "heartbeat": heartbeat, "update": update, "tick": tick,
            "answer": answer, "json": size, "memory": grown}


def task_costs(reps: int) -> dict:
    stream = TaskStream()
    record = {"key": "f-1", "name": "f", "worker": "tcp://a", "thread": 0, "start": 1.0,
              "stop": 2.0, "status": "finished", "transfers": []}
    add = per_call(lambda i: stream.add(record), 50_000, reps)
    out = {"task_add": add}
    try:
        from scatter_magics.dask.recorder import Recorder
    except ImportError:
        return out
    recorder = Recorder()
    startstops = [{"action": "compute", "start": 1.0, "stop": 2.0}]
    out["dask_other"] = per_call(lambda i: recorder.transition(i, "waiting", "processing"),
                                 50_000, reps)
    out["dask_ended"] = per_call(lambda i: recorder.transition(
        i, "processing", "memory", worker="tcp://a", thread=1, startstops=startstops),
        50_000, reps)
    return out


def report(rows: list[dict], tasks: dict) -> str:
    us = lambda s: f"{s * 1e6:.2f} µs"  # noqa: E731
    lines = ["# Cost of memory over time and the task stream", "",
             "`python -m benchmarks.history_cost` (pure: the scheduler's state and its ring "
             "buffers, no cluster; medians).", "",
             "| workers | heartbeat (`update_metrics`) | the history's update in it | sample a second "
             "(`tick`) | per second, all workers | answer (`as_dict`, 300 samples) | its JSON "
             "| ring buffer |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per_second = 2 * r["workers"] * r["update"] + r["tick"]  # 2 heartbeats a second each
        lines.append(f"| {r['workers']} | {us(r['heartbeat'])} | {us(r['update'])} "
                     f"({r['update'] / r['heartbeat']:.0%}) | {us(r['tick'])} | {us(per_second)} "
                     f"({per_second * 100:.4f}% of one core) | {r['answer'] * 1e3:.2f} ms | "
                     f"{format_bytes(r['json'])} | {format_bytes(r['memory'])} |")
    lines += ["", f"A task record: `TaskStream.add` {us(tasks['task_add'])}."]
    if "dask_other" in tasks:
        lines.append(f"On Dask, the recorder's `transition` hook: {us(tasks['dask_other'])} "
                     f"for a transition it ignores, {us(tasks['dask_ended'])} for a task that "
                     f"ended (one tuple appended).")
    lines += ["", "Nothing is computed or sent while nobody looks: the answer is built only "
              "when `GET clusters/<id>`, the listing (every fifth sample) or `%cluster` asks."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    rows = [measure(n, args.reps) for n in args.workers]
    text = report(rows, task_costs(args.reps))
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
