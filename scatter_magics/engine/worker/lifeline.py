"""How a worker process dies with the process that started it (its owner).

Three ways, because each alone misses a case (docs/internals.md, "Owner death, even
with a forked child"): standard input closing (the owner's end of the pipe),
``PR_SET_PDEATHSIG``'s SIGTERM when the owner's spawning thread ends, and a watch of
the parent pid (a child the owner forked may hold the pipe open). A worker whose owner was killed also unlinks
the owner's shared memory, which nobody else is left to remove.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import select
import signal
import sys
import time

from ..shm.cleanup import unlink_segments

logger = logging.getLogger("scatter_magics.engine.worker")

OWNER_CHECK_INTERVAL = 0.5  # s between checks that the owner process still lives
OWNER_GONE_WAIT = 1.0  # s a worker that lost the scheduler waits to see if the owner died
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def exit_when_owner_dies(shm_prefix: str, owner_pid: int) -> None:
    """Wait until the owner's end of stdin closes, or the owner is gone; then exit at once.

    The pipe alone is not enough: a child the owner forked without exec inherits its
    write end (the owner makes it /dev/null there, see ``inheritance.py``; this is the
    second line of defence), so the owner's pid is watched too.
    """
    while True:
        readable, _, _ = select.select([0], [], [], OWNER_CHECK_INTERVAL)
        if readable and not os.read(0, 1 << 16):  # raw: no buffered-reader lock at shutdown
            break
        if owner_pid and os.getppid() != owner_pid:
            break  # re-parented: the owner died
    _end_now(shm_prefix)


def _end_now(shm_prefix: str, *_signal) -> None:
    """Exit at once, removing the owner's shared memory (it could not, if it was killed).

    A parent that closed us on purpose has already unlinked it; every worker trying too
    is fine.
    """
    if shm_prefix:
        unlink_segments(shm_prefix)
    os._exit(0)


def _on_sigterm(shm_prefix: str, owner_pid: int, *_signal) -> None:
    """Exit; remove the owner's shared memory only if the owner is gone.

    PR_SET_PDEATHSIG's signal comes when the spawning *thread* dies, which for a killed
    owner is a moment before the whole process is gone and we are re-parented: so wait
    for that briefly. A SIGTERM from anyone else (``kill <pid>``) must not unlink
    segments the owner and the other workers still use.
    """
    _end_now(shm_prefix if owner_gone(owner_pid) else "")


def die_with_owner(shm_prefix: str, owner_pid: int) -> None:
    """Ask Linux for SIGTERM when the owner's spawning thread ends, and exit on it.

    ``PR_SET_PDEATHSIG`` (prctl(2)) fires however the owner ends, even when a child
    it forked still holds our pipe. The owner spawns us from a thread that lives as
    long as the cluster (``supervisor.py``), since the signal follows that thread.
    """
    signal.signal(signal.SIGTERM, functools.partial(_on_sigterm, shm_prefix, owner_pid))
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            logger.debug("prctl(PR_SET_PDEATHSIG) is not available")
    if owner_pid and os.getppid() != owner_pid:
        _end_now(shm_prefix)  # the owner died before we asked


def owner_gone(owner_pid: int, wait: float = OWNER_GONE_WAIT) -> bool:
    """Whether the owner died: we were re-parented, now or within ``wait`` seconds.

    Its sockets close a moment before the kernel re-parents its children.
    """
    deadline = time.monotonic() + wait
    while owner_pid and os.getppid() == owner_pid:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
