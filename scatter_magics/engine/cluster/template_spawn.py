"""The fork server's template, spawned before anything else of ours is imported.

A cold start runs two paths at once: this process imports the client and the scheduler,
while the template (``engine/worker/template.py``) starts an interpreter and imports a
worker's modules. The template's path is the longer one (``benchmarks/RESULTS.md``,
"Start-up"), so every millisecond before its spawn adds to the whole start. The usual
tools cost ~10 ms to import at that point: threading, socket and signal bring enum,
functools and collections with them. So the spawn here uses only ``os.posix_spawn`` and
the built-in ``_socket`` and ``_thread``. ``forkserver.py`` then adopts what was started
and does the rest with the usual tools.

The spawning thread lives as long as the template does. The template asks for SIGTERM
when the thread that spawned it ends (``PR_SET_PDEATHSIG``), so a short-lived caller's
thread must not be its parent. That thread is a plain ``_thread`` thread. If threading
were first imported from a thread other than the main one, it would take that thread for
the main thread. So the spawning thread never imports threading: it spawns, then blocks
until the fork server has reaped the template (:meth:`SpawnedTemplate.release`).
"""

from __future__ import annotations

import _socket
import _thread
import os
import sys

TEMPLATE_MODULE = "scatter_magics.engine.worker.template"


def available() -> bool:
    """Whether workers can be forked from a template here: Linux (fork), descriptors
    passed over a socket (SCM_RIGHTS), ``posix_spawn``."""
    return (sys.platform.startswith("linux") and hasattr(_socket.socket, "sendmsg")
            and hasattr(os, "posix_spawn"))


def prestart() -> None:
    """Start this process's fork server in the background, its template first; nothing
    if one runs already (``forkserver.prestart``, which this imports only then)."""
    spawned = None
    if "scatter_magics.engine.cluster.forkserver" not in sys.modules and available():
        try:
            spawned = SpawnedTemplate()
        except OSError:
            pass  # (out of processes, say) forkserver.prestart tries again and says why
    from . import forkserver

    forkserver.prestart(spawned)


class SpawnedTemplate:
    """A template process just spawned: its ``pid`` and ``control``, our end of the
    socket pair that is its standard input.

    Raises what ``posix_spawn`` raised (e.g. ``OSError`` when out of processes).
    """

    def __init__(self):
        self.control, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        self.pid: int | None = None
        self._error: BaseException | None = None
        self._held = _thread.allocate_lock()  # released once the template is reaped
        self._held.acquire()
        spawned = _thread.allocate_lock()
        spawned.acquire()
        _thread.start_new_thread(self._spawn_and_hold, (theirs, spawned))
        spawned.acquire()  # the thread released it: spawned, or failed
        if self._error is not None:
            self.control.close()
            raise self._error

    def _spawn_and_hold(self, theirs: _socket.socket, spawned) -> None:
        try:
            self.pid = spawn(theirs.fileno())
        except BaseException as exc:  # told to the caller, in its thread
            self._error = exc
            self._held.release()
        finally:
            theirs.close()
            spawned.release()
        self._held.acquire()  # the template's parent thread, until release()

    def release(self) -> None:
        """End the spawning thread; call once the template has exited and is reaped."""
        self._held.release()

    def discard(self) -> None:
        """End a template no fork server adopted (another thread's was first)."""
        self.control.close()  # it reads end-of-file and exits
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.release()


def spawn(stdin_fd: int) -> int:
    """``python -m scatter_magics.engine.worker.template`` with ``stdin_fd`` as its
    standard input, in a session of its own (as Popen's ``start_new_session``); its pid.

    ``posix_spawn`` passes on only inheritable descriptors. Python opens none of ours
    inheritable. Popen's ``close_fds`` would close any that a library left inheritable;
    the template closes those itself, first thing (``template.main``).
    """
    args = [sys.executable, "-m", TEMPLATE_MODULE, "--owner-pid", str(os.getpid())]
    return os.posix_spawn(sys.executable, args, os.environ, setsid=True,
                          file_actions=[(os.POSIX_SPAWN_DUP2, stdin_fd, 0)])
