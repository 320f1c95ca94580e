"""What a worker's tasks print, sent to the scheduler for the clients that hold their keys.

The capture itself (``sys.stdout``/``sys.stderr`` standing in per task, bounds on memory
and rate) is ``scatter_magics/task_capture.py``, which the Dask backend's worker plugin
shares. Here: which task a pool thread runs (:data:`RUNNING`, set around each task by
``task_call.execute``), and when the worker sends what waits: a task's output just before
its result (same connection, so a cell waiting for the result shows the output first),
the rest :data:`~scatter_magics.task_capture.INTERVAL` after it began to wait.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

from ...task_capture import INTERVAL, TaskCapture

RUNNING = threading.local()  # .key: the task this pool thread runs


class TaskOutput:
    """One worker's task output: captured from ``start()`` to ``close()``, sent by ``report``.

    Unlike a Dask worker's (``tee``), our workers' own stdout and stderr are the owner's
    (a Jupyter server's terminal): what a task prints goes to the notebook only.
    """

    def __init__(self, name: str, report: Callable[[dict], None]):
        self.name, self._report = name, report
        self.capture = TaskCapture(lambda: getattr(RUNNING, "key", None), tee=False,
                                   wake=self._waiting)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.capture.install()

    def close(self) -> None:
        self.capture.uninstall()
        self._loop = None

    def _waiting(self) -> None:
        """A task's thread has output waiting (and nothing else waited): send it soon."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.call_later, INTERVAL, self.send)

    def send(self, key=None) -> None:
        """Send task ``key``'s output (every task's: None), on the loop thread."""
        records = self.capture.take(key)
        if records:
            self._report({"op": "task-output", "worker": self.name, "records": records})
