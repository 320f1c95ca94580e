"""How a worker process dies with the process that started it (its owner).

Three ways, because each alone misses a case (docs/internals.md, "Owner death, even
with a forked child"): standard input closing (the owner's end of the pipe),
``PR_SET_PDEATHSIG``'s SIGTERM when the owner's spawning thread ends, and a watch of
the parent pid (a child the owner forked may hold the pipe open). The parent is the owner,
or the fork server it started (``template.py``), which dies with it. A worker whose owner
was killed also unlinks the owner's shared memory, which nobody else is left to remove.
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


def exit_when_owner_dies(shm_prefix: str, owner_pid: int, parent_pid: int | None = None) -> None:
    """Wait until the owner's end of stdin closes, or our parent is gone; then exit at once.

    The pipe alone is not enough: a child the owner forked without exec inherits its
    write end (the owner makes it /dev/null there, see ``inheritance.py``; this is the
    second line of defence), so the parent's pid is watched too. The parent is the owner,
    or the fork server the owner started (``template.py``), which dies with it.
    """
    parent_pid = owner_pid if parent_pid is None else parent_pid
    while True:
        readable, _, _ = select.select([0], [], [], OWNER_CHECK_INTERVAL)
        if readable and not os.read(0, 1 << 16):  # raw: no buffered-reader lock at shutdown
            _end_now(shm_prefix)  # the owner closed the pipe (closing us) or died
        if parent_pid and os.getppid() != parent_pid:
            # Re-parented: the owner died, or only its fork server did (then the owner
            # and the other workers still use the segments).
            _end_now(shm_prefix if owner_gone(owner_pid, parent_pid) else "")


def _end_now(shm_prefix: str, *_signal) -> None:
    """Exit at once, removing the owner's shared memory (it could not, if it was killed).

    A parent that closed us on purpose has already unlinked it; every worker trying too
    is fine.
    """
    if shm_prefix:
        unlink_segments(shm_prefix)
    os._exit(0)


def _on_sigterm(shm_prefix: str, owner_pid: int, parent_pid: int, *_signal) -> None:
    """Exit; remove the owner's shared memory only if the owner is gone.

    PR_SET_PDEATHSIG's signal comes when the spawning *thread* dies, which for a killed
    owner is a moment before the whole process is gone and we are re-parented: so wait
    for that briefly. A SIGTERM from anyone else (``kill <pid>``), or from the death of
    the fork server alone, must not unlink segments the owner and the other workers use.
    """
    _end_now(shm_prefix if owner_gone(owner_pid, parent_pid) else "")


def die_with_parent(shm_prefix: str, owner_pid: int, parent_pid: int | None = None) -> None:
    """Ask Linux for SIGTERM when our parent's spawning thread ends, and exit on it.

    ``PR_SET_PDEATHSIG`` (prctl(2)) fires however the parent ends, even when a child
    the owner forked still holds our pipe. The owner spawns us (or the fork server) from
    a thread that lives as long as we should (``supervisor.py``, ``forkserver.py``),
    since the signal follows that thread.
    """
    parent_pid = owner_pid if parent_pid is None else parent_pid
    signal.signal(signal.SIGTERM,
                  functools.partial(_on_sigterm, shm_prefix, owner_pid, parent_pid))
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            logger.debug("prctl(PR_SET_PDEATHSIG) is not available")
    if parent_pid and os.getppid() != parent_pid:
        _end_now(shm_prefix if owner_gone(owner_pid, parent_pid) else "")  # died before we asked


def owner_gone(owner_pid: int, parent_pid: int | None = None,
               wait: float = OWNER_GONE_WAIT) -> bool:
    """Whether the owner died, now or within ``wait`` seconds.

    When the owner is our parent, its death shows as our re-parenting, which comes a
    moment after its sockets close. When a fork server is our parent, the owner is
    another process: gone once it has exited (a zombie counts: it runs no more).
    """
    parent_pid = owner_pid if parent_pid is None else parent_pid
    deadline = time.monotonic() + wait
    while owner_pid and not _has_exited(owner_pid, parent_pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _has_exited(owner_pid: int, parent_pid: int) -> bool:
    if owner_pid == parent_pid:
        return os.getppid() != owner_pid
    try:
        with open(f"/proc/{owner_pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]  # the field after "(comm)"
        return state in (b"Z", b"X")
    except FileNotFoundError:
        return True
    except (OSError, IndexError):  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(owner_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def read_line(what: str) -> str:
    """A line of standard input (the secret, the scheduler's address), ``what`` it is
    named in the error if it ends first. Byte by byte, unbuffered: the rest of stdin is
    the owner-watch thread's (``exit_when_owner_dies``)."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(0, 1)
        if not chunk:
            raise SystemExit(f"no {what} on standard input")
        line += chunk
    return line.decode().strip()
