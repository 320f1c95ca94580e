"""The command lines of a worker and of the fork server's template.

The owner writes both (``cluster/local.py``, ``cluster/template_spawn.py``); argparse
reads them, with its help at a fixed width: without one, argparse measures the terminal
when the first option is added and imports shutil for it, ~2 ms of every worker's and
the template's start, for a help text that only a person debugging reads.
"""

from __future__ import annotations

import argparse


class _HelpOf100Columns(argparse.HelpFormatter):
    def __init__(self, prog: str):
        super().__init__(prog, width=100)


def _parser(prog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, formatter_class=_HelpOf100Columns)


def worker_options(argv: list[str] | None) -> argparse.Namespace:
    """``python -m scatter_magics.engine.worker``'s options."""
    parser = _parser("python -m scatter_magics.engine.worker")
    parser.add_argument("--scheduler", help="the scheduler's address (default: the second "
                        "line of standard input, after the secret)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--nthreads", type=int, default=1)
    parser.add_argument("--memory-limit", type=int, default=0)
    parser.add_argument("--shm-prefix", default="", help="the owner's segments, unlinked on exit")
    parser.add_argument("--owner-pid", type=int, default=0, help="exit when this process ends")
    parser.add_argument("--replaces", help="the dead worker this one replaces")
    parser.add_argument("--resources", default="{}", help='what it offers tasks, as JSON: '
                        '{"GPU": 2}')
    parser.add_argument("--local-directory", help="where uploaded files go (on sys.path)")
    return parser.parse_args(argv)


def template_options(argv: list[str] | None) -> argparse.Namespace:
    """``python -m scatter_magics.engine.worker.template``'s one option."""
    parser = _parser("python -m scatter_magics.engine.worker.template")
    parser.add_argument("--owner-pid", type=int, required=True)
    return parser.parse_args(argv)
