"""Run the benchmark suite: scatter_magics' embedded cluster against Dask, Ray and ipyparallel.

    python -m benchmarks.run                  # full run; rewrites benchmarks/RESULTS.md
    python -m benchmarks.run --quick          # small sizes, one round: a smoke test (< 3 min)
    python -m benchmarks.run --only roundtrip --peers dask

Every cold start and every cluster session runs in a child process of its own (see
``processes.py``), so one system's imports, threads or leaks never touch another's numbers, and
a hung session is killed without losing the rest of the run. Inside each round the systems take
turns, in an order that rotates from round to round.
"""

import argparse
import dataclasses
import importlib.util
import os
import sys
import time

from benchmarks import limits, processes, report, workloads
from benchmarks.systems import MODULES

PEERS = ("dask", "ray", "ipyparallel")
RESULTS_MD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
COLD_START_TIMEOUT = 180


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes and one round (a smoke test, under 3 minutes)")
    parser.add_argument("--only", type=_names, default=workloads.NAMES, metavar="NAMES",
                        help=f"comma-separated workloads from: {', '.join(workloads.NAMES)}")
    parser.add_argument("--peers", type=_peers, default=PEERS, metavar="NAMES",
                        help="comma-separated peers to compare with (default: all; '' for none)")
    parser.add_argument("--rounds", type=int, default=None, metavar="N",
                        help="rounds to run (default: 3 for a full run, 1 with --quick)")
    parser.add_argument("--no-ours", action="store_true", help="run the peers only")
    parser.add_argument("--output", metavar="PATH", default=None,
                        help="markdown file to write (default: benchmarks/RESULTS.md for a full "
                             "run of everything, none otherwise)")
    return parser.parse_args(argv)


def _names(text):
    names = [n for n in text.split(",") if n]
    unknown = sorted(set(names) - set(workloads.NAMES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {unknown}; "
                                         f"choose from {', '.join(workloads.NAMES)}")
    return tuple(n for n in workloads.NAMES if n in names)


def _peers(text):
    names = [n for n in text.split(",") if n]
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown}; choose from {PEERS}")
    return tuple(names)


def installed(systems):
    """``(the systems whose package imports here, a message for each one skipped)``."""
    found, skipped = [], []
    for name in systems:
        if importlib.util.find_spec(MODULES[name]) is None:
            skipped.append(f"{name}: not installed, skipped "
                           f"(pip install -r benchmarks/requirements.txt).")
        else:
            found.append(name)
    return found, skipped


def cold_start(system, results):
    processes.wait_until_quiet()  # the previous system's processes have ended
    child = processes.run_child("benchmarks.coldstart", ["--system", system],
                                COLD_START_TIMEOUT)
    row = workloads.rows(None, ["cold_start"])[0]
    for record in child.records:
        results.add({"row": row, **record})
    _report_child(results, f"{system} cold start", child)
    return bool(child.records)


LIMIT_WORKLOADS = ("array", "fresh", "frame", "broadcast")
# Sessions a system gets to start before it is left out: Ray's node gives up after a
# fixed 30 s (ray/_private/node.py), which a loaded machine can exceed once.
START_ATTEMPTS = 3


def one_copy_limits(quick, results):
    """What one copy costs with no system at all (benchmarks/limits.py), once a round."""
    child = processes.run_child("benchmarks.limits", ["--quick"] if quick else [],
                                COLD_START_TIMEOUT)
    for record in child.records:
        if record["row"] in results.rows:
            results.add(record)
    _report_child(results, "the one-copy limits", child)


def session(system, n_workers, names, cfg, quick, seed, results):
    """One cluster session; returns False if the system could not even start."""
    args = ["--system", system, "--workers", str(n_workers), "--workloads", ",".join(names),
            "--seed", str(seed)] + (["--quick"] if quick else [])
    child = processes.run_child("benchmarks.session", args, cfg.session_timeout)
    for record in child.records:
        results.add(record)
    _report_child(results, f"{system} session ({n_workers} workers: {', '.join(names)})", child)
    return not any("start_error" in r for r in child.records)


def _report_child(results, what, child):
    if child.failure:
        first, _, log = child.failure.partition("\n")
        results.note(f"{what}: {first}.")
        print(f"!! {what}: {first}\n{log}", file=sys.stderr)
    if child.orphans:
        results.note(f"{what} left {len(child.orphans)} process(es) running, killed by the "
                     f"runner: {', '.join(child.orphans)}.")


def rotated(items, by):
    by %= max(len(items), 1)
    return items[by:] + items[:by]


def run_all(systems, names, cfg, quick, results):
    """Every round: cold starts, then each cluster session, the systems taking turns."""
    broken = set()
    plan = workloads.sessions(cfg, [n for n in names if n != "cold_start"])
    seed = 0
    for rnd in range(cfg.rounds):
        order = rotated(systems, rnd)
        for _ in range(cfg.cold_starts if "cold_start" in names else 0):
            for system in order:
                _progress(rnd, cfg, system, "cold start")
                cold_start(system, results)
        if set(names) & set(LIMIT_WORKLOADS):
            _progress(rnd, cfg, limits.LIMIT, "measured")
            one_copy_limits(quick, results)
        for n_workers, session_names in plan:
            for system in order:
                if system in broken:
                    continue
                _progress(rnd, cfg, system, f"{n_workers} workers: {','.join(session_names)}")
                for attempt in range(START_ATTEMPTS):
                    seed += 1
                    if session(system, n_workers, session_names, cfg, quick, seed, results):
                        break
                    results.note(f"{system}: a session failed to start (attempt {attempt + 1} "
                                 f"of {START_ATTEMPTS}).")
                else:
                    broken.add(system)
                    results.note(f"{system}: not run again after failing to start.")


def _progress(rnd, cfg, system, what):
    print(f"[{time.strftime('%H:%M:%S')}] round {rnd + 1}/{cfg.rounds} · {system} · {what}",
          file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = workloads.QUICK if args.quick else workloads.FULL
    if args.rounds is not None:
        cfg = dataclasses.replace(cfg, rounds=max(1, args.rounds))
    wanted = ([] if args.no_ours else [report.OURS]) + list(args.peers)
    systems, skipped = installed(wanted)
    columns = systems + ([limits.LIMIT] if set(args.only) & set(LIMIT_WORKLOADS) else [])
    results = report.Results(columns, workloads.rows(cfg, args.only))
    for message in skipped:
        print(message, file=sys.stderr)
        results.note(message)
    processes.compile_package()
    started, load_at_start = time.monotonic(), report.load_average()
    try:
        run_all(systems, args.only, cfg, args.quick, results)
    except KeyboardInterrupt:
        results.note("**Interrupted**: the run did not finish.")
    command = "python -m benchmarks.run" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    text = report.markdown(results, command, cfg, time.monotonic() - started,
                           load_at_start)
    print(text)
    output = args.output
    if output is None and not args.quick and args.only == workloads.NAMES:
        output = RESULTS_MD
    if output:
        with open(output, "w") as f:
            f.write(text)
        print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
