"""The work every system does, the sizes for full and quick runs, and the row names.

A workload is a function of a :class:`Session` (a started system plus shared data). It times
only the operations named in its row and reports each sample through ``session.emit``; data is
made, checked and freed outside the timed region. Every value scattered is fresh (a new first
element, a new range of ints) so that no system can answer from a cache of an earlier rep.
"""

import dataclasses
import time

import numpy as np

from benchmarks import remote
from benchmarks.memory import PeakMemory
from benchmarks.systems import NotApplicable

MB = 10**6


@dataclasses.dataclass(frozen=True)
class Config:
    rounds: int  # outer repetitions: the systems take turns inside each round
    inner: int  # repetitions of each workload inside one cluster session
    cold_starts: int  # cold starts per system per round
    roundtrip_iters: int
    array_mb: tuple
    broadcast_mb: tuple
    broadcast_workers: tuple
    list_len: int
    n_tasks: int
    hash_mb: int
    fresh_mb: int  # "scatter of fresh N MB": no buffer pool or arena to reuse
    frame_mib: int  # a pandas DataFrame of this many MiB
    session_timeout: float  # seconds before a hung session is killed


FULL = Config(rounds=3, inner=2, cold_starts=2, roundtrip_iters=200, array_mb=(8, 80, 800),
              broadcast_mb=(100, 800), broadcast_workers=(2, 4), list_len=10_000,
              n_tasks=1_000, hash_mb=800, fresh_mb=200, frame_mib=1024, session_timeout=900)
QUICK = Config(rounds=1, inner=2, cold_starts=1, roundtrip_iters=50, array_mb=(8, 80),
               broadcast_mb=(80,), broadcast_workers=(2, 4), list_len=1_000, n_tasks=200,
               hash_mb=80, fresh_mb=200, frame_mib=64, session_timeout=240)

#: Workload names, in table order; ``cold_start`` runs in its own process (coldstart.py).
NAMES = ("cold_start", "roundtrip", "array", "fresh", "frame", "split", "broadcast", "list",
         "tasks", "spread", "tokenize")
# Issue 19's placement case: (tasks, seconds each, workers after scale(), threads each).
SPREAD = (40, 0.5, 5, 4)


def rows(cfg, names=NAMES):
    """Row names of the time table, in order, for the selected workloads."""
    out = []
    for name in names:
        if name == "cold_start":
            out.append("cold start to a usable client, 2 workers")
        elif name == "roundtrip":
            out.append("scatter + gather of one int, round trip")
        elif name == "array":
            for mb in cfg.array_mb:
                out += [f"scatter {mb} MB array", f"gather {mb} MB array",
                        f"scatter {mb} MB array, direct, no hash",
                        f"gather {mb} MB array, direct"]
        elif name == "fresh":
            out.append(fresh_row(cfg.fresh_mb))
        elif name == "frame":
            out += [f"scatter {_size(cfg.frame_mib)} DataFrame",
                    f"gather {_size(cfg.frame_mib)} DataFrame"]
        elif name == "split":
            out += split_rows(cfg.frame_mib)
        elif name == "broadcast":
            out += [broadcast_row(mb, n) for mb in cfg.broadcast_mb
                    for n in cfg.broadcast_workers]
        elif name == "list":
            out.append(f"scatter + gather of a {cfg.list_len:,}-element list")
        elif name == "tasks":
            out.append(f"{cfg.n_tasks:,} trivial tasks submitted and gathered")
        elif name == "spread":
            out.append(spread_row())
        elif name == "tokenize":
            out.append(f"content hash of {cfg.hash_mb} MB (tokenize)")
    return out


def spread_row():
    n_tasks, seconds, n_workers, threads = SPREAD
    ideal = n_tasks * seconds / (n_workers * threads)
    return (f"{n_tasks} tasks of {seconds:g} s on one worker's small input, "
            f"{n_workers} workers × {threads} threads (ideal {ideal:g} s)")


def fresh_row(mb):
    return f"scatter of fresh {mb} MB"


def _size(mib):
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


def split_rows(mib):
    size = _size(mib)
    return [f"split {size} DataFrame, a piece per worker (%scatter df --split)",
            f"gather {size} DataFrame from its pieces, joined (%gather df)"]


def broadcast_row(mb, n_workers):
    return f"broadcast {mb} MB to {n_workers} workers, a task on each"


def sessions(cfg, names):
    """``[(n_workers, workload names)]``: the cluster sessions a system runs per round."""
    on_two = [n for n in names if n not in ("cold_start", "spread")]
    if 2 not in cfg.broadcast_workers and "broadcast" in on_two:
        on_two.remove("broadcast")
    plan = [(2, on_two)] if on_two else []
    if "broadcast" in names:
        plan += [(n, ["broadcast"]) for n in cfg.broadcast_workers if n != 2]
    if "spread" in names:  # it makes (and scales) a cluster of its own
        plan.append((1, ["spread"]))
    return plan


class Session:
    """A started system, the run's config, fresh data, and where to report samples."""

    def __init__(self, system, cfg, n_workers, emit, seed=0):
        self.system = system
        self.cfg = cfg
        self.n_workers = n_workers
        self.emit = emit
        self.row = None  # the row being measured, named in an error report
        self.idle = None  # memory sample of the started, warmed-up, empty cluster
        self._next = seed * 10**9
        self._arrays = {}

    def fresh(self, n=1):
        """The first of ``n`` ints never used before in this session."""
        start, self._next = self._next, self._next + n
        return start

    def array(self, mb):
        """A random float64 array of ``mb`` MB whose first element is fresh."""
        if mb not in self._arrays:
            rng = np.random.default_rng(mb)
            self._arrays[mb] = rng.random(mb * MB // 8)
        array = self._arrays[mb]
        array[0] = self.fresh()
        return array

    def sample(self, row, seconds, nbytes=None):
        self.emit({"row": row, "seconds": seconds, "nbytes": nbytes})

    def not_applicable(self, row, reason):
        self.emit({"row": row, "na": reason})

    def memory(self, label, enabled):
        """A :class:`PeakMemory` whose result is reported under ``label`` (or a no-op)."""
        return _ReportedPeak(self, label) if enabled else _NoPeak()


class _ReportedPeak(PeakMemory):
    def __init__(self, session, label):
        super().__init__()
        self.session, self.label = session, label

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if exc[0] is None:
            # The client from the start of this run (its source array is already there); the
            # cluster and /dev/shm from the idle cluster, so memory kept from earlier runs
            # (a pool, an arena, a leak) counts too.
            peak = {key: self.peak[key] - self.session.idle[key] for key in self.peak}
            peak["client"] = self.result()["client"]
            self.session.emit({"memory": self.label, "bytes": peak})


class _NoPeak:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def owned(session, value):
    """``value`` as the client's own writable array: a read-only view is copied (and noted)."""
    if isinstance(value, np.ndarray) and not value.flags.writeable:
        session.emit({"note": "gather returned a read-only array; the time includes a copy"})
        return value.copy()
    return value


def warm_up(s):
    """Run each operation once, untimed: first calls import modules and start processes."""
    for step in (lambda: s.system.roundtrip(-1), lambda: s.system.run_tasks([-1]),
                 lambda: s.system.touch_all(s.system.broadcast(np.zeros(1024)))):
        try:
            step()
        except NotApplicable:
            pass
    s.system.settle()
    s.idle = PeakMemory().sample()


# Round trips timed together: each sample is the mean of a batch, so work a system
# defers past one call (ours queues up to 8 small scatters for its loop thread, and the
# ninth waits for them) is counted in the batch that caused it, not left out of a median.
ROUNDTRIP_BATCH = 20


def roundtrip(s):
    s.row = rows(s.cfg, ["roundtrip"])[0]
    for _ in range(s.cfg.inner):
        for _ in range(max(1, s.cfg.roundtrip_iters // ROUNDTRIP_BATCH)):
            start = s.fresh(ROUNDTRIP_BATCH)
            outs = []
            t0 = time.perf_counter()
            for value in range(start, start + ROUNDTRIP_BATCH):
                outs.append(s.system.roundtrip(value))
            s.sample(s.row, (time.perf_counter() - t0) / ROUNDTRIP_BATCH)
            assert outs == list(range(start, start + ROUNDTRIP_BATCH)), "round trip changed a value"
    s.system.settle()


def array(s):
    for mb in s.cfg.array_mb:
        for direct in (False, True):
            _array_scatter_gather(s, mb, direct)


def _reps(s):
    """``[False, True, True, ...]``: is each rep timed? The first is not: it warms what a
    system keeps between calls (a buffer pool, an arena, a connection), so that the variants
    of one size, run one after the other, are compared in the same steady state. It also
    samples memory, which would cost the timed reps CPU (a thread reading /proc)."""
    return [False] + [True] * s.cfg.inner


def _array_scatter_gather(s, mb, direct):
    suffix = (", direct, no hash", ", direct") if direct else ("", "")
    scatter_row, gather_row = f"scatter {mb} MB array{suffix[0]}", f"gather {mb} MB array{suffix[1]}"
    watch = mb == max(s.cfg.array_mb)
    for timed in _reps(s):
        data = s.array(mb)
        try:
            with s.memory(f"{mb} MB scatter then gather{suffix[0]}", watch and not timed):
                s.row = scatter_row
                t0 = time.perf_counter()
                handle = s.system.scatter(data, direct=direct)
                t1 = time.perf_counter()
                s.row = gather_row
                out = owned(s, s.system.gather(handle, direct=direct))
                t2 = time.perf_counter()
        except NotApplicable as exc:
            s.not_applicable(scatter_row, str(exc))
            s.not_applicable(gather_row, str(exc))
            return
        assert out.shape == data.shape and out[0] == data[0], "gathered the wrong array"
        if timed:
            s.sample(scatter_row, t1 - t0, data.nbytes)
            s.sample(gather_row, t2 - t1, data.nbytes)
        del handle, out
        s.system.settle()


def fresh(s):
    """A scatter into memory never used before: what a pool keeps is given back first.

    The steady-state rows reuse what a system kept from the previous rep (our shared-memory
    pool); this row measures the first scatter of a session, which must take new pages.
    """
    s.row = fresh_row(s.cfg.fresh_mb)
    for timed in _reps(s):
        data = s.array(s.cfg.fresh_mb)
        s.system.drop_reusable()
        t0 = time.perf_counter()
        handle = s.system.scatter(data)
        seconds = time.perf_counter() - t0
        if timed:
            s.sample(s.row, seconds, data.nbytes)
        out = owned(s, s.system.gather(handle))
        assert out.shape == data.shape and out[0] == data[0], "gathered the wrong array"
        del handle, out
        s.system.settle()


def frame(s):
    """Scatter, then gather, a pandas DataFrame of ``frame_mib`` MiB (8 float64 columns)."""
    import pandas as pd

    size = _size(s.cfg.frame_mib)
    scatter_row, gather_row = f"scatter {size} DataFrame", f"gather {size} DataFrame"
    n_rows = s.cfg.frame_mib * 2**20 // 64
    rng = np.random.default_rng(1)
    df = pd.DataFrame({f"c{i}": rng.random(n_rows) for i in range(8)})
    for timed in _reps(s):
        df.iloc[0, 0] = s.fresh()  # new content each rep
        with s.memory(f"{size} DataFrame scatter then gather", not timed):
            s.row = scatter_row
            t0 = time.perf_counter()
            handle = s.system.scatter(df)
            t1 = time.perf_counter()
            s.row = gather_row
            out = owned_frame(s, s.system.gather(handle))
            t2 = time.perf_counter()
        assert out.shape == df.shape and out.iloc[0, 0] == df.iloc[0, 0], "gathered the wrong frame"
        if timed:
            s.sample(scatter_row, t1 - t0, s.cfg.frame_mib * 2**20)
            s.sample(gather_row, t2 - t1, s.cfg.frame_mib * 2**20)
        del handle, out
        s.system.settle()


def split(s):
    """Cut the same DataFrame into a piece per worker and scatter the pieces; gather them
    and join them back into one frame (ours: the magics, as a notebook runs them)."""
    import pandas as pd

    scatter_row, gather_row = split_rows(s.cfg.frame_mib)
    n_rows = s.cfg.frame_mib * 2**20 // 64
    rng = np.random.default_rng(1)
    df = pd.DataFrame({f"c{i}": rng.random(n_rows) for i in range(8)})
    for timed in _reps(s):
        df.iloc[0, 0] = s.fresh()  # new content each rep
        with s.memory(f"{_size(s.cfg.frame_mib)} DataFrame split then gathered", not timed):
            s.row = scatter_row
            t0 = time.perf_counter()
            handle = s.system.split_scatter(df, s.n_workers)
            t1 = time.perf_counter()
            s.row = gather_row
            out = owned_frame(s, s.system.split_gather(handle))
            t2 = time.perf_counter()
        assert out.shape == df.shape and out.iloc[0, 0] == df.iloc[0, 0], "gathered the wrong frame"
        assert out.index.equals(df.index), "the pieces came back out of order"
        if timed:
            s.sample(scatter_row, t1 - t0, s.cfg.frame_mib * 2**20)
            s.sample(gather_row, t2 - t1, s.cfg.frame_mib * 2**20)
        del handle, out
        s.system.settle()


def owned_frame(s, frame):
    """``frame`` as one the client can modify: a frame over read-only memory is copied."""
    try:
        frame.iloc[0, 0] = frame.iloc[0, 0]
    except ValueError:  # "assignment destination is read-only"
        s.emit({"note": "gather returned a read-only DataFrame; the time includes a copy"})
        return frame.copy()
    return frame


def broadcast(s):
    if s.n_workers not in s.cfg.broadcast_workers:
        return
    for mb in s.cfg.broadcast_mb:
        s.row = broadcast_row(mb, s.n_workers)
        watch = mb == max(s.cfg.broadcast_mb)
        for timed in _reps(s):
            data = s.array(mb)
            expected = remote.touch(data)[1]
            with s.memory(f"{mb} MB broadcast to {s.n_workers} workers", watch and not timed):
                t0 = time.perf_counter()
                handle = s.system.broadcast(data)
                touched = s.system.touch_all(handle)
                seconds = time.perf_counter() - t0
            if timed:
                s.sample(s.row, seconds, data.nbytes)
            pids = {pid for pid, _ in touched}
            assert len(pids) == s.n_workers, f"tasks ran in {len(pids)} processes"
            assert {c for _, c in touched} == {expected}, "a replica differs from the data"
            del handle
            s.system.settle()


def lists(s):
    s.row = rows(s.cfg, ["list"])[0]
    n = s.cfg.list_len
    for _ in range(s.cfg.inner):
        start = s.fresh(n)
        items = list(range(start, start + n))
        try:
            t0 = time.perf_counter()
            out = s.system.gather_many(s.system.scatter_many(items))
            s.sample(s.row, time.perf_counter() - t0)
        except NotApplicable as exc:
            return s.not_applicable(s.row, str(exc))
        assert list(out) == items, "gathered list differs"
        del out
        s.system.settle()


def tasks(s):
    s.row = rows(s.cfg, ["tasks"])[0]
    n = s.cfg.n_tasks
    for _ in range(s.cfg.inner):
        start = s.fresh(n)
        t0 = time.perf_counter()
        out = s.system.run_tasks(range(start, start + n))
        s.sample(s.row, time.perf_counter() - t0)
        assert list(out) == list(range(start + 1, start + n + 1)), "wrong task results"
        s.system.settle()


def spread(s):
    """Issue 19's placement case: where tasks reading one worker's small input run."""
    s.row = spread_row()
    run = getattr(s.system, "spread", None)
    if run is None:
        return s.not_applicable(s.row, "no cluster to scale")
    for _ in range(s.cfg.inner):
        try:
            seconds, per_worker = run(*SPREAD)
        except NotApplicable as exc:
            return s.not_applicable(s.row, str(exc))
        s.sample(s.row, seconds)
        s.emit({"note": f"tasks per worker in the {s.row[:8]}… row: {per_worker}"})


def tokenize(s):
    s.row = rows(s.cfg, ["tokenize"])[0]
    for _ in range(s.cfg.inner):
        data = s.array(s.cfg.hash_mb)
        try:
            t0 = time.perf_counter()
            s.system.tokenize(data)
            s.sample(s.row, time.perf_counter() - t0, data.nbytes)
        except NotApplicable as exc:
            return s.not_applicable(s.row, str(exc))


WORKLOADS = {"roundtrip": roundtrip, "array": array, "fresh": fresh, "frame": frame,
             "split": split, "broadcast": broadcast, "list": lists,
             "tasks": tasks, "spread": spread, "tokenize": tokenize}
