"""A/B of our own rows: this source tree against another (main's worktree, say), side by side.

``python -m benchmarks.ab --base /work/main --rounds 5 --only roundtrip,list,tasks``

Each round runs one session per tree, in an order that alternates between rounds, each a
child process (``benchmarks.session``) started in that tree's directory, so its package
(and its workers') is the one imported. The table shows, per row, the median over all
samples of each tree and their ratio; a change that makes a row slower shows there,
measured under the same load as the base.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

from benchmarks import workloads

HERE = pathlib.Path(__file__).resolve().parent.parent
SESSION_TIMEOUT = 600  # s


def session(tree: pathlib.Path, names: list[str], out: pathlib.Path, seed: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-m", "benchmarks.session", "--system", "scatter_magics",
                    "--workloads", ",".join(names), "--out", str(out), "--seed", str(seed)],
                   cwd=tree, env=env, timeout=SESSION_TIMEOUT, check=False)


def samples(path: pathlib.Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if "seconds" in record:
                found.setdefault(record["row"], []).append(record["seconds"])
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the other source tree (a worktree)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="roundtrip,list,tasks")
    args = parser.parse_args(argv)
    names = args.only.split(",")
    trees = {"this": HERE, "base": pathlib.Path(args.base).resolve()}
    with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
        outs = {label: pathlib.Path(tmp) / f"{label}.jsonl" for label in trees}
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for label in order:
                session(trees[label], names, outs[label], seed=round_)
        found = {label: samples(out) for label, out in outs.items()}
    print(f"| row | this ({HERE.name}) | base ({trees['base'].name}) | this / base |")
    print("| --- | --- | --- | --- |")
    for row in workloads.rows(workloads.FULL, names):
        this, base = found["this"].get(row), found["base"].get(row)
        if not this or not base:
            print(f"| {row} | {_cell(this)} | {_cell(base)} | – |")
            continue
        ratio = statistics.median(this) / statistics.median(base)
        print(f"| {row} | {_cell(this)} | {_cell(base)} | {ratio:.2f} |")


def _cell(values) -> str:
    if not values:
        return "–"
    median = statistics.median(values)
    text = f"{median * 1e6:.0f} µs" if median < 1e-3 else f"{median * 1e3:.1f} ms"
    return f"{text} (n={len(values)})"


if __name__ == "__main__":
    main()
