"""Every exception scatter_magics raises, in one place.

Remote failures keep their type: a task that raises ``ValueError`` on a worker raises
``ValueError`` in the client, with the worker's traceback attached as ``__cause__``
(a :class:`RemoteTraceback`). The classes here are for failures of our own making.
"""

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

    IPython shows an exception's ``_render_traceback_()`` instead of its traceback (the
    hook ipyparallel uses for remote errors), so the user sees this one line, not the
    frames of the event-loop door the interrupt arrived in.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


class UnknownClusterError(ScatterMagicsError, LookupError):
    """No live cluster in the discovery registry has this id or address."""


class ClusterUnreachableError(ScatterMagicsError, ConnectionError):
    """A registered cluster's scheduler did not answer (it is closing, or stuck)."""


class MissingDependencyError(ScatterMagicsError, ImportError):
    """An engine needs a package that is not installed (the message names the extra)."""


class PollingFallbackWarning(UserWarning):
    """A Dask scheduler refused the event plugin: the live view polls once a second."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a worker, as text.

    Attached as ``__cause__`` of the re-raised exception, so it prints under
    "The above exception was the direct cause of ...".
    """

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

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
