"""Connecting to a running cluster: one entry point, whichever engine answers.

``%cluster connect ADDRESS_OR_ID`` calls :func:`connect` (the JupyterLab sidebar inserts
it with a cluster's registry id: ``discovery.py`` holds the address and the secret).
It looks at what answers at the address: our embedded engine's scheduler greets every
connection with its protocol's magic bytes before anything else
(``engine/wire/protocol.py`` ``server_hello``); a Dask scheduler sends a msgpack handshake.
So one short read tells them apart, and the matching engine's client connects.

>>> backend = connect("tcp://10.0.0.5:8786")                 # doctest: +SKIP
>>> backend.kind                                             # doctest: +SKIP
'dask'
>>> connect(None, scheduler_file="~/scheduler.json").kind   # doctest: +SKIP
'dask'
"""

from __future__ import annotations

import os
import socket

from .. import discovery
from ..backend import GREETING_SIZE, Backend, backend_class, greeting_kind
from ..errors import UnknownClusterError

PROBE_TIMEOUT = 2.0  # s to wait for a scheduler's first bytes
SECRET_ENV = "SCATTER_MAGICS_SECRET"


def connect(target: str | None, *, scheduler_file: str | None = None, security=None,
            secret: str | None = None, timeout: float = 10.0) -> Backend:
    """A backend whose client is connected to the scheduler at ``target``.

    ``target`` is a cluster id from the discovery registry (the Jupyter sidebar shows them),
    ``tcp://host:port``, ``tls://host:port`` or ``host:port``; for a registered cluster of
    our engine the secret comes from the registry unless given;
    ``scheduler_file`` (a Dask scheduler file) replaces it. ``security`` (a
    ``distributed.Security``, or a dict of its ``tls_*`` arguments) and TLS addresses
    mean Dask. ``secret`` (default: ``$SCATTER_MAGICS_SECRET``) is what our engine's
    scheduler asks for. Raises ``ConnectionError`` if nothing answers, and
    :class:`~scatter_magics.errors.MissingDependencyError` if Dask is needed but missing.
    """
    if scheduler_file is not None:
        path = os.path.expanduser(scheduler_file)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no scheduler file at {path}")
        return backend_class("dask").connect(scheduler_file=path, security=security,
                                             timeout=timeout)
    if not target:
        raise ValueError("connect needs an address (tcp://host:port) or a scheduler file")
    entry = discovery.resolve(target)  # a cluster id from the sidebar, or a registered address
    if entry is not None and entry.backend == "embedded":
        return backend_class("embedded").connect(
            entry.scheduler_address, secret=secret or entry.secret, timeout=timeout)
    if entry is not None:
        target = entry.scheduler_address
    elif ":" not in target:
        raise UnknownClusterError(f"no running cluster on this machine has the id {target!r} "
                                  f"(the Jupyter sidebar lists them), and it is no address")
    address = target if "://" in target else f"tcp://{target}"
    if address.startswith("tcp://") and security is None and _speaks_our_protocol(address):
        return backend_class("embedded").connect(
            address, secret=secret or os.environ.get(SECRET_ENV), timeout=timeout)
    return backend_class("dask").connect(address, security=security, timeout=timeout)


def _speaks_our_protocol(address: str) -> bool:
    """Whether the server at ``tcp://host:port`` greets with our engine's magic bytes."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not port.isdigit():
        raise ValueError(f"{address!r} is not an address like tcp://host:port")
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), PROBE_TIMEOUT)
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {address}: {exc}") from exc
    with sock:
        sock.settimeout(PROBE_TIMEOUT)
        try:
            return greeting_kind(_read_exactly(sock, GREETING_SIZE)) == "embedded"
        except OSError:  # silent, or closed on us: not our scheduler's greeting
            return False


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data
