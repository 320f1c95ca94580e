"""The workers' side of the Dask backend: which tasks run, not merely wait in a queue.

A Dask scheduler only knows a task as ``processing`` (sent to a worker, where it may
still wait for a thread). :class:`StartReporter`, a ``WorkerPlugin`` named
``scatter-magics-starts``, watches each worker's ``executing`` transitions and sends the
keys that have run for ``REPORT_AFTER`` (50 ms, as the embedded engine), every
``REPORT_INTERVAL``, as one ``scatter-magics-started`` message on the worker's batched
stream; the scheduler plugin (:mod:`.plugin`) marks them ``running``.

Like :mod:`.plugin`, this module imports only the standard library, tornado and
distributed: it travels by value (``cloudpickle.register_pickle_by_value``, see
:mod:`.install`), so it runs on workers that do not have scatter_magics installed.

>>> client.register_plugin(StartReporter(), name=WORKER_PLUGIN_NAME)  # doctest: +SKIP
"""

from __future__ import annotations

import time

from distributed.diagnostics.plugin import WorkerPlugin
from tornado.ioloop import PeriodicCallback

WORKER_PLUGIN_NAME = "scatter-magics-starts"
STARTED_OP = "scatter-magics-started"  # worker -> scheduler: tasks running REPORT_AFTER
REPORT_AFTER = 0.05  # s a task runs before its worker says so (as the embedded engine)
REPORT_INTERVAL = 0.1  # s between a worker's looks at what it runs
_EXECUTING = frozenset({"executing", "long-running"})  # long-running: it seceded


class StartReporter(WorkerPlugin):
    """On each worker: tell the scheduler which tasks have run for ``REPORT_AFTER``.

    ``transition`` runs for every task state change on the worker (its event loop), so
    it only notes when a task began executing; every ``REPORT_INTERVAL`` one look sends
    the keys running long enough, once each, in one message (none while nothing runs
    that long, so thousands of tiny tasks send nothing).
    """

    name = WORKER_PLUGIN_NAME
    idempotent = True

    def setup(self, worker) -> None:
        self.worker = worker
        self.executing: dict = {}  # key -> when it began executing; None once reported
        # Tasks already running when the plugin arrives (it is installed on first use,
        # and taken off when the last client of ours leaves) count from now.
        now = time.monotonic()
        for key, ts in list(getattr(getattr(worker, "state", None), "tasks", {}).items()):
            if ts.state in _EXECUTING:
                self.executing[key] = now
        self._callback = PeriodicCallback(self.report, REPORT_INTERVAL * 1000)
        self._callback.start()

    def teardown(self, worker) -> None:
        self._callback.stop()

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish in _EXECUTING:
            self.executing.setdefault(key, time.monotonic())
        elif start in _EXECUTING:
            self.executing.pop(key, None)

    def report(self) -> None:
        if not self.executing:
            return
        since = time.monotonic() - REPORT_AFTER
        due = [key for key, began in self.executing.items()
               if began is not None and began <= since]
        if due:
            for key in due:
                self.executing[key] = None
            self.worker.batched_send({"op": STARTED_OP, "keys": due})
