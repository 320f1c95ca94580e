"""What tasks print on a Dask cluster, in the notebook: capture on the workers, relay on
the scheduler, show in the kernel.

- :class:`OutputCapture`, a ``WorkerPlugin``, puts ``task_capture.py``'s streams in each
  worker (``tee``: the worker's own log still gets everything, as before). The task a
  thread runs is ``Worker.active_threads[thread id]``, which Dask sets around each task.
  When a task leaves ``executing`` its output is sent first, on the worker's batched
  stream, so it reaches the scheduler (and the client) before the task's result; the rest
  every ``INTERVAL`` while tasks print. Each message is one op, :data:`OUTPUT_OP`.
- :class:`OutputRelay`, a ``SchedulerPlugin``, handles that op: each record goes to the
  clients that want its key (``TaskState.who_wants``), as one event per client on its own
  topic (``log_event``), which the client receives on its own connection
  (``subscribe_topic``). Output of keys nobody wants goes nowhere else.
- ``install.install`` registers both (after the event plugin: a worker stream op without
  a handler on the scheduler would be an error there; the capture as every worker plugin
  of ours, unregistered at once if refused) and :func:`subscribe` subscribes the client,
  whose handler passes each batch to ``task_output.show``. The last client of ours to
  leave takes both off with the event plugin (``ScatterMagicsPlugin._take_off``).

Both plugins are always shipped by value (``cloudpickle.register_pickle_by_value``, with
``task_capture.py``): a worker that joins later unpickles them with nothing of ours
installed, and must start and run as it would without them. This module imports only
the standard library, distributed and ``task_capture.py`` at its top.
"""

from __future__ import annotations

import logging
import sys
import threading

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from ..task_capture import INTERVAL, TaskCapture

logger = logging.getLogger("scatter_magics.dask.task_output")

CAPTURE_NAME = "scatter-magics-output"
RELAY_NAME = "scatter-magics-output-relay"
OUTPUT_OP = "scatter-magics-output"  # worker -> scheduler: {"name", "records"}
TOPIC_PREFIX = "scatter-magics-output-"  # + client id: scheduler -> that client
_EXECUTING = frozenset({"executing", "long-running"})


class OutputCapture(WorkerPlugin):
    """On each worker: what its tasks print, sent to the scheduler (module docstring)."""

    name = CAPTURE_NAME
    idempotent = True

    def setup(self, worker) -> None:
        self.worker = worker
        threads = worker.active_threads  # thread id -> the key it runs, set by Dask
        # A worker of its own process keeps its log (tee). One in the process of one of
        # our clients (Client(processes=False)) does not: its output would show twice,
        # and in a kernel a task's thread may carry a finished cell's context, where
        # its print would be lost (task_output.py writes in the running cell's).
        here = "scatter_magics.task_output" in sys.modules
        self.capture = TaskCapture(lambda: threads.get(threading.get_ident()),
                                   tee=not here, wake=self._waiting)
        self.capture.install()

    def teardown(self, worker) -> None:
        self.capture.uninstall()

    def transition(self, key, start, finish, **kwargs) -> None:
        # On the worker's loop, before the instructions of this transition (a finished
        # task's result among them) are sent: its output goes first.
        if start in _EXECUTING and finish not in _EXECUTING:
            self.send(key)

    def _waiting(self) -> None:  # a task's thread: the first output waiting
        loop = self.worker.loop
        loop.add_callback(loop.call_later, INTERVAL, self.send)

    def send(self, key=None) -> None:
        records = self.capture.take(key)
        if records:
            self.worker.batched_send({"op": OUTPUT_OP, "name": str(self.worker.name),
                                      "records": records})


class OutputRelay(SchedulerPlugin):
    """On the scheduler: each worker's task output to the clients that want the keys."""

    name = RELAY_NAME
    idempotent = True

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        scheduler.stream_handlers[OUTPUT_OP] = self.relay

    async def close(self) -> None:
        self.scheduler.stream_handlers.pop(OUTPUT_OP, None)

    def relay(self, worker: str, name: str, records: list) -> None:
        by_client: dict[str, list] = {}
        tasks = self.scheduler.tasks
        for record in records:
            ts = tasks.get(_as_key(record["key"]))
            for cs in (ts.who_wants or ()) if ts is not None else ():
                by_client.setdefault(cs.client_key, []).append(record)
        for client, chosen in by_client.items():
            self.scheduler.log_event(TOPIC_PREFIX + client, {"worker": name, "records": chosen})


def _as_key(key):
    """A key as Dask holds it: msgpack brings a tuple key as a list."""
    return tuple(_as_key(part) for part in key) if isinstance(key, list) else key


def subscribe(client, show) -> None:
    """Pass what ``client``'s tasks print to ``show(worker, records)`` (``task_output.show``),
    once the plugins are on its cluster (``install.install_output``)."""
    def on_output(event) -> None:
        _, message = event
        records = [dict(r, key=_as_key(r["key"])) for r in message["records"]]
        show(message["worker"], records)

    client.subscribe_topic(TOPIC_PREFIX + client.id, on_output)
