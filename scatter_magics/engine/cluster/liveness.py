"""Busy or frozen: what a silent worker's process is doing, read from ``/proc`` by its owner.

A worker whose task holds the GIL (``sum(range(4 * 10**8))``, a long regular expression,
some pandas calls) cannot send a heartbeat: its event loop waits for the GIL. Yet its
process runs, and its CPU time advances. A frozen one does not: stopped (SIGSTOP, a
debugger; state ``T``/``t``), or asleep with no CPU time spent (a deadlock, a wait that
never ends). The owner of the process reads both from ``/proc`` (psutil), which no task
in the worker can hold up.

>>> import os
>>> watch = ProcessWatch()
>>> first = watch.look(os.getpid())     # this process, running this line
>>> _ = sum(range(3 * 10**6))           # ~30 ms of CPU, the GIL held throughout
>>> watch.look(os.getpid())
'busy'
>>> watch.look(2**22 + 12345)           # no such process
'gone'
"""

from __future__ import annotations

import time

# CPU seconds a process must spend between two looks to count as busy. Looks come every
# 0.5 s (the scheduler's heartbeat check); a worker whose task holds the GIL spends
# ~0.5 s, an idle or blocked one well under a millisecond (its heartbeat thread alone).
BUSY_CPU = 0.01
STALE = 2.0  # s; an older look (the worker spoke since) tells nothing about now
# psutil's STATUS_* values, spelled out: psutil is imported only when a worker falls
# silent (importing it cost ~14 ms of every client's cold start).
_STOPPED = frozenset({"stopped", "tracing-stop"})
_GONE = frozenset({"zombie", "dead"})


class ProcessWatch:
    """Each watched process's CPU time at the last look, to tell busy from frozen.

    :meth:`look` answers ``"busy"`` (running, CPU time advancing since the last look),
    ``"frozen"`` (stopped, or no CPU time spent) or ``"gone"`` (exited, a zombie). The
    first look at a process (or one after a pause) has nothing to compare with: it is
    ``"busy"`` if the process is running on a CPU right now, else ``"frozen"``.
    """

    def __init__(self):
        self._cpu: dict[int, tuple] = {}  # pid -> (CPU seconds, when) at the last look

    def look(self, pid: int) -> str:
        import psutil

        try:
            process = psutil.Process(pid)
            with process.oneshot():
                status = process.status()
                times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._cpu.pop(pid, None)
            return "gone"
        except psutil.AccessDenied:  # not ours to read: say nothing new about it
            return "frozen"
        if status in _GONE:
            self._cpu.pop(pid, None)
            return "gone"
        cpu, now = times.user + times.system, time.monotonic()
        before = self._cpu.get(pid)
        self._cpu[pid] = (cpu, now)
        if status in _STOPPED:
            return "frozen"
        if before is None or now - before[1] > STALE:
            return "busy" if status == "running" else "frozen"
        return "busy" if cpu - before[0] >= BUSY_CPU else "frozen"

