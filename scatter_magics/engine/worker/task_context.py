"""What a task sees of the worker running it: ``get_worker``, ``secede``, ``rejoin``,
``worker_client``, as in Dask.

A task that submits tasks and waits for them holds one of its worker's threads while it
waits; if every thread does so, nothing is left to run what they wait for. ``secede()``
hands the thread's slot back (the worker runs another task meanwhile) and ``rejoin()``
waits for a slot again; ``worker_client()`` does both around a block.

>>> def fib(n):                                            # doctest: +SKIP
...     if n < 2:
...         return n
...     with worker_client() as client:                    # seceded inside
...         a, b = client.submit(fib, n - 1), client.submit(fib, n - 2)
...         return a.result() + b.result()

The worker marks each of its task threads (:func:`serve`) and each task (``RUNNING``);
``get_client()`` (``scatter_magics.current_client``) returns the worker's own client on
those threads and the current client everywhere else.
"""

from __future__ import annotations

import contextlib
import threading

from ...current_client import get_client, serve_tasks
from .task_output import RUNNING

_thread = threading.local()  # a task thread: .worker (its task's key: task_output.RUNNING)
_process_worker = None  # the worker this process runs (a worker process has one)


def serve(worker) -> None:
    """Mark the calling thread as one of ``worker``'s task threads."""
    _thread.worker = worker
    serve_tasks(worker.client)


def set_process_worker(worker) -> None:
    """``worker`` is the one this process runs: :func:`get_worker` finds it off its threads
    too (in a function given to ``Client.run``, say)."""
    global _process_worker
    _process_worker = worker


def get_worker():
    """The worker running the calling task; ``ValueError`` outside any worker."""
    worker = getattr(_thread, "worker", None) or _process_worker
    if worker is None:
        raise ValueError("No worker found: get_worker() works inside a task, or a function "
                         "given to Client.run(), on a worker")
    return worker


def secede() -> None:
    """Give this task's thread back to the worker while it waits (for other tasks, say).

    The worker starts another thread if it needs one; :func:`rejoin` takes a slot back.
    """
    worker = get_worker()
    if worker.runner.secede():
        worker.task_seceded(getattr(RUNNING, "key", None))


def rejoin() -> None:
    """Wait for a free thread slot on this worker after :func:`secede`, and take it."""
    get_worker().runner.rejoin()


@contextlib.contextmanager
def worker_client(timeout: float | None = None, separate_thread: bool = True):
    """The worker's client for the block, with this task seceded meanwhile (as Dask's).

    ``timeout`` bounds connecting the worker's client (its first use only);
    ``separate_thread=False`` keeps the thread's slot (no secede).
    """
    worker = get_worker()
    client = worker.client(timeout) if timeout is not None else get_client()
    if separate_thread:
        secede()
    try:
        yield client
    finally:
        if separate_thread:
            rejoin()
