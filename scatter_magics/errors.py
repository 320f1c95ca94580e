"""Every exception scatter_magics raises, in one place.

Remote failures keep their type: a task that raises ``ValueError`` on a worker raises
``ValueError`` in the client, with the worker's traceback attached as ``__cause__``
(a :class:`RemoteTraceback`). The classes here are for failures of our own making.

What a magic says when an expected failure stops it is one or two sentences, shown by
IPython without a traceback: an exception made by :func:`said` (of the failure's own
class, so code that catches it still does) or a :class:`MagicError`.
"""

import functools
import re
import sys
from concurrent.futures import CancelledError


class ScatterMagicsError(Exception):
    """Base class of the package's own errors."""


class CommClosedError(ScatterMagicsError, ConnectionError):
    """The connection to a scheduler or worker is gone."""


class WorkerDiedError(CommClosedError):
    """The workers an operation needed died during it, and no other could stand in.

    The message names the keys and the workers' addresses.
    """


class WorkerUnresponsiveError(CommClosedError):
    """A worker stopped answering (no heartbeat) while a request to it was pending.

    Retries treat it as a closed connection: the data goes to, or is read from, another
    worker; the connection itself stays open, so the worker is usable if it resumes.
    """


class ProtocolError(ScatterMagicsError):
    """A peer sent bytes that are not a valid message."""


class AuthenticationError(ProtocolError):
    """A peer could not prove it knows the cluster's secret."""


class UnknownWorkerError(ScatterMagicsError, ValueError):
    """``workers=`` named a worker the scheduler does not know."""


class NoWorkersError(ScatterMagicsError, RuntimeError):
    """There is no (allowed) worker to place data or a task on."""


class SerializationError(ScatterMagicsError, TypeError):
    """An object could not be pickled (or unpickled)."""


class FutureLostError(ScatterMagicsError):
    """Every worker that held a key's data died."""


class KilledWorkerError(ScatterMagicsError):
    """A task's workers kept dying while they ran it (Dask's ``KilledWorker``)."""


class FutureCancelledError(ScatterMagicsError, CancelledError):
    """The future was cancelled or released before its value was asked for."""


class ClientClosedError(ScatterMagicsError, RuntimeError):
    """A method was called on a client that has been closed."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a magic; the message says what stopped and what still runs.

    Shown as one line, like a :class:`MagicError`, not the frames of the event-loop
    door the interrupt arrived in.
    """

    def _render_traceback_(self) -> list[str]:
        return brief_lines(self, [f"KeyboardInterrupt: {self}"])


class MagicError(ScatterMagicsError):
    """A failure of a magic with no class of its own, said in one or two lines.

    Shown as :func:`said` shows its exceptions (the lines alone).

    >>> error = MagicError("%scatter x: the cluster is gone.", "Start one: %cluster start")
    >>> print(error)
    %scatter x: the cluster is gone.
    Start one: %cluster start
    """

    def __init__(self, *lines: str):
        super().__init__("\n".join(lines))
        self.lines = list(lines)

    def _render_traceback_(self) -> list[str]:
        return brief_lines(self, self.lines)


def said(cls: type, *lines: str) -> BaseException:
    """An expected failure of a magic: a ``cls`` whose message is ``lines`` (one or two:
    what happened, naming the variable; what to do), shown by IPython as those lines.

    The magics raise it ``from`` the engine's error. IPython shows an exception's
    ``_render_traceback_()`` instead of its traceback (the hook ipyparallel uses for
    remote errors, looked up on the exception itself), so the cell shows the lines
    alone; ``%tb`` in a later cell shows the whole chain, and ``%debug`` opens it. The
    class stays the failure's (``FutureLostError``, ``TimeoutError``…), so code that
    catches it around a magic still does.

    >>> error = said(FutureLostError, "%gather big: big was lost.", "Scatter it again.")
    >>> isinstance(error, FutureLostError), error._render_traceback_()
    (True, ['%gather big: big was lost.', 'Scatter it again.'])
    """
    try:
        exc = cls("\n".join(lines))
    except TypeError:  # a class whose constructor wants other arguments
        return MagicError(*lines)
    exc._render_traceback_ = functools.partial(brief_lines, exc, list(lines))
    return exc


def brief_lines(exc: BaseException, lines: list[str]) -> list[str]:
    """What IPython shows for ``exc``: ``lines`` in the cell that raised it; its full
    traceback when shown again from a later cell (``%tb``).

    IPython renders a failed cell's exception twice, to show it and to store it in the
    history, both while that cell runs (``execution_count`` is the same); ``%tb`` asks
    again from a later cell.
    """
    shell = _shell()
    count = getattr(shell, "execution_count", None)
    shown_in = exc.__dict__.setdefault("_shown_in_cell", count)
    if count is None or shown_in == count:
        return list(lines)
    try:
        return shell.InteractiveTB.structured_traceback(type(exc), exc, exc.__traceback__)
    except Exception:  # a shell without IPython's formatter: Python's own
        import traceback

        return "".join(traceback.format_exception(exc)).splitlines()


def _shell():
    """The running IPython shell, if any (without importing IPython)."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


class UnknownClusterError(ScatterMagicsError, LookupError):
    """No live cluster in the discovery registry has this id or address."""


class ClusterGoneError(ScatterMagicsError, ConnectionError):
    """The cluster the magics used went away: stopped elsewhere, or its scheduler died.

    The message is one line saying which cluster and what to do next; like
    :class:`Interrupted`, IPython shows that line instead of a traceback. The magics
    have forgotten the cluster by then, so ``%cluster start`` or ``%cluster connect``
    work at once, with no kernel restart.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"ClusterGoneError: {self}"]


class ClusterUnreachableError(ScatterMagicsError, ConnectionError):
    """A registered cluster's scheduler did not answer (it is closing, or stuck)."""


class NotOwnedError(ScatterMagicsError, PermissionError):
    """The Jupyter sidebar was asked to stop a cluster no process on this machine started."""


class MissingDependencyError(ScatterMagicsError, ImportError):
    """An engine needs a package that is not installed (the message names the extra)."""


class PollingFallbackWarning(UserWarning):
    """A Dask scheduler refused the event plugin: the live view polls once a second."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a worker, as text.

    Attached as ``__cause__`` of the re-raised exception, so it prints under
    "The above exception was the direct cause of ...". Its :attr:`frames` are the
    task's own frames, innermost last, for views that show them (the magics), and
    :attr:`key` the task's key where the engine says.

    >>> RemoteTraceback('''Traceback (most recent call last):
    ...   File "<dynamic-code>", line 3, in f
    ... ZeroDivisionError: division by zero''').frames
    [('<dynamic-code>', 3, 'f', '')]
    """

    def __init__(self, text: str, frames: list[tuple[str, int, str, str]] | None = None,
                 key=None):
        super().__init__(text)
        self.text = text
        self._frames = frames
        self.key = key  # the task's key, where the engine says

    @property
    def frames(self) -> list[tuple[str, int, str, str]]:
        """``[(filename, line number, function, source line)]`` of the last traceback
        in :attr:`text` (the task's own exception, after any it chained)."""
        if self._frames is None:
            self._frames = _frames_of(self.text)
        return self._frames

    def __str__(self) -> str:
        return "\n\n" + self.text


class TaskTraceback(str):
    """A task's traceback as text (what :class:`RemoteTraceback` prints), carrying its
    frames in ``tblib``'s picklable form for ``Future.traceback()`` (None without them)."""

    frames: dict | None

    def __new__(cls, text: str, frames: dict | None = None):
        self = super().__new__(cls, text)
        self.frames = frames
        return self

    def __reduce__(self):
        return TaskTraceback, (str(self), self.frames)
_FRAME = re.compile(r'^  File "(?P<file>.+)", line (?P<line>\d+), in (?P<name>.+)$')


def _frames_of(text: str) -> list[tuple[str, int, str, str]]:
    frames: list[tuple[str, int, str, str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            frames = []  # a chained exception's traceback: the last one is the task's
        match = _FRAME.match(line)
        if match:
            source = lines[i + 1].strip() if i + 1 < len(lines) and \
                lines[i + 1].startswith("    ") else ""
            frames.append((match["file"], int(match["line"]), match["name"], source))
    return frames


def portable(exc: BaseException) -> BaseException:
    """``exc`` if another process can unpickle it, else a RuntimeError with its text."""
    import pickle

    import cloudpickle

    try:
        pickle.loads(cloudpickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class SharedMemoryError(ScatterMagicsError, OSError):
    """A buffer could not be put into shared memory (the message names the key)."""


class MemoryLimitError(ScatterMagicsError, MemoryError):
    """Data would not fit: a worker's ``memory_limit``, or the machine's free memory."""


class SharedMemoryWarning(UserWarning):
    """Shared memory is short; buffers travel over the socket instead."""


class VersionMismatchWarning(UserWarning):
    """The client, the scheduler and the workers run different versions of a package
    that does not decide how values travel (``Client.get_versions(check=True)``)."""


class DistributedOnlyGraphError(ScatterMagicsError, NotImplementedError):
    """A dask graph needs machinery only Dask's own workers have (the P2P shuffle)."""
