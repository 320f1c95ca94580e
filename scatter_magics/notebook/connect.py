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
>>> connect_object(gateway_cluster).kind   # its address and TLS security  # doctest: +SKIP
'dask'

Every connection is put in the discovery registry (:func:`register_connection`), tagged
``connected`` with the kernel's id, so the Jupyter sidebar lists the cluster (and which
notebooks use it) for as long as the kernel stays connected.
"""

from __future__ import annotations

import logging
import os
import socket

from .. import discovery
from ..backend import GREETING_SIZE, Backend, backend_class, backend_for, greeting_kind
from ..errors import UnknownClusterError

logger = logging.getLogger(__name__)

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
        security = security or entry.security  # a TLS or gateway connection registered
    elif ":" not in target:
        raise UnknownClusterError(f"no running cluster on this machine has the id {target!r} "
                                  f"(the Jupyter sidebar lists them), and it is no address")
    address = target if "://" in target else f"tcp://{target}"
    if address.startswith("tcp://") and security is None and _speaks_our_protocol(address):
        return backend_class("embedded").connect(
            address, secret=secret or os.environ.get(SECRET_ENV), timeout=timeout)
    return backend_class("dask").connect(address, security=security, timeout=timeout)


def is_cluster_object(obj) -> bool:
    """A client or cluster object :func:`connect_object` can take (duck-typed: no engine
    is imported to ask)."""
    return _dask_client_address(obj) is not None or (
        isinstance(getattr(obj, "scheduler_address", None), str)
        and (hasattr(obj, "security") or hasattr(obj, "secret")))


def connect_object(obj, *, timeout: float = 10.0) -> Backend:
    """A new client of the scheduler behind ``obj``: a ``distributed.Client``, any Dask
    cluster object with ``scheduler_address`` and ``security`` (``LocalCluster``,
    dask-gateway's ``GatewayCluster``, dask-jobqueue's and dask-kubernetes' clusters,
    Coiled), or our own ``Client`` or ``LocalCluster``. Its address and security (or
    secret) are used as they are: a ``gateway://`` address needs the cluster's TLS."""
    try:
        ours = backend_for(obj).kind == "embedded"  # a client of our engine
    except TypeError:
        ours = False
    if ours or (hasattr(obj, "secret") and not hasattr(obj, "security")):
        address = obj.scheduler_address
        return backend_class("embedded").connect(address, secret=obj.secret, timeout=timeout)
    address = _dask_client_address(obj) or obj.scheduler_address
    return backend_class("dask").connect(address, security=getattr(obj, "security", None),
                                         timeout=timeout)


def _dask_client_address(obj) -> str | None:
    """The scheduler address of a ``distributed.Client`` (its ``scheduler`` rpc), or None."""
    address = getattr(getattr(obj, "scheduler", None), "address", None)
    return address if isinstance(address, str) and hasattr(obj, "security") else None


def register_connection(backend: Backend, address: str) -> discovery.Entry | None:
    """Put this kernel's connection to the cluster at ``address`` in the registry.

    The entry carries what the Jupyter server needs to reach it (the secret, or the Dask
    TLS security) in the 0600 file, and its dashboard link. A registry that cannot be
    written leaves the connection working, logged."""
    fields = backend.registry_fields()
    host = address.split("://", 1)[-1]
    try:
        return discovery.register(backend=backend.kind, scheduler_address=address,
                                  secret=fields.get("secret"), connected=True,
                                  security=fields.get("security"),
                                  dashboard_link=fields.get("dashboard_link"),
                                  name=f"{backend.kind} scheduler at {host}")
    except Exception as exc:
        logger.warning("this connection is not in the discovery registry (the Jupyter "
                       "sidebar will not list it): %r", exc)
        return None


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
