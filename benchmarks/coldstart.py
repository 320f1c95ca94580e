"""Child process: time a cold start of one system, imports included.

``python -m benchmarks.coldstart --system ray --out F`` writes ``{"seconds": ...}`` to ``F``.

The clock starts when this module starts running, in a fresh interpreter, before the system's
package is imported; it stops once the system has 2 workers, a scatter + gather round trip has
returned and one submitted task has returned its result. Interpreter start-up (the same for
every system) and shutdown are not counted. The harness itself imports only what the
interpreter has loaded at start-up (its two options are read without argparse, whose parser
imports shutil and gettext, ~5 ms here): what the clock counts is the system's start.
"""

import time

T0 = time.perf_counter()

import sys  # noqa: E402  (after the clock starts, on purpose)


def main(argv=None):
    args = _options(sys.argv[1:] if argv is None else argv)

    # Nothing here may import numpy or other heavy modules: the clock is running, and a
    # module the harness loads is one a system then finds already imported.
    from benchmarks.systems import make_system

    system = make_system(args["system"])
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
        import json  # (the clock has stopped)

        with open(args["out"], "w") as out:
            json.dump({"system": args["system"], **record}, out)


def _options(argv: list[str]) -> dict:
    """``--system NAME --out FILE``, both required."""
    options = dict(zip(argv[::2], argv[1::2]))
    if len(argv) != 4 or set(options) != {"--system", "--out"}:
        sys.exit("usage: python -m benchmarks.coldstart --system NAME --out FILE")
    return {"system": options["--system"], "out": options["--out"]}


if __name__ == "__main__":
    main()
