"""What a Dask scheduler remembers for our views: memory over time, the task stream, and
every key's state in one answer.

:class:`Recorder` is a ``SchedulerPlugin`` (name ``scatter-magics-recorder``,
idempotent), installed beside :mod:`.plugin`'s by the client (``EventHub.install``) and
by the Jupyter server's probe of a registered Dask cluster. It keeps, cheaply:

- a sample a second of each worker's process memory and data held (what the heartbeats
  already brought to ``WorkerState``), for the last five minutes: a bounded deque, one
  tuple per second (``scatter_magics.history`` turns it into the REST API's ``history``);
- one tuple per task that left ``processing`` for ``memory`` or ``erred``, with the
  ``startstops`` and ``thread`` its worker reported (as Dask's own ``TaskStreamPlugin``
  keeps them), for the last minute (``scatter_magics.task_stream.from_dask`` makes our
  records of them).

Its handlers answer ``scatter_magics_overview`` (every worker, and every key as
``[key, status, workers, nbytes, type]``, which ``scatter_magics.summary`` counts as it
counts ours), ``scatter_magics_history``, ``scatter_magics_tasks`` (``since`` a cursor)
and ``scatter_magics_datasets`` (the published datasets, :mod:`.published`). Nothing is
sent unless asked.

Like :mod:`.plugin`, this module imports only the standard library, tornado,
distributed and :mod:`.published` (which imports nothing), so a client can ship it by
value to a scheduler without scatter_magics.
"""

from __future__ import annotations

import time
from collections import deque

from distributed.diagnostics.plugin import SchedulerPlugin
from tornado.ioloop import PeriodicCallback

from .published import published_datasets

NAME = "scatter-magics-recorder"
SAMPLE_INTERVAL = 1.0  # s between memory samples
HISTORY_SAMPLES = 300  # five minutes of them
TASK_SPAN = 60.0  # s of tasks kept
TASK_LIMIT = 20_000  # tasks kept at most

_STATUS = {"memory": "finished", "erred": "error"}


def key_status(ts) -> str | None:
    """Our status for a Dask ``TaskState``; None for one on its way out (nobody wants it).

    Scattered data (no ``run_spec``) out of memory is lost: Dask cannot recompute it."""
    if ts.state == "memory":
        return "finished"
    if ts.state == "erred":
        return "error"
    if ts.state == "forgotten" or (ts.state == "released" and not ts.who_wants):
        return None
    return "lost" if ts.run_spec is None else "pending"


class Recorder(SchedulerPlugin):
    """Memory samples and ended tasks, kept on the scheduler; answered on request."""

    name = NAME
    idempotent = True

    def __init__(self):
        self.scheduler = None
        self.samples: deque = deque(maxlen=HISTORY_SAMPLES)  # (time, ((addr, mem, held), ...))
        self.names: dict[str, str] = {}  # address -> worker name, kept after it left
        self.tasks: deque = deque(maxlen=TASK_LIMIT)  # (key, worker, thread, startstops, status)
        self.index = 0  # tasks recorded so far: a reader's cursor
        self._callback: PeriodicCallback | None = None

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        scheduler.handlers.update({
            "scatter_magics_overview": self.overview,
            "scatter_magics_history": self.history,
            "scatter_magics_tasks": self.task_records,
            "scatter_magics_datasets": lambda: published_datasets(self.scheduler),
        })
        self._callback = PeriodicCallback(self.sample, SAMPLE_INTERVAL * 1000)
        self._callback.start()
        self.sample()

    async def close(self) -> None:
        if self._callback is not None:
            self._callback.stop()
        if self.scheduler is not None:
            for name in ("scatter_magics_overview", "scatter_magics_history",
                         "scatter_magics_tasks", "scatter_magics_datasets"):
                self.scheduler.handlers.pop(name, None)

    # ---------------------------------------------------------------- recording ---
    def sample(self) -> None:
        workers = self.scheduler.workers.values()
        for ws in workers:
            self.names[ws.address] = str(ws.name)
        self.samples.append((time.time(), tuple(
            (ws.address, ws.memory.process, ws.nbytes) for ws in workers)))

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        # Runs inside the transition loop: one comparison, and a tuple per ended task.
        if start == "processing" and finish in _STATUS and kwargs.get("startstops"):
            self.tasks.append((str(key), kwargs.get("worker"), kwargs.get("thread"),
                               kwargs["startstops"], _STATUS[finish]))
            self.index += 1

    # ---------------------------------------------------------------- answers ---
    def overview(self) -> dict:
        """Every worker's own fields, and ``[key, status, workers, nbytes, type]`` per key."""
        workers = [{"address": ws.address, "name": str(ws.name), "nthreads": ws.nthreads,
                    "memory_limit": ws.memory_limit or 0, "memory": ws.memory.process,
                    "status": "running" if ws.status.name == "running" else ws.status.name}
                   for ws in self.scheduler.workers.values()]
        keys = []
        for ts in self.scheduler.tasks.values():
            status = key_status(ts)
            if status is not None:
                holders = sorted(ws.address for ws in ts.who_has or ())
                keys.append([str(ts.key), status, holders,
                             ts.nbytes if ts.nbytes >= 0 else None, ts.type or None])
        return {"workers": workers, "keys": keys}

    def history(self) -> dict:
        return {"samples": [[t, [list(w) for w in ws]] for t, ws in self.samples],
                "names": dict(self.names), "interval": SAMPLE_INTERVAL}

    def task_records(self, since: int = 0) -> dict:
        """The tasks after cursor ``since`` that ended in the last minute."""
        now = time.time()
        new = min(max(0, self.index - since), len(self.tasks))
        oldest = now - TASK_SPAN
        records = []
        for i in range(len(self.tasks) - new, len(self.tasks)):
            key, worker, thread, startstops, status = self.tasks[i]
            if startstops and max(s["stop"] for s in startstops) >= oldest:
                records.append([key, worker, thread, list(startstops), status])
        return {"index": self.index, "now": now, "tasks": records}
