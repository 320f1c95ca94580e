"""The cluster registry: every running cluster on this machine, one JSON file each.

A cluster that starts writes ``jupyter_runtime_dir()/scatter-magics/cluster-<id>.json``
(directory 0700, file 0600, like Jupyter's own ``kernel-*.json`` and ``jpserver-*.json``)
and removes it when it closes, on ``%cluster stop`` and at interpreter exit. The Jupyter
server extension (``scatter_magics.lab``) reads the folder to find clusters started in any
kernel, script or terminal; ``%cluster connect <id>`` reads it to join one. Kernels inherit
the server's environment, so both sides resolve the same runtime directory.

A file carries the cluster's credential (for the embedded engine, its secret), so
:func:`live_entries` trusts only files owned by this user and unreadable by others, and
skips (and deletes) the files of processes that are gone, checking the process start time
so that a recycled pid does not revive a dead entry. The format is in docs/internals.md.

>>> entry = register(backend="embedded", scheduler_address="tcp://127.0.0.1:4000",
...                  secret="s3cret")                          # doctest: +SKIP
>>> [e.id for e in live_entries()]                             # doctest: +SKIP
['4242-1a2b3c4d']
>>> unregister(entry)                                          # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import stat
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .keys import random_token

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SUBDIR = "scatter-magics"
CREDENTIAL_FIELDS = ("secret", "security")  # the fields that must never leave the server


@dataclass
class Entry:
    """One registered cluster, as written in its file (``secret`` included)."""

    id: str
    name: str
    backend: str  # "embedded" or "dask"
    scheduler_address: str
    pid: int
    create_time: float  # the registering process's start time (psutil), against pid reuse
    kernel_id: str | None
    secret: str | None = field(repr=False)  # never in a repr, a log line or a traceback
    started: float = field(default_factory=time.time)
    version: int = FORMAT_VERSION
    # A kernel's connection to a cluster it did not start (``%cluster connect``), not a
    # cluster of its own: listed while that kernel stays connected.
    connected: bool = False
    # Dask TLS (``distributed.Security`` arguments: file paths or PEM text), as the
    # connection used it: a credential like ``secret``.
    security: dict | None = field(default=None, repr=False)
    dashboard_link: str | None = None  # a Dask scheduler's dashboard, if it has one

    @property
    def path(self) -> Path:
        return registry_dir() / f"cluster-{self.id}.json"

    def public(self) -> dict:
        """The fields that may be shown to a browser: everything but the credentials."""
        return {k: v for k, v in asdict(self).items() if k not in CREDENTIAL_FIELDS}


def registry_dir() -> Path:
    """``jupyter_runtime_dir()/scatter-magics`` (not created)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / SUBDIR


# ------------------------------------------------------------ registering ---

_registered: dict[str, Entry] = {}  # this process's entries, removed at exit
_lock = threading.Lock()


def register(*, backend: str, scheduler_address: str, secret: str | None,
             name: str | None = None, connected: bool = False, security: dict | None = None,
             dashboard_link: str | None = None) -> Entry:
    """Write this process's cluster at ``scheduler_address`` into the registry
    (``connected``: this process's connection to a cluster it did not start)."""
    pid = os.getpid()
    kernel_id = current_kernel_id()
    entry = Entry(id=f"{pid}-{random_token()[:8]}", name=name or default_name(kernel_id),
                  backend=backend, scheduler_address=scheduler_address, pid=pid,
                  create_time=own_start_time(), kernel_id=kernel_id, secret=secret,
                  connected=connected, security=security, dashboard_link=dashboard_link)
    _write(entry)
    with _lock:
        _registered[entry.id] = entry
    return entry


def own_start_time() -> float:
    """This process's start time as ``psutil.Process().create_time()`` gives it.

    Read from ``/proc`` as psutil does on Linux (boot time plus the process's start in
    clock ticks): importing psutil to register cost ~14 ms of every cold start.

    >>> import psutil
    >>> abs(own_start_time() - psutil.Process().create_time()) < 0.01
    True
    """
    try:
        with open("/proc/self/stat", "rb") as f:  # the name in (...) may hold spaces
            start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])  # field 22
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):  # not Linux
        import psutil

        return psutil.Process().create_time()


def _write(entry: Entry) -> None:
    from jupyter_core.paths import secure_write

    directory = registry_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(directory.stat().st_mode) & 0o077:
        directory.chmod(0o700)  # made earlier by someone with a looser umask
    # secure_write creates the file 0600 and checks the mode it got (DACLs on Windows).
    # Written under a temporary name, then renamed: a reader never sees half a file.
    partial = directory / f".{entry.id}.partial"
    with secure_write(str(partial)) as f:
        json.dump(asdict(entry), f)
    os.replace(partial, entry.path)


def unregister(entry: Entry | str | None) -> None:
    """Remove an entry (or an id) this process registered; unknown ones are ignored."""
    if entry is None:
        return
    entry_id = entry if isinstance(entry, str) else entry.id
    with _lock:
        found = _registered.pop(entry_id, None)
    if found is not None:
        found.path.unlink(missing_ok=True)


@atexit.register
def _unregister_all() -> None:
    for entry_id in list(_registered):
        unregister(entry_id)


def current_kernel_id() -> str | None:
    """The id of the Jupyter kernel this process is, from its connection file, or None."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        from ipykernel.kernelapp import IPKernelApp

        if not IPKernelApp.initialized():
            return None
        connection_file = IPKernelApp.instance().abs_connection_file
    except Exception:  # an ipykernel without these names: no kernel id, still registered
        logger.debug("no kernel id", exc_info=True)
        return None
    match = re.fullmatch(r"kernel-(.+)\.json", os.path.basename(connection_file or ""))
    return match.group(1) if match else None


def default_name(kernel_id: str | None) -> str:
    """What a person recognises when no notebook path is known: the kernel, or the program,
    and the directory it runs in (the sidebar adds its start time).

    ``kernel 5f0c2e1a``, ``train.py in ~/proj``, ``python -c in /tmp``, ``python -m pytest
    in ~/proj``, ``IPython in ~``, ``Jupyter kernel in ~/proj`` (a kernel whose id is not
    known: one nbclient started, say).
    """
    if kernel_id:
        return f"kernel {kernel_id[:8]}"
    return f"{program_name(sys.argv)} in {_short_path(os.getcwd())}"


def program_name(argv: list[str]) -> str:
    """The program a person started, from ``sys.argv``."""
    first = argv[0] if argv and argv[0] else ""
    base = os.path.basename(first)
    if first in ("", "-c"):
        return "python -c"
    if base.startswith("ipython"):  # terminal IPython: argv[0] is .../bin/ipython
        return "IPython"
    if base in ("ipykernel_launcher.py", "ipykernel", "__main__.py") and \
            "ipykernel" in os.path.dirname(first) + base:
        return "Jupyter kernel"
    if base == "__main__.py":  # python -m package: argv[0] is the package's __main__.py
        return f"python -m {os.path.basename(os.path.dirname(first))}"
    return base


def _short_path(path: str) -> str:
    home = os.path.expanduser("~")
    if home not in ("", "/") and (path == home or path.startswith(home + os.sep)):
        return "~" + path[len(home):]
    return path


# ------------------------------------------------------------ finding ---

_warned: set[str] = set()  # files already warned about, so a poll does not flood the log


def live_entries() -> list[Entry]:
    """Every trusted entry whose process is alive, oldest first; dead ones are deleted."""
    directory = registry_dir()
    try:
        paths = sorted(directory.glob("cluster-*.json"))
    except OSError:
        return []
    entries = [e for e in map(_read_trusted, paths) if e is not None]
    alive = []
    for entry in entries:
        if process_alive(entry.pid, entry.create_time):
            alive.append(entry)
        else:
            entry.path.unlink(missing_ok=True)  # pruned by whoever finds it
    return sorted(alive, key=lambda e: e.started)


def find_entry(cluster_id: str) -> Entry | None:
    """The live entry with this id, or None."""
    return next((e for e in live_entries() if e.id == cluster_id), None)


def find_by_address(address: str) -> Entry | None:
    """The live entry of the cluster whose scheduler is at ``address``, or None."""
    return next((e for e in live_entries() if e.scheduler_address == address), None)


def resolve(target: str) -> Entry | None:
    """The live entry whose id is ``target`` or whose scheduler is at ``target``, or None.

    An address may omit ``tcp://``. This is how ``%cluster connect <id or address>``
    (``notebook/connect.py``) finds a cluster's secret: the user never types it.
    """
    address = target if "://" in target else f"tcp://{target}"
    return next((e for e in live_entries() if target == e.id or address == e.scheduler_address),
                None)


def _read_trusted(path: Path) -> Entry | None:
    try:
        info = path.stat()
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            _warn_once(path, f"ignoring cluster registry file {path}: it must be owned by uid "
                             f"{os.getuid()} with mode 0600 (it is uid {info.st_uid}, mode "
                             f"{stat.S_IMODE(info.st_mode):04o})")
            return None
        fields = json.loads(path.read_text())
        return _checked(Entry(**{k: fields[k] for k in Entry.__dataclass_fields__
                                 if k in fields}))
    except FileNotFoundError:
        return None  # removed while we looked: the cluster closed
    except (OSError, ValueError, TypeError) as exc:
        _warn_once(path, f"ignoring unreadable cluster registry file {path}: {exc!r}")
        return None


def _checked(entry: Entry) -> Entry:
    """``entry`` if each field has its type (``ValueError`` naming the first that does
    not): a file written by hand or by another version must not break a listing."""
    numbers = (int, float)
    checks = {"id": isinstance(entry.id, str), "name": isinstance(entry.name, str),
              "backend": entry.backend in ("embedded", "dask"),
              "scheduler_address": isinstance(entry.scheduler_address, str)
              and "://" in entry.scheduler_address,  # (tcp, tls; Dask's inproc too)
              "pid": type(entry.pid) is int and entry.pid > 0,
              "create_time": isinstance(entry.create_time, numbers)
              and not isinstance(entry.create_time, bool),
              "started": isinstance(entry.started, numbers) and not isinstance(entry.started, bool),
              "kernel_id": entry.kernel_id is None or isinstance(entry.kernel_id, str),
              "secret": entry.secret is None or isinstance(entry.secret, str),
              "connected": isinstance(entry.connected, bool),
              "security": entry.security is None or isinstance(entry.security, dict),
              "dashboard_link": entry.dashboard_link is None
              or isinstance(entry.dashboard_link, str)}
    wrong = next((name for name, ok in checks.items() if not ok), None)
    if wrong is not None:
        shown = "not what it should be" if wrong in CREDENTIAL_FIELDS else \
            repr(getattr(entry, wrong))  # (never a credential's value in a log line)
        raise ValueError(f"its {wrong} is {shown}")
    return entry


def _warn_once(path: Path, message: str) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        logger.warning(message)


def process_alive(pid: int, create_time: float) -> bool:
    """Whether ``pid`` runs and is the process that started at ``create_time``."""
    import psutil  # here: the readers (the Jupyter server, %cluster connect) pay for it

    try:
        proc = psutil.Process(pid)
        # create_time is rounded differently on some platforms; a reused pid differs by far more.
        return abs(proc.create_time() - create_time) < 1.0 and \
            proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
