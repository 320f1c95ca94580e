"""Workers forked from one pre-imported template process (the fork server), owner side.

Starting a worker as ``python -m scatter_magics.engine.worker`` costs an interpreter start
and ~80 ms of CPU of imports, paid again by every worker, on the two cores a cold start
shares with the kernel's own imports (benchmarks/RESULTS.md, "Start-up"). Instead, each
owner process starts one template (``engine/worker/template.py``) that imports a worker's
modules once and forks a worker per request in about a millisecond, as
``multiprocessing``'s ``forkserver`` start method does. It is started as early as
possible (``template_spawn.prestart``: looking up ``Client`` or ``LocalCluster`` in the
package, the magics' first cluster; :func:`prestart`: a ``LocalCluster`` starting) so that
its imports overlap the owner's; ``template_spawn.py`` spawns it before this module is
imported. (Not at ``%load_ext``: a notebook that goes on to Dask must not run it.)

>>> server = shared()                                         # doctest: +SKIP
>>> proc = server.spawn(["--name", "worker-0", ...])          # doctest: +SKIP
>>> proc.stdin.write(b"<secret>\\n<scheduler address>\\n")    # doctest: +SKIP
>>> proc.wait()                                               # doctest: +SKIP

The handle a spawn returns, :class:`ForkedProcess`, answers as ``subprocess.Popen`` does
(``pid``, ``stdin``, ``poll``, ``wait``, ``kill``, ``returncode``), so supervision and
closing treat both kinds of worker alike. Messages, one pickled datagram each on a
``SOCK_SEQPACKET`` socket pair (the template's standard input):

- owner → template: ``{"op": "fork", "id", "argv", "cwd", "env"}`` with the worker's
  standard input (the read end of a pipe from us), output and error attached
  (``SCM_RIGHTS``), so it inherits what a spawned worker would; ``{"op": "kill", "pid",
  "signal"}`` (the template holds its children until it reaps them: no recycled pid is hit).
- template → owner: ``("forked", id, pid)``, ``("fork-failed", id, why)``,
  ``("exited", pid, returncode)`` (``subprocess``'s convention: ``-N`` for signal N).

**Ownership.** The template belongs to this module's :class:`ForkServer`, one per owner
process, and lives as long as the owner (as ``multiprocessing``'s fork server does), so a
cluster stopped and started again in a notebook forks at once. It ends at the owner's
exit (``atexit``), on :func:`stop`, or with the owner however it dies: its socket closes,
``PR_SET_PDEATHSIG`` (it is spawned by ``template_spawn``'s thread, which lives as long as it),
its parent pid changes. Its workers die with it (their own ``PR_SET_PDEATHSIG``) and with
the owner (their stdin pipe from us), so nothing outlives the owner.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import threading

from ..wire import inheritance
from .template_spawn import TEMPLATE_MODULE, SpawnedTemplate, available


logger = logging.getLogger(__name__)

MAX_REPLY = 4096  # bytes of one reply from the template
STOP_TIMEOUT = 5.0  # s the template gets to exit once asked


class _Ends:
    """``subprocess.Popen``'s ``poll`` and ``wait`` for a process whose end a thread of
    ours learns and reports (``returncode``, then ``_ended``)."""

    args: list[str] | str
    returncode: int | None
    _ended: threading.Event

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode


class ForkedProcess(_Ends):
    """A worker forked by the template: ``subprocess.Popen``'s interface, told by the
    template when it started (its pid) and how it ended (its returncode)."""

    def __init__(self, server: "ForkServer", args: list[str], stdin):
        self.args, self.stdin = args, stdin
        self.returncode: int | None = None
        self._server = server
        self._pid: int | None = None
        self._forked = threading.Event()  # set once _pid is known, or will never be
        self._ended = threading.Event()

    @property
    def pid(self) -> int | None:
        """The worker's pid; waits for the fork (the template may still be importing).

        ``None`` if the template could not fork it (``returncode`` then says 1).
        """
        self._forked.wait()
        return self._pid

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self.pid is not None:
            self._server.send({"op": "kill", "pid": self.pid, "signal": int(sig)})

    def _started(self, pid: int) -> None:
        self._pid = pid
        self._forked.set()

    def _ended_with(self, returncode: int) -> None:
        if self.returncode is None:
            self.returncode = returncode
        self._forked.set()  # (a worker never forked keeps pid None)
        self._ended.set()

    def __repr__(self) -> str:
        return f"<ForkedProcess pid={self._pid or '?'} returncode={self.returncode}>"


class TemplateProcess(_Ends):
    """The template, spawned by ``template_spawn`` (``os.posix_spawn``, before subprocess
    is imported): ``subprocess.Popen``'s ``pid``, ``poll``, ``wait`` and ``kill``.

    The thread that reads the template's replies reaps it (:meth:`reap`), once its socket
    closed; it waits for the exit without reaping first, so that :meth:`kill`, under the
    same lock, never signals a pid the kernel may have given to another process.
    """

    args = TEMPLATE_MODULE

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()
        self._ended = threading.Event()  # set once reaped

    def reap(self) -> int:
        try:
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            with self._lock:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # SIGCHLD ignored: the kernel reaped it (as Popen says)
            with self._lock:
                self.returncode = 0
        self._ended.set()
        return self.returncode

    def kill(self) -> None:
        with self._lock:
            if self.returncode is None:
                os.kill(self.pid, signal.SIGKILL)

    def __repr__(self) -> str:
        return f"<TemplateProcess pid={self.pid} returncode={self.returncode}>"


class ForkServer:
    """The template process (``spawned``, or spawned now) and the thread that reads its
    replies and reaps it."""

    def __init__(self, spawned: SpawnedTemplate | None = None):
        self._spawned = spawned or SpawnedTemplate()
        self._sock = socket.socket(fileno=self._spawned.control.detach())
        inheritance.keep_from_forked_children(self._sock.fileno())
        self._send_lock = threading.Lock()
        self._ids = itertools.count()
        self._waiting: dict[int, ForkedProcess] = {}  # request id → not forked yet
        self._children: dict[int, ForkedProcess] = {}  # pid → forked, not reported ended
        self._lock = threading.Lock()
        self.alive = True
        self.process = TemplateProcess(self._spawned.pid)
        self._thread = threading.Thread(target=self._run, name="scatter-magics-forkserver",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the thread ---
    def _run(self) -> None:
        try:
            while self._handle(self._sock.recv(MAX_REPLY)):
                pass
        except OSError:
            pass
        finally:
            self._template_ended()

    def _handle(self, data: bytes) -> bool:
        if not data:
            return False
        what, *rest = pickle.loads(data)
        with self._lock:
            if what == "forked":
                request_id, pid = rest
                proc = self._waiting.pop(request_id)
                self._children[pid] = proc
                proc._started(pid)
            elif what == "fork-failed":
                request_id, why = rest
                logger.error("the fork server could not start a worker: %s", why)
                self._waiting.pop(request_id)._ended_with(1)
            elif what == "exited":
                pid, returncode = rest
                proc = self._children.pop(pid, None)
                if proc is not None:
                    proc._ended_with(returncode)
        return True

    def _template_ended(self) -> None:
        """The template is gone; its workers got SIGTERM from it (PR_SET_PDEATHSIG)."""
        returncode = self.process.reap()
        self._spawned.release()  # its parent thread may end now
        with self._lock:
            self.alive = False
            unforked, forked = list(self._waiting.values()), list(self._children.values())
            self._waiting.clear()
            self._children.clear()
        if unforked or forked:
            logger.warning("the fork server exited (%s) with %d worker(s) it forked running "
                        "and %d not forked yet; they end with it (its error output, if "
                        "any, is above)", returncode, len(forked), len(unforked))
        for proc in unforked:
            proc._ended_with(returncode or 1)  # why it could not fork them: its own exit
        for proc in forked:
            proc._ended_with(-signal.SIGTERM)
        self._sock.close()

    # ------------------------------------------------------------ requests ---
    def spawn(self, args: list[str]) -> ForkedProcess:
        """Fork a worker running ``main(args)``; returns at once (the fork follows).

        Its standard input is a pipe from us, output and error are ours, and it gets our
        current working directory and environment, as a spawned process would.
        """
        read_end, write_end = os.pipe()
        try:
            proc = ForkedProcess(self, args, os.fdopen(write_end, "wb"))
            request_id = next(self._ids)
            with self._lock:
                if not self.alive:
                    raise RuntimeError("the fork server has exited")
                self._waiting[request_id] = proc
            msg = {"op": "fork", "id": request_id, "argv": list(args),
                   "cwd": os.getcwd(), "env": dict(os.environ)}
            try:
                self.send(msg, [read_end, 1, 2])
            except OSError as exc:
                with self._lock:
                    self._waiting.pop(request_id, None)
                raise RuntimeError(f"the fork server is gone: {exc}") from exc
        finally:
            os.close(read_end)  # the template has its own copy (SCM_RIGHTS) or none
        return proc

    def send(self, msg: dict, fds: list[int] = ()) -> None:
        with self._send_lock:
            socket.send_fds(self._sock, [pickle.dumps(msg)], list(fds))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the template (its workers with it) and wait for it."""
        try:
            self._sock.shutdown(socket.SHUT_WR)  # it reads end-of-file and exits
        except OSError:
            pass
        try:
            self.process.wait(timeout)  # reaped by the thread once its socket closed
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


# ------------------------------------------------------------ the owner's one ---

_server: ForkServer | None = None
_server_lock = threading.Lock()


def shared(spawned: SpawnedTemplate | None = None) -> ForkServer:
    """This process's fork server, started now if it is not running (with ``spawned``
    as its template, if given)."""
    global _server
    with _server_lock:
        if _server is None or not _server.alive:
            _server, spawned = ForkServer(spawned), None
        server = _server
    if spawned is not None:  # another thread started one meanwhile
        spawned.discard()
    return server


def prestart(spawned: SpawnedTemplate | None = None) -> None:
    """Start the fork server in the background, if workers could be forked from one;
    ``spawned``: its template, started already (``template_spawn.prestart``)."""
    if spawned is not None or available():
        try:
            shared(spawned)
        except OSError as exc:  # e.g. out of processes: the first cluster says so
            logger.debug("could not start the fork server: %r", exc)


@atexit.register
def stop() -> None:
    """End this process's fork server, if it runs (at exit, and for tests)."""
    global _server
    with _server_lock:
        server, _server = _server, None
    if server is not None:
        server.stop()


def _forget_inherited() -> None:
    # A child this process forks (multiprocessing's fork) inherits our object but not
    # its thread, and /dev/null in place of its socket (inheritance.py): it starts its own.
    global _server, _server_lock
    _server, _server_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited)
