"""Collect records from the child processes and write them as markdown tables.

Times are medians over every sample of every round; the ratio columns are
``peer median / our median``, so ``4.0×`` means scatter_magics took a quarter of the time.
"""

import collections
import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys

import psutil

OURS = "scatter_magics"
LIMIT = "one copy"  # benchmarks/limits.py: the data copied once, no system (a column, not a peer)
RATE_ROWS = ("content hash", "scatter of fresh", "scatter 1 GiB DataFrame")  # show GB/s
PACKAGES = ("scatter_magics", "numpy", "cloudpickle", "tornado", "dask", "distributed", "ray",
            "ipyparallel", "psutil")


class Results:
    """Every sample, peak, "not applicable", error and note, keyed by row and system."""

    def __init__(self, systems, rows):
        self.systems = list(systems)
        self.rows = list(rows)
        self.times = collections.defaultdict(list)  # (row, system) -> [seconds]
        self.nbytes = {}  # row -> bytes moved or hashed, for a GB/s figure
        self.cells = {}  # (row, system) -> "–" or "error", when there is no time
        self.memory = collections.defaultdict(list)  # (label, system) -> [{client, ...}]
        self.not_applicable = collections.defaultdict(list)  # (system, reason) -> [row]
        self.notes = []

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    def add(self, record):
        system, row = record.get("system"), record.get("row")
        if "seconds" in record:
            self.times[row, system].append(record["seconds"])
            if record.get("nbytes"):
                self.nbytes[row] = record["nbytes"]
            if row not in self.rows:
                self.rows.append(row)
        elif "memory" in record:
            self.memory[record["memory"], system].append(record["bytes"])
        elif "na" in record:
            self.cells.setdefault((row, system), "–")
            rows = self.not_applicable[system, record["na"]]
            if row not in rows:
                rows.append(row)
        elif "error" in record:
            self.cells[row, system] = "error"
            self.note(f"{system}, {row}: **error** {record['error']}")
        elif "start_error" in record:
            self.note(f"{system}: **could not start**: {record['start_error']}")
        elif "note" in record:
            self.note(f"{system}: {record['note']}.")

    def median(self, row, system):
        samples = self.times.get((row, system))
        return statistics.median(samples) if samples else None


def fmt_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_ratio(peer, ours):
    if peer is None or ours is None or ours <= 0:
        return "–"
    ratio = peer / ours
    return f"{ratio:.2g}×" if ratio < 10 else f"{ratio:.0f}×"


def time_table(results):
    peers = [s for s in results.systems if s not in (OURS, LIMIT)]
    has_ours = OURS in results.systems
    head = ["work", *results.systems] + [f"ours vs {p}" for p in peers if has_ours]
    lines = [_row(head), _row(["---"] * len(head))]
    for row in results.rows:
        cells = [row]
        for system in results.systems:
            median = results.median(row, system)
            cell = results.cells.get((row, system), "not run")
            if median is not None:
                cell = fmt_time(median)
                if row.startswith(RATE_ROWS) and row in results.nbytes:  # a rate target
                    cell += f" ({results.nbytes[row] / median / 1e9:.2g} GB/s)"
            cells.append(cell)
        if has_ours:
            ours = results.median(row, OURS)
            cells += [fmt_ratio(results.median(row, p), ours) for p in peers]
        lines.append(_row(cells))
    return "\n".join(lines)


def memory_table(results):
    labels = list(dict.fromkeys(label for label, _ in results.memory))
    if not labels:
        return "(no memory samples: the largest sizes were not run)"
    systems = [s for s in results.systems if s != LIMIT]
    head = ["run", *systems]
    lines = [_row(head), _row(["---"] * len(head))]
    for label in labels:
        cells = [label]
        for system in systems:
            peaks = results.memory.get((label, system))
            if not peaks:
                cells.append("–")
                continue
            top = {key: max(p[key] for p in peaks) for key in peaks[0]}
            cells.append(" / ".join(f"{max(top[k], 0) / 1e6:,.0f}" for k in ("client", "cluster", "shm")))
        lines.append(_row(cells))
    return "\n".join(lines)


def _row(cells):
    return "| " + " | ".join(cells) + " |"


def load_average():
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(load_at_start):
    """CPU, cores, memory, OS, Python and package versions, as markdown bullets."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)" if name != OURS else f"{name} (source tree)")
    return "\n".join([
        f"- CPU: {cpu}, {os.cpu_count()} logical cores",
        f"- Memory: {psutil.virtual_memory().total / 2**30:.1f} GiB",
        f"- OS: {platform.platform()}",
        f"- Python: {sys.version.split()[0]} ({sys.executable})",
        f"- Load average (1, 5, 15 min) at the start of the run: {load_at_start}; at the end: "
        f"{load_average()} (other work on the machine skews the times)",
        f"- Packages: {', '.join(versions)}",
        f"- scatter_magics commit: {_git_commit()}",
    ])


def _git_commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "-C", root, "log", "-1", "--format=%h %s"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "no commit yet"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def all_notes(results):
    """Markdown bullets: what has no counterpart where, then everything else noted."""
    lines = [f"- {system}: `–` in {len(rows)} row(s): {reason}."
             for (system, reason), rows in results.not_applicable.items()]
    return "\n".join(lines + [f"- {n}" for n in results.notes]) or "- none"


def fmt_duration(seconds):
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def markdown(results, command, cfg, elapsed, load_at_start):
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    samples = f"{cfg.rounds} round(s) × {cfg.inner} rep(s) per session"
    return "\n\n".join([
        "# Benchmark results",
        f"Generated by `{command}` on {when} in {fmt_duration(elapsed)} "
        f"({samples}; cold start {cfg.rounds} × {cfg.cold_starts}; the systems take turns "
        "in every round). What each row measures: `benchmarks/README.md`.",
        "## Machine\n\n" + machine(load_at_start),
        "## Time (median)\n\n" + time_table(results) + "\n\n"
        "`ours vs X` = X's median ÷ ours: above 1× scatter_magics is faster. "
        + (f"`{LIMIT}`: that data copied once, with no system around it (benchmarks/limits.py): "
           "no system that copies it can be faster, only level. "
           if LIMIT in results.systems else "") +
        "`–`: the system has no counterpart; `not run`: skipped or failed before this row.",
        "## Peak memory, MB: client RSS / cluster PSS / /dev/shm\n\n"
        + memory_table(results) + "\n\n"
        "Measured in the untimed first rep of each size; the highest over all rounds. Client: "
        "RSS of the driver process (with the scheduler, for Dask and scatter_magics) above its "
        "value when the run began, the source array already made. Cluster: proportional set "
        "size summed over every child process (shared pages count once). /dev/shm: allocated "
        "size of the shared-memory files the client and cluster hold (open, mapped, or named "
        "with one of their pids). Cluster and /dev/shm: above their values on the idle cluster "
        "after warm-up, so memory kept from earlier runs (a pool, an arena) counts.",
        "## Notes\n\n" + all_notes(results),
    ]) + "\n"
