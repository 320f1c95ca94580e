"""A task on a worker's thread: its call (given back if withdrawn; a coroutine function's
run to its end, as Dask's), and its error as the client will see it."""

from __future__ import annotations

import asyncio
import inspect
import traceback

from ...errors import TaskTraceback
from ..wire.serialize import Serialized, deserialize_task
from .task_output import RUNNING
from .tickets import TaskTicket

WITHDRAWN = object()  # what execute returns for a task given back to the scheduler


def execute(key, task: Serialized, inputs: dict, ticket: TaskTicket, on_start=None,
            timing: dict | None = None):
    """The task's value, or ``WITHDRAWN`` for a task given back (how long it ran: the
    runner's ``Ran``); ``timing`` gets the function's name (the task stream colours a
    bar by it)."""
    if not ticket.begin():
        return WITHDRAWN
    if on_start is not None:
        on_start()  # a pool thread picked the task up (task_start.StartWatch)
    RUNNING.key = key  # what it prints is this task's (task_output.py); secede() names it
    try:
        func, args, kwargs = deserialize_task(task, inputs)
        if timing is not None:
            timing["function"] = getattr(func, "__name__", type(func).__name__)
        if inspect.iscoroutinefunction(func):
            # Dask awaits it on the worker's loop; ours is another thread's, and this
            # task thread has none: the coroutine runs to its end on a loop of its own.
            return asyncio.run(func(*args, **kwargs))
        return func(*args, **kwargs)
    finally:
        RUNNING.key = None


def task_traceback(exc: BaseException) -> TaskTraceback:
    """``exc``'s traceback from the task's own first frame on (the worker's frames that
    called it are no news to the user), as text and as frames for ``Future.traceback()``."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and \
            tb.tb_frame.f_globals.get("__name__", "").startswith(__package__):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        from tblib import Traceback
    except ImportError:  # the text is still there; Future.traceback() gives None
        return TaskTraceback(text)
    return TaskTraceback(text, Traceback(tb).to_dict() if tb is not None else None)
