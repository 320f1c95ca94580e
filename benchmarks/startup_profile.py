"""Where a cold start's time goes: stages of the client, CPU of each process, imports.

``python -m benchmarks.startup_profile --runs 5`` starts ``Client(n_workers=2)`` in a fresh
interpreter ``--runs`` times (each run a child process of its own, as ``benchmarks.coldstart``
does) and prints, per stage, the median wall time since the clock started and the CPU
time the process had used by then (all threads), then the CPU time each worker process
(and the fork server, where there is one) had used once the client was usable. CPU times
hold on a loaded machine where wall times do not: they say what work there is, the wall
times how it overlapped. ``--imports`` adds ``-X importtime``'s heaviest modules of the
client's import and of a worker's. ``--package-path DIR`` profiles the scatter_magics
in ``DIR`` instead (another checkout: the "before" of a change), run from a scratch
directory so that ``python -m`` finds no other copy first.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks.processes import ROOT, child_env, compile_package

#: The child: stamps after each stage, then the CPU time of every process it started.
CHILD = r"""
import time, os, json, sys
T0 = time.perf_counter()
stamps = []
def stamp(stage):
    stamps.append((stage, time.perf_counter() - T0, time.process_time()))
import scatter_magics
stamp("import scatter_magics")
from scatter_magics import Client
stamp("import Client")
client = Client(n_workers=2, threads_per_worker=1)
stamp("Client(n_workers=2) returned")
assert client.gather(client.scatter(1)) == 1
stamp("first scatter + gather")
assert client.submit(abs, -2).result() == 2
stamp("first submit")
import psutil
me = psutil.Process()
children = {}
for child in me.children(recursive=True):
    try:
        cmd = " ".join(child.cmdline())
        name = "fork server" if "worker.template" in cmd else "worker"
        t = child.cpu_times()
        children.setdefault(name, []).append(t.user + t.system)
    except psutil.Error:
        pass
client.close()
json.dump({"stamps": stamps, "children": children}, open(sys.argv[1], "w"))
"""


#: The first %scatter of a fresh IPython session, from the line's start to its end.
FIRST_SCATTER = r"""
import time, json, sys
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("load_ext", "scatter_magics")
ip.user_ns["x"] = 41
start, cpu = time.perf_counter(), time.process_time()
ip.run_cell("%scatter x", store_history=False).raise_error()
first = time.perf_counter() - start, time.process_time() - cpu
ip.run_cell("y = %gather x", store_history=False).raise_error()
assert ip.user_ns["y"] == 41
ip.run_line_magic("cluster", "stop")
json.dump({"first": first}, open(sys.argv[1], "w"))
"""


PACKAGE_PATH: str | None = None  # --package-path: profile the scatter_magics found there


def _env_and_cwd(scratch: str) -> tuple[dict, str]:
    env, cwd = child_env("profile"), ROOT
    if PACKAGE_PATH:
        env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PATH, env["PYTHONPATH"]])
        cwd = scratch  # not the repository: `python -m` looks there first
    return env, cwd


def _child(code: str, out: str, **kwargs) -> None:
    env, cwd = _env_and_cwd(os.path.dirname(out))
    subprocess.run([sys.executable, "-c", code, out], cwd=cwd, env=env, check=True,
                   timeout=120, **kwargs)


def first_scatter(out: str) -> tuple[float, float]:
    """(wall, CPU) seconds of the first ``%scatter`` in a fresh IPython session."""
    _child(FIRST_SCATTER, out, capture_output=True)
    with open(out) as f:
        return tuple(json.load(f)["first"])


def run_once(out: str) -> dict:
    _child(CHILD, out)
    with open(out) as f:
        return json.load(f)


def import_profile(statement: str, top: int) -> tuple[list[tuple[str, int]], int]:
    """The ``top`` modules by their own import time (µs), and the total, importing
    ``statement`` (``-X importtime``: "self | cumulative | name" per module)."""
    with tempfile.TemporaryDirectory() as scratch:
        env, cwd = _env_and_cwd(scratch)
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], cwd=cwd,
                              env=env, capture_output=True, text=True, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        head, _, rest = line.partition("|")
        cumulative, _, name = rest.partition("|")
        own = head.removeprefix("import time:").strip()
        if own.isdigit() and cumulative.strip().isdigit():
            rows.append((name.strip(), int(own)))
    return sorted(rows, key=lambda r: -r[1])[:top], sum(us for _, us in rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--imports", action="store_true")
    parser.add_argument("--package-path", metavar="DIR")
    args = parser.parse_args(argv)
    global PACKAGE_PATH
    PACKAGE_PATH = args.package_path and os.path.abspath(args.package_path)
    compile_package()
    if PACKAGE_PATH:
        import compileall

        compileall.compile_dir(os.path.join(PACKAGE_PATH, "scatter_magics"), quiet=1)
    print(f"load average at start: {os.getloadavg()}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            runs.append(run_once(os.path.join(tmp, f"{i}.json")))
    print(f"{'stage':32} {'wall ms':>9} {'client CPU ms':>14}   (medians of {args.runs} runs)")
    for i, (stage, _, _) in enumerate(runs[0]["stamps"]):
        wall = statistics.median(r["stamps"][i][1] for r in runs) * 1e3
        cpu = statistics.median(r["stamps"][i][2] for r in runs) * 1e3
        print(f"{stage:32} {wall:9.1f} {cpu:14.1f}")
    for name in sorted({n for r in runs for n in r["children"]}):
        per_run = [sorted(r["children"].get(name, [])) for r in runs]
        cpu = [statistics.median(x) * 1e3 for x in zip(*per_run)] if all(per_run) else []
        print(f"CPU of each {name} process (ms): {', '.join(f'{c:.1f}' for c in cpu)}")
    with tempfile.TemporaryDirectory() as tmp:
        firsts = [first_scatter(os.path.join(tmp, f"f{i}.json")) for i in range(args.runs)]
    print(f"first %scatter in a fresh IPython (starts the cluster): "
          f"{statistics.median(w for w, _ in firsts) * 1e3:.1f} ms wall, "
          f"{statistics.median(c for _, c in firsts) * 1e3:.1f} ms CPU of the kernel (medians)")
    print(f"load average at end: {os.getloadavg()}")
    if args.imports:
        for label, statement in (("client", "from scatter_magics import Client"),
                                 ("worker", "import scatter_magics.engine.worker.process")):
            top, total = import_profile(statement, 12)
            print(f"\n-X importtime, {label} ({statement}): {total / 1e3:.1f} ms in all; "
                  "the modules that took longest themselves:")
            for module, us in top:
                print(f"  {us / 1e3:6.1f} ms  {module}")


if __name__ == "__main__":
    main()
