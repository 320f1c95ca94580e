"""The order of queued tasks, as Dask orders them: ``TaskOptions.priority``.

A task's priority is ``(-user priority, generation, order)``, compared as tuples, lower
first: ``submit(priority=1)`` runs before ``priority=0``; then tasks of earlier batches
of submits (a burst of submits closer together than ``fifo_timeout``, 100 ms by default,
is one batch) before later ones; then in the order they came. Workers run their queued
tasks in this order (``engine/worker/runner.py``), and the scheduler hands out tasks that
waited for a worker in it.

>>> ordering = Ordering()
>>> ordering.options(None, now=0.0).priority, ordering.options({"priority": 1}, now=0.05).priority
((0, 1, 0), (-1, 1, 1))
>>> ordering.options({"retries": 2}, now=1.0)
TaskOptions(priority=(0, 2, 2), retries=2, resources=None, loose=False)
"""

from __future__ import annotations

import itertools

from .records import TaskOptions

DEFAULT_FIFO_TIMEOUT = 0.1  # s, Dask's "100 ms"


class Ordering:
    """Hands each submitted task its options, with its place in the order."""

    def __init__(self):
        self.generation = 0
        self._last = float("-inf")  # when the last task was submitted (monotonic s)
        self._order = itertools.count()

    def options(self, options: dict | None, now: float) -> TaskOptions:
        """``options`` (``engine/client/task_options.py``'s dict, None for defaults) as a
        :class:`TaskOptions`, for a task submitted at ``now``."""
        if now - self._last > (options.get("fifo_timeout", DEFAULT_FIFO_TIMEOUT) if options
                               else DEFAULT_FIFO_TIMEOUT):
            self.generation += 1
        self._last = now
        if not options:  # most tasks: no dict lookups, the defaults as they are
            return TaskOptions((0, self.generation, next(self._order)))
        return TaskOptions((-options.get("priority", 0), self.generation, next(self._order)),
                           options.get("retries", 0), options.get("resources"),
                           options.get("loose", False))
