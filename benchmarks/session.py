"""Child process: start one system, run workloads on it, write JSON lines, stop it.

``python -m benchmarks.session --system dask --workers 2 --workloads roundtrip,array --out F``

Each line of ``F`` is one record: a time sample ``{"row", "seconds", "nbytes"}``, a peak
``{"memory", "bytes"}``, ``{"row", "na"}``, ``{"row", "error"}``, ``{"note"}`` or
``{"start_error"}``. Lines are flushed as they come, so a session killed for hanging still
reports what it measured.
"""

import argparse
import json
import signal
import sys
import traceback

from benchmarks import workloads
from benchmarks.systems import SYSTEMS, make_system


def describe(exc):
    """``Type: message`` plus the innermost frame, short enough for a table note."""
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {frame[0].filename.split('/')[-1]}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {str(exc)[:300]}{where}"


def run(system, cfg, n_workers, names, emit, seed):
    session = workloads.Session(system, cfg, n_workers, emit, seed)
    workloads.warm_up(session)
    for name in names:
        session.row = name
        try:
            workloads.WORKLOADS[name](session)
        except Exception as exc:  # one broken workload must not hide the others
            emit({"row": session.row, "error": describe(exc)})
            traceback.print_exc()
            try:
                system.settle()
            except Exception:
                traceback.print_exc()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", required=True, choices=sorted(SYSTEMS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workloads", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    cfg = workloads.QUICK if args.quick else workloads.FULL
    # The runner ends a hung session with SIGTERM: turn it into SystemExit so `finally` runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with open(args.out, "a") as out:
        def emit(record):
            out.write(json.dumps({"system": args.system, **record}) + "\n")
            out.flush()

        system = make_system(args.system)
        try:
            try:
                system.start(args.workers)
            except Exception as exc:
                emit({"start_error": describe(exc)})
                raise
            run(system, cfg, args.workers, args.workloads.split(","), emit, args.seed)
        finally:
            system.close()


if __name__ == "__main__":
    main()
