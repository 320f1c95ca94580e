"""The fork server: one process that has imported a worker's modules and forks workers.

``python -m scatter_magics.engine.worker.template --owner-pid PID`` is started once per
owner process (``engine/cluster/forkserver.py``, which also describes the messages). A
worker started as ``python -m scatter_magics.engine.worker`` pays an interpreter start and
~80 ms of CPU of imports (asyncio, uvloop, cloudpickle, our wire modules), every worker
again; a worker forked from here pays ~1 ms, and starts with all of it imported — as
``multiprocessing``'s ``forkserver`` start method does.

Its standard input is its end of a ``SOCK_SEQPACKET`` socket pair with the owner: one
datagram per message, pickled, with descriptors attached (``SCM_RIGHTS``). It dies with its
owner as a worker does (``lifeline.py``): when that socket closes, on
``PR_SET_PDEATHSIG``'s SIGTERM, or when its parent pid changes; the workers it forked then
get their own ``PR_SET_PDEATHSIG`` (they ask for it, with us as their parent) and their
standard input, a pipe from the owner, closes too. It starts no thread and no event loop,
so forking it is safe; each child resets what this process set up (signal handlers, the
wake-up pipe) before it runs the worker.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import sys
import traceback

import encodings.idna  # noqa: F401  (asyncio encodes the scheduler's host with it)

from . import lifeline
from . import process  # the point of this process: a worker's imports, made once
from .command_line import template_options

try:  # what wire.loop.new_event_loop() imports on its first call, once for every worker
    import uvloop  # noqa: F401
except ImportError:
    pass

try:
    from setproctitle import getproctitle, setproctitle
except ImportError:  # optional: then forked workers show the template's command line
    setproctitle = None

MAX_MESSAGE = 1 << 20  # bytes of one request (an environment of a few KiB in practice)
MAX_FDS = 3  # a worker's standard input, output and error


class Template:
    """The fork server's state: its socket to the owner, its children, its wake-up pipe."""

    def __init__(self, control: socket.socket, owner_pid: int):
        self.control, self.owner_pid = control, owner_pid
        self.children: set[int] = set()
        # SIGCHLD wakes select() through this pipe (signal.set_wakeup_fd), so a worker's
        # exit is reported at once rather than at the next poll.
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def serve(self) -> None:
        """Fork workers on request and report their exits until the owner is gone."""
        while True:
            readable, _, _ = select.select([self.control, self.wake_r], [], [],
                                           lifeline.OWNER_CHECK_INTERVAL)
            if self.wake_r in readable:
                _drain(self.wake_r)
            self.reap()
            if self.control in readable and not self.handle_request():
                return  # the owner closed its end: it closed us, or it died
            if os.getppid() != self.owner_pid:
                return  # re-parented: the owner died

    def handle_request(self) -> bool:
        try:
            data, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, MAX_FDS)
        except ConnectionError:
            return False
        if not data:
            return False
        msg = pickle.loads(data)
        if msg["op"] == "fork":
            self.fork(msg, fds)
        elif msg["op"] == "kill" and msg["pid"] in self.children:
            os.kill(msg["pid"], msg["signal"])  # not reaped yet (reap() runs first): ours
        return True

    def fork(self, msg: dict, fds: list[int]) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            self.send(("fork-failed", msg["id"], f"fork() failed: {exc}"))
            return
        if pid == 0:
            self._become_worker(msg, fds)  # never returns
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        self.send(("forked", msg["id"], pid))

    def reap(self) -> None:
        """Collect every child that exited and tell the owner how it ended."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send(("exited", pid, os.waitstatus_to_exitcode(status)))

    def send(self, reply: tuple) -> None:
        try:
            self.control.send(pickle.dumps(reply))
        except OSError:
            pass  # the owner is gone: serve() notices on its next turn

    def _become_worker(self, msg: dict, fds: list[int]) -> None:
        """In the forked child: take the worker's descriptors and environment, run it."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.setsid()  # as start_new_session=True: a Ctrl-C in a terminal is not ours
            for target, fd in enumerate(fds):  # stdin (the owner's pipe), stdout, stderr
                os.dup2(fd, target)  # fd 0 was the control socket: now closed here
            for fd in (*fds, self.wake_r, self.wake_w):
                if fd > 2:
                    os.close(fd)
            os.chdir(msg["cwd"])
            os.environ.clear()
            os.environ.update(msg["env"])
            sys.path[0] = msg["cwd"]  # what `python -m` puts first, from the owner's cwd
            # ... and then PYTHONPATH's entries, which the owner may have changed since.
            sys.path[1:1] = [p for p in msg["env"].get("PYTHONPATH", "").split(os.pathsep)
                             if p and p not in sys.path]
            sys.argv = [sys.argv[0], *msg["argv"]]
            _set_title(msg["argv"])
            process.main(msg["argv"], parent_pid=os.getppid())
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(code)


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter would exit with for ``exc`` (a message: printed, then 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _set_title(argv: list[str]) -> None:
    """Show the worker in ``ps`` as the command that would have started it."""
    if setproctitle is not None:
        setproctitle(" ".join([os.path.basename(sys.executable), "-m",
                                "scatter_magics.engine.worker", *argv]))


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _close_inherited() -> None:
    """Close what the owner's libraries left inheritable: the owner spawns us with
    ``os.posix_spawn``, which passes such descriptors on where Popen's ``close_fds``
    closed them, and a pipe's end held here for the owner's life would hide its closing
    from its reader."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.close(fd)
            except OSError:  # the listing's own descriptor, closed by now
                pass


def main(argv=None) -> None:
    _close_inherited()
    args = template_options(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the notebook
    if setproctitle is not None:
        # setproctitle finds the argv area to write over on its first call, by walking
        # from `environ`; a forked worker replaces its environment first, so call it now.
        setproctitle(getproctitle())
    lifeline.die_with_parent("", args.owner_pid, args.owner_pid)
    control = socket.socket(fileno=0)  # standard input: our end of the socket pair
    Template(control, args.owner_pid).serve()


if __name__ == "__main__":
    main()
