"""A task on a worker's thread: its call, and its error from the task's own frames on."""

from __future__ import annotations

import time
import traceback

from ..wire.serialize import Serialized, deserialize_task
from .task_output import RUNNING
from .tickets import TaskTicket

WITHDRAWN = object()  # what execute returns for a task given back to the scheduler


def execute(key, task: Serialized, inputs: dict, ticket: TaskTicket, on_start=None,
            timing: dict | None = None):
    """``(value, seconds it ran)``, or ``(WITHDRAWN, 0.0)`` for a task given back;
    ``timing`` gets the function's name (the task stream colours a bar by it)."""
    if not ticket.begin():
        return WITHDRAWN, 0.0
    if on_start is not None:
        on_start()  # a pool thread picked the task up (task_start.StartWatch)
    RUNNING.key = key  # what the thread prints now is this task's (task_output.py)
    try:
        func, args, kwargs = deserialize_task(task, inputs)
        if timing is not None:
            timing["function"] = getattr(func, "__name__", type(func).__name__)
        start = time.perf_counter()
        value = func(*args, **kwargs)
        return value, time.perf_counter() - start
    finally:
        RUNNING.key = None


def task_traceback(exc: BaseException) -> str:
    """``exc``'s traceback from the task's own first frame on.

    The frames before it (this worker's task runner, ``execute``) say
    nothing about the task and would hide its frames in a long traceback. An exception
    raised before the task's function ran (its arguments did not unpickle) keeps them all.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code is not execute.__code__:
        tb = tb.tb_next
    tb = tb.tb_next if tb is not None and tb.tb_next is not None else exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb))
