"""Descriptors a forked child of the cluster's owner must not keep.

A worker knows its owner died when its standard input (a pipe from the owner) or its
connection to the scheduler closes. ``close-on-exec`` does not help against a plain
``fork()`` without exec, which is what ``multiprocessing`` does by default on Linux: the
forked helper inherits the write end of every worker's stdin and every scheduler-side
socket, and as long as it lives the workers never see them close (issue 11, item 7).

So, in a forked child, each registered descriptor is replaced (``dup2``) by ``/dev/null``:
the number stays valid, so the child's copies of our objects can still close it
harmlessly, but the child no longer holds the pipe or the socket.

>>> import os
>>> read_end, write_end = os.pipe()
>>> keep_from_forked_children(write_end)  # a child forked now holds /dev/null there
>>> forget(write_end); os.close(write_end); os.close(read_end)
"""

from __future__ import annotations

import os
import threading

_fds: set[int] = set()
_lock = threading.Lock()


def keep_from_forked_children(fd: int) -> None:
    """Replace ``fd`` with /dev/null in every child this process forks from now on."""
    with _lock:
        _fds.add(fd)


def forget(fd: int) -> None:
    """Stop tracking ``fd`` (call before closing it: its number may be reused)."""
    with _lock:
        _fds.discard(fd)


def _drop_in_child() -> None:
    # Runs in the child right after fork(), in its only thread: no lock can be contended
    # except one held by a thread that no longer exists, so the set is read unlocked.
    fds = list(_fds)
    _fds.clear()
    if not fds:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in fds:
            try:
                os.dup2(null, fd, inheritable=False)
            except OSError:
                pass  # closed meanwhile: nothing is held
    finally:
        os.close(null)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)
