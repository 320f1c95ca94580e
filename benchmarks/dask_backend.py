"""The Dask backend's costs, side by side: the magics against ``distributed.Client``, and
the scheduler plugin against no plugin.

    python -m benchmarks.dask_backend [--rounds 5] [--output benchmarks/RESULTS-dask.md]

1. ``%scatter x`` + ``%gather x`` through the magics on a Dask ``LocalCluster`` (2 worker
   processes, started by ``%cluster start --dask``; its scheduler runs in this process,
   on the client's event-loop thread), then again on a ``dask scheduler`` process with two
   ``dask worker`` processes (``%cluster connect --scheduler-file``, as a remote cluster
   is reached), against ``client.gather(
   client.scatter(x))`` on the same client: 1,000 round trips of a fresh int, and a
   fresh 200 MB array (hashed, and ``--no-hash`` / ``hash=False``). The two run in turns,
   round after round, so load from elsewhere falls on both alike; the round trips in
   blocks of 50, turn about, and the row is the median block (a block is ~0.2 s, short
   enough that a burst of load elsewhere spoils a few blocks, not one side). The small
   round trip's ratio is also given paired: each magics block against the client block
   run just before or after it, the median of those ratios and its interquartile range
   (a host whose speed drifts moves both blocks of a pair alike, where it moves the two
   sides' medians apart), and by this process's CPU time per round trip (all threads:
   the notebook's, the client's loop, and a LocalCluster's scheduler).
2. The event plugin's cost to the scheduler: two ``dask scheduler`` processes with 2
   ``dask worker`` each, one with ``--preload scatter_magics.dask.preload`` and a client
   subscribed to its events (the widget's worst case: every key is watched), one without
   the plugin. Each runs ``client.gather(client.map(inc, range(10_000)))``, in turns; rows
   show the wall time and the CPU time of the scheduler process (psutil) per run.

Reports medians and the ratio (ours / Dask's, with / without); the targets are <= 1.05.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import psutil

DASK = os.path.join(os.path.dirname(sys.executable), "dask")
SMALL_CALLS = 3000
SMALL_BLOCK = 50  # round trips per turn
BIG_BYTES = 200 * 10**6
TASKS = 10_000


def inc(x):
    return x + 1


# ------------------------------------------------------------ magics vs client ---

def magics_shell(scheduler_file: str | None = None):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "scatter_magics")
    if scheduler_file is None:
        shell.run_line_magic("cluster", "start --dask -n 2 --threads 1")
    else:
        shell.run_line_magic("cluster", f"connect --scheduler-file {scheduler_file}")
    return shell


def small_magics(shell, n: int) -> tuple[float, float]:
    # A fresh int each time: no key can be reused.
    return timed_cell(shell, "x = _i + time.time_ns()\n%scatter x\n%gather x", n)


def small_client(shell, n: int) -> tuple[float, float]:
    return timed_cell(shell, "client.gather(client.scatter(_i + time.time_ns()))", n)


def timed_cell(shell, body: str, n: int) -> tuple[float, float]:
    """Seconds per run of ``body``, run ``n`` times by a loop in one notebook cell, in
    wall time and in this process's CPU time.

    Both sides run as a user's cell does: IPython turns ``%scatter x`` into
    ``get_ipython().run_line_magic(...)`` inside the cell, where its builtins trap is
    already set. (Called from outside a cell, every ``run_line_magic`` sets and unsets
    that trap, deleting and restoring ``exit`` and ``quit`` in ``builtins``, which
    invalidates the interpreter's cached global lookups in every function of the
    process, the scheduler's too: ~50 us a pair that no notebook pays.)
    """
    cell = (f"import time\n_cpu, _start = time.process_time(), time.perf_counter()\n"
            f"for _i in range({n}):\n" + textwrap.indent(body, "    ")
            + "\n_elapsed = time.perf_counter() - _start\n_cpu = time.process_time() - _cpu\n")
    shell.run_cell(cell, store_history=False).raise_error()
    return shell.user_ns["_elapsed"] / n, shell.user_ns["_cpu"] / n


def big_magics(shell, array, flags: str) -> float:
    array[0] = time.time_ns()
    shell.user_ns["arr"] = array
    start = time.perf_counter()
    shell.run_line_magic("scatter", f"arr {flags}")
    shell.run_line_magic("gather", "arr")
    elapsed = time.perf_counter() - start
    shell.run_line_magic("scatter", "tiny")  # let go of the array's future
    return elapsed


def big_client(client, array, hash: bool) -> float:
    array[0] = time.time_ns()
    start = time.perf_counter()
    client.gather(client.scatter(array, hash=hash))
    return time.perf_counter() - start


def compare_magics(rounds: int, scheduler_file: str | None = None) -> list[tuple]:
    """The rows of part 1, on a LocalCluster the magics start in this process, or on
    the ``dask scheduler`` whose ``scheduler_file`` is given (what a remote cluster is)."""
    shell = magics_shell(scheduler_file)
    client = shell.user_ns["client"]
    shell.user_ns["tiny"] = 0
    array = np.ones(BIG_BYTES // 8)
    blocks_per_round = max(1, SMALL_CALLS // SMALL_BLOCK // rounds)
    samples: dict[str, list[float]] = {}

    def add(name, value):
        samples.setdefault(name, []).append(value)

    small_magics(shell, 20), small_client(shell, 20)  # warm-up
    big_magics(shell, array, ""), big_client(client, array, True)
    for r in range(rounds):
        for b in range(blocks_per_round):
            order = [("magics", lambda: small_magics(shell, SMALL_BLOCK)),
                     ("client", lambda: small_client(shell, SMALL_BLOCK))]
            for side, fn in (order if (r + b) % 2 == 0 else order[::-1]):
                wall, cpu = fn()
                add(f"small/{side}", wall)
                add(f"small-cpu/{side}", cpu)
        pairs = [("big", lambda: big_magics(shell, array, ""), lambda: big_client(client, array, True)),
                 ("big-nohash", lambda: big_magics(shell, array, "--no-hash"),
                  lambda: big_client(client, array, False))]
        for name, ours, theirs in pairs:
            order = [("magics", ours), ("client", theirs)]
            for side, fn in (order if r % 2 == 0 else order[::-1]):
                add(f"{name}/{side}", fn())
    shell.run_line_magic("cluster", "stop")
    shell.run_line_magic("unload_ext", "scatter_magics")
    labels = {"small": f"scatter + gather of an int ({SMALL_CALLS} round trips), per call",
              "small-cpu": "the same, CPU time of this process per round trip",
              "big": "scatter + gather of a 200 MB array",
              "big-nohash": "the same, --no-hash / hash=False"}
    rows = [(labels[n], statistics.median(samples[f"{n}/magics"]),
             statistics.median(samples[f"{n}/client"])) for n in labels]
    paired = [m / c for m, c in zip(samples["small/magics"], samples["small/client"])]
    q1, median, q3 = statistics.quantiles(paired, n=4)
    return rows + [(f"the round trip, paired block by block: median of {len(paired)} ratios "
                    f"(interquartile range {q1:.3f}-{q3:.3f})", None, None, median)]


# ------------------------------------------------------------ plugin vs none ---

class CLICluster:
    """``dask scheduler`` (optionally with our preload) and two ``dask worker``s."""

    def __init__(self, directory: str, preload: bool):
        self.file = os.path.join(directory, "scheduler.json")
        args = [DASK, "scheduler", "--scheduler-file", self.file, "--port", "0",
                "--no-dashboard", "--host", "127.0.0.1"]
        if preload:
            args += ["--preload", "scatter_magics.dask.preload"]
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes = [subprocess.Popen(args, **quiet)]
        while not os.path.exists(self.file):
            time.sleep(0.05)
        for i in range(2):
            self.processes.append(subprocess.Popen(
                [DASK, "worker", "--scheduler-file", self.file, "--nthreads", "1",
                 "--name", f"worker-{i}", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                **quiet))
        import distributed

        self.client = distributed.Client(scheduler_file=self.file, set_as_default=False)
        self.client.wait_for_workers(2)
        self.scheduler = psutil.Process(self.processes[0].pid)

    def run_tasks(self) -> tuple[float, float]:
        cpu = self.scheduler.cpu_times()
        start = time.perf_counter()
        futures = self.client.map(inc, range(TASKS), key=[f"inc-{time.time_ns()}-{i}"
                                                           for i in range(TASKS)])
        self.client.gather(futures)
        wall = time.perf_counter() - start
        after = self.scheduler.cpu_times()
        del futures
        return wall, (after.user + after.system) - (cpu.user + cpu.system)

    def close(self) -> None:
        self.client.close()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def compare_plugin(rounds: int) -> list[tuple[str, float, float]]:
    from scatter_magics.backend import backend_for

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        plain, with_plugin = CLICluster(a, preload=False), CLICluster(b, preload=True)
        try:
            events = []
            subscription = backend_for(with_plugin.client).subscribe_events(
                lambda batch: events.append(len(batch)))
            plain.run_tasks(), with_plugin.run_tasks()  # warm-up
            samples = {"with": [], "without": []}
            for r in range(rounds):
                order = [("with", with_plugin), ("without", plain)]
                for side, cluster in (order if r % 2 == 0 else order[::-1]):
                    samples[side].append(cluster.run_tasks())
            subscription.close()
            assert sum(events) >= TASKS, "the subscriber saw the tasks' events"
        finally:
            plain.close()
            with_plugin.close()
    med = {side: [statistics.median(s[i] for s in samples[side]) for i in (0, 1)]
           for side in samples}
    return [(f"{TASKS:,} tiny tasks, wall time", med["with"][0], med["without"][0]),
            (f"{TASKS:,} tiny tasks, scheduler CPU", med["with"][1], med["without"][1])]


# ------------------------------------------------------------ report ---

def table(title: str, columns: tuple[str, str], rows) -> str:
    lines = [f"### {title}", "", f"| row | {columns[0]} | {columns[1]} | ratio |", "|---|---|---|---|"]
    for label, ours, theirs, *given in rows:  # (a paired row gives its ratio only)
        ratio = given[0] if given else ours / theirs
        cells = f"{fmt(ours)} | {fmt(theirs)}" if ours is not None else "– | –"
        lines.append(f"| {label} | {cells} | {ratio:.3f} |")
    return "\n".join(lines) + "\n"


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds >= 0.01 else f"{seconds * 1e6:.0f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default=None, help="write the markdown here")
    parser.add_argument("--only", choices=["magics", "plugin"], default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    magics = compare_magics(args.rounds) if args.only != "plugin" else []
    remote = []
    if args.only != "plugin":
        with tempfile.TemporaryDirectory() as directory:
            cluster = CLICluster(directory, preload=False)
            try:
                remote = compare_magics(args.rounds, cluster.file)
            finally:
                cluster.close()
    plugin = compare_plugin(args.rounds) if args.only != "magics" else []
    load_after = os.getloadavg()
    report = "\n".join([
        "# The Dask backend: magics vs distributed.Client, plugin vs none", "",
        f"Measured {datetime.date.today()} on {os.cpu_count()} cores by "
        f"`python -m benchmarks.dask_backend --rounds {args.rounds}` (what each row measures: "
        f"that module's docstring). Load average {json.dumps([round(x, 2) for x in load_before])} "
        f"at the start, {json.dumps([round(x, 2) for x in load_after])} at the end.", "",
        table("%scatter / %gather on a Dask LocalCluster (medians)", ("magics", "Client"), magics),
        table("%scatter / %gather on a `dask scheduler` process with two `dask worker`s, "
              "through %cluster connect (medians)", ("magics", "Client"), remote),
        table("The event plugin, with a subscriber watching every key (medians)",
              ("with plugin", "without"), plugin)])
    print(report)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
