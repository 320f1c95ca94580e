"""Child process: time a cold start of one system, imports included.

``python -m benchmarks.coldstart --system ray --out F`` writes ``{"seconds": ...}`` to ``F``.

The clock starts when this module starts running, in a fresh interpreter, before the system's
package is imported; it stops once the system has 2 workers, a scatter + gather round trip has
returned and one submitted task has returned its result. Interpreter start-up (the same for
every system) and shutdown are not counted.
"""

import time

T0 = time.perf_counter()

import argparse  # noqa: E402  (after the clock starts, on purpose)
import json  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    # Nothing here may import numpy or other heavy modules: the clock is running, and a
    # module the harness loads is one a system then finds already imported.
    from benchmarks.systems import make_system

    system = make_system(args.system)
    record = {"error": "interrupted"}
    try:
        system.start(2)
        assert system.roundtrip(1) == 1
        assert list(system.run_tasks([1])) == [2]
        record = {"seconds": time.perf_counter() - T0}
    except Exception as exc:
        from benchmarks.session import (
            describe,  # imports numpy: only once it has failed
        )

        record = {"error": describe(exc)}
        raise
    finally:
        system.close()
        with open(args.out, "w") as out:
            json.dump({"system": args.system, **record}, out)


if __name__ == "__main__":
    main()
