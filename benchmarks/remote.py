"""The functions that run on workers, shared by every system so each does the same work.

Workers import this module by name (the runner puts the repository on ``PYTHONPATH``), so
functions are never shipped differently from one system to the next.
"""

import os

PAGE = 4096


def inc(x):
    """The trivial task: ``inc(1) == 2``."""
    return x + 1


def pid_after(seconds, *inputs):
    """Sleep ``seconds`` (the task's work) and say which process ran it."""
    import time

    time.sleep(seconds)
    return os.getpid()


def touch(array):
    """Read one byte of every 4 KiB page of ``array`` and return ``(pid, checksum)``.

    A replica counts as usable only once the worker can read all of it: lazily mapped memory
    (shared memory, a memory map) pays its page faults here, not later. The pid lets the caller
    check that every worker ran the task.
    """
    pages = array.reshape(-1).view("u1")[::PAGE]
    return os.getpid(), int(pages.sum())


class Toucher:
    """A Ray actor body: one long-lived process per "worker" that can touch a replica."""

    def touch(self, array):
        return touch(array)
