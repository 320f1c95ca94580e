"""Memory over time: per worker, process memory and data held, a sample a second.

:class:`MemoryHistory` is a bounded ring buffer fed by what heartbeats already bring (the
scheduler keeps each worker's last ``memory`` and ``nbytes`` anyway): :meth:`update`
only overwrites two numbers, and :meth:`tick`, called from a timer the owner already
runs, appends one tuple a second. Nothing is computed or sent until someone asks for
:meth:`as_dict` (the REST API's ``history``, ``%cluster``'s timelines). Measured in
benchmarks/RESULTS-history.md.

The embedded scheduler keeps one; on Dask the scheduler plugin keeps the same samples
(it cannot import this package) and :func:`columns` turns them into the same answer.

>>> h = MemoryHistory()
>>> h.update("tcp://a", "worker-0", memory=30, nbytes=10)
>>> h.tick(now=100.0), h.tick(now=100.5)
(True, False)
>>> h.update("tcp://a", "worker-0", nbytes=20); h.tick(now=101.0)
True
>>> h.update("tcp://b", "worker-1"); h.tick(now=102.0)  # no heartbeat from it yet
True
>>> h.as_dict()["workers"]
[{'address': 'tcp://a', 'name': 'worker-0', 'memory': [30, 30, 30], 'nbytes': [10, 20, 20]}]
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .summary import natural_order

INTERVAL = 1.0  # s between samples
SPAN = 300.0  # s of history kept: the last five minutes
BRIEF_STEP = 5  # the listing's history (a sidebar card) keeps every fifth sample

Sample = tuple  # (time, ((address, memory, nbytes), ...))


class MemoryHistory:
    """The last ``span`` seconds of each worker's memory and data held."""

    def __init__(self, interval: float = INTERVAL, span: float = SPAN):
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=int(span / interval))
        # address -> [memory, nbytes], latest; memory None until the worker's first
        # heartbeat: a sample leaves it out rather than draw a 0 it never had (a view
        # that joined late drew a dip to 0 in every worker's line at its first sample).
        self.current: dict[str, list] = {}
        self.names: dict[str, str] = {}  # address -> name, kept after the worker left
        self._last = float("-inf")

    def update(self, address: str, name: str | None = None, *, memory: int | None = None,
               nbytes: int | None = None) -> None:
        """The latest numbers of one worker (either may be left out: it keeps its value)."""
        now = self.current.get(address)
        if now is None:
            now = self.current[address] = [None, 0]
        if name is not None:
            self.names[address] = name
        if memory is not None:
            now[0] = memory
        if nbytes is not None:
            now[1] = nbytes

    def remove(self, address: str) -> None:
        """The worker left: later samples leave it out (earlier ones keep it)."""
        self.current.pop(address, None)

    def tick(self, now: float, slack: float = 0.0) -> bool:
        """Take a sample if ``interval - slack / 2`` s passed since the last one: a caller
        whose timer fires every ``slack`` s samples on the tick nearest each ``interval``,
        whatever its timer's jitter. (``interval - slack`` took every tick of a 0.5 s
        timer: 300 samples then held 2.5 minutes, not the five the listing promises.)"""
        if now - self._last < self.interval - slack / 2:
            return False
        self._last = now
        self.samples.append((now, tuple((a, m, b) for a, (m, b) in self.current.items()
                                        if m is not None)))
        return True

    def as_dict(self, step: int = 1) -> dict[str, Any]:
        """Every ``step``-th sample, newest last, as :func:`columns` writes them."""
        return columns(list(self.samples), self.names, step=step, interval=self.interval)


def columns(samples: list[Sample], names: dict[str, str], *, step: int = 1,
            interval: float = INTERVAL) -> dict[str, Any]:
    """The JSON form of a history: ``{"interval", "times", "workers": [{"address", "name",
    "memory", "nbytes"}]}``, one list entry per sample in ``times`` (null where the worker
    was not there), workers by name (``worker-2`` before ``worker-10``).

    The newest sample is always kept, so a thinned history still ends now.
    """
    if step > 1 and samples:
        samples = samples[(len(samples) - 1) % step::step]
    seen: dict[str, None] = {}
    for _, workers in samples:
        for address, _, _ in workers:
            seen.setdefault(address, None)
    by_name = sorted(seen, key=lambda a: (natural_order(names.get(a, a)), a))
    order = {address: i for i, address in enumerate(by_name)}
    memory = [[None] * len(samples) for _ in order]
    nbytes = [[None] * len(samples) for _ in order]
    for i, (_, workers) in enumerate(samples):
        for address, mem, held in workers:
            memory[order[address]][i] = mem
            nbytes[order[address]][i] = held
    return {"interval": interval * step, "times": [round(t, 3) for t, _ in samples],
            "workers": [{"address": a, "name": names.get(a, a), "memory": memory[j],
                         "nbytes": nbytes[j]} for a, j in order.items()]}
