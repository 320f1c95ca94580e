"""The cluster the magics use: starting, connecting, stopping, and what they remember.

:class:`ClusterSession` is held by :class:`~scatter_magics.notebook.magics.ScatterMagics`,
whose configuration it reads (``n_workers``, ``threads_per_worker``, ``memory_limit``,
``timeout``, ``dask_security``). It binds the client it starts or connects with to
``client`` in the user's namespace, and on close forgets the names ``%scatter``
remembered for that client and marks every widget of that client "not live".

A cluster the magics use can go away under them (its owner closes it, the sidebar stops
it, its scheduler dies). Then the next magic raises one line,
:class:`~scatter_magics.errors.ClusterGoneError`, and the session forgets that cluster,
so ``%cluster start`` and ``%cluster connect`` work again with no kernel restart.
"""

from __future__ import annotations

import logging

from IPython.core.error import UsageError

from ..backend import Backend, backend_for, client_types, start_backend
from ..current_client import get_client, register_client
from .. import discovery
from ..errors import (
    ClientClosedError,
    ClusterGoneError,
    CommClosedError,
    MissingDependencyError,
    ProtocolError,
    UnknownClusterError,
)
from .arguments import is_dotted_name
from .connect import connect, connect_object, is_cluster_object, register_connection
from .display import ClusterSummary, counted
from .names import RememberedNames

logger = logging.getLogger(__name__)

CLIENT_NAME = "client"  # where the magics bind the client they start
CONNECT_TIMEOUT = 10.0  # s, for %cluster connect when ScatterMagics.timeout is not set
TLS_OPTIONS = ("tls_ca_file", "tls_client_cert", "tls_client_key")
_UNSET = object()


def check_cluster_options(args) -> None:
    """Each %cluster option goes with one action; say which."""
    if args.action is not None and args.tasks:
        raise UsageError("--tasks goes with %cluster alone (it shows the task stream)")
    start_options = (args.n_workers, args.threads, args.memory_limit, args.dask or None)
    if args.action != "start" and any(o is not None for o in start_options):
        raise UsageError("-n, --threads, --memory-limit and --dask go with %cluster start")
    connect_options = (args.address, args.scheduler_file, args.secret,
                       *(getattr(args, name) for name in TLS_OPTIONS))
    if args.action != "connect" and any(o is not None for o in connect_options):
        raise UsageError("ADDRESS, --scheduler-file, --tls-* and --secret go with "
                         "%cluster connect")
    if args.action == "connect" and (args.address is None) == (args.scheduler_file is None):
        raise UsageError("%cluster connect needs an ADDRESS (tcp://host:port, tls://host:port "
                         "or host:port) or --scheduler-file PATH, not both")


class ClusterSession:
    """The magics' own cluster (:attr:`owned`): starting, connecting, stopping, closing."""

    def __init__(self, shell, config, names: RememberedNames):
        self.shell = shell
        self.config = config  # the ScatterMagics configurable: its traits, read when needed
        self.names = names
        self.owned: Backend | None = None  # the cluster the magics started or connected to
        self.connected = False  # whether `owned` is a cluster they connected to (not theirs)
        self.address = ""  # `owned`'s scheduler, for messages once it is gone
        self.entry: discovery.Entry | None = None  # `owned`'s connection in the registry

    def start(self, args) -> ClusterSummary:
        self._refuse_a_second_cluster()
        backend = self.start_cluster(args.n_workers, args.threads, args.memory_limit,
                                     kind="dask" if args.dask else "embedded")
        return ClusterSummary.snapshot(backend, self.names.labels())

    def connect(self, args) -> ClusterSummary:
        self._refuse_a_second_cluster()
        target = args.address or args.scheduler_file
        held = self._held_object(args.address)
        if isinstance(held, str):  # a name holding an address or an id
            target, held, args.address = held, None, held
        tls = {name: getattr(args, name) for name in TLS_OPTIONS if getattr(args, name)}
        timeout = self.config.timeout or CONNECT_TIMEOUT
        try:
            if held is not None:
                backend = connect_object(held, timeout=timeout)
            else:
                backend = connect(args.address, scheduler_file=args.scheduler_file,
                                  security=tls or self.config.dask_security,
                                  secret=args.secret, timeout=timeout)
        except MissingDependencyError as exc:
            raise UsageError(f"{target} is a Dask scheduler, and {exc}") from exc
        except (OSError, ValueError, ProtocolError, UnknownClusterError) as exc:  # OSError: timeouts
            raise UsageError(f"cannot connect to {target}: {exc}") from exc
        register_client(backend.client)
        self.owned, self.connected = backend, True
        self.address = backend.scheduler_info()["address"]
        self.entry = register_connection(backend, self.address)
        # Gone from the sidebar as soon as the cluster goes, not at the next magic.
        backend.when_lost(lambda reason, entry=self.entry: discovery.unregister(entry))
        self._adopt(backend, f"Connected to the {backend.kind} scheduler at {self.address} "
                             f"({counted(backend.n_workers(), 'worker')})")
        return ClusterSummary.snapshot(backend, self.names.labels())

    def _held_object(self, text: str | None):
        """The client or cluster object a name in the namespace holds (``%cluster connect
        cluster``), or None when ``text`` is an id or an address."""
        if not text or not is_dotted_name(text) or text.split(".")[0] not in self.shell.user_ns:
            return None
        value = self.shell.ev(text)
        if not isinstance(value, str) and not is_cluster_object(value):
            raise UsageError(f"{text} holds a {type(value).__name__}, not a client or a "
                             f"cluster object (one with scheduler_address and security)")
        return value

    def _refuse_a_second_cluster(self) -> None:
        if self.owned is not None and not self.owned.running:
            self.forget_gone()  # stopped elsewhere: nothing to refuse for
        if self.owned is not None:
            raise UsageError(f"the magics' cluster is already running ({self.owned.client!r}); "
                             f"run %cluster stop first")

    def check_not_gone(self) -> None:
        """Raise :class:`ClusterGoneError` (once) if the magics' cluster went away."""
        if self.owned is None or self.owned.running:
            return
        address, why = self.address, self.owned.closed_reason
        self.forget_gone()
        raise ClusterGoneError(
            f"the cluster at {address} is gone ({why or 'it was stopped, or its scheduler died'}"
            f"); start one with %cluster start, or join one with %cluster connect ADDRESS")

    def forget_gone(self) -> None:
        """Forget a cluster that went away: its client, names, registry entry, widgets."""
        try:
            self.close(reason=f"the cluster at {self.address} is gone")
        except Exception:  # its client may fail to close cleanly: it is forgotten anyway
            logger.info("closing the client of a cluster that went away failed", exc_info=True)

    def stop(self) -> None:
        backend = self.owned
        if backend is not None and not backend.running:
            address = self.address
            self.forget_gone()
            print(f"The cluster at {address} was already gone; the magics forgot it.")
            return
        if backend is None:
            raise UsageError("no cluster started by %scatter or %cluster start (or connected "
                             "to by %cluster connect) is running; a Client created in your "
                             "code is stopped with its close()")
        connected = self.connected
        try:
            n = backend.n_workers()
            address = backend.scheduler_info()["address"] if connected else None
        except (CommClosedError, ClientClosedError, OSError):  # it is gone: let it go
            self.close()
            print("Closed the client of a cluster that had stopped answering.")
            return
        self.close()
        if connected:
            print(f"Disconnected from {address}; that cluster keeps running with its "
                  f"{counted(n, 'worker')}.")
            return
        print(f"Stopped the cluster and its {counted(n, 'worker')}.")

    def running_backend(self) -> Backend | None:
        self.check_not_gone()
        try:
            return backend_for(get_client())
        except ValueError:
            return None

    def client_name(self, client) -> str:
        """How the user's namespace reaches ``client``, for messages."""
        if self.shell.user_ns.get(CLIENT_NAME) is client:
            return CLIENT_NAME
        return "scatter_magics.get_client()"

    def backend(self, start: bool) -> Backend:
        """The client the magics use: ``get_client()``, or (``start``) a new cluster's."""
        self.check_not_gone()
        try:
            return backend_for(get_client())
        except ValueError:
            if not start:
                raise UsageError("no cluster is running: start one with %cluster start "
                                 "[-n N], or %scatter a variable") from None
        return self.start_cluster()

    def start_cluster(self, n_workers=None, threads=None, memory_limit=None,
                      kind: str = "embedded") -> Backend:
        """Start a cluster (config fills what is not given); bind its client to ``client``."""
        try:
            config = self.config
            backend = start_backend(kind, n_workers=n_workers or config.n_workers,
                                    threads_per_worker=threads or config.threads_per_worker,
                                    memory_limit=memory_limit or config.memory_limit)
        except MissingDependencyError as exc:
            raise UsageError(f"%cluster start --{kind}: {exc}") from exc
        self.owned, self.connected = backend, False
        self.address = backend.scheduler_info()["address"]
        self._adopt(backend, f"Started a cluster with {counted(backend.n_workers(), 'worker')}")
        return backend

    def _adopt(self, backend: Backend, what: str) -> None:
        """Bind ``backend``'s client to ``client`` unless that name holds something else."""
        client = backend.client
        current = self.shell.user_ns.get(CLIENT_NAME, _UNSET)
        if current is _UNSET or isinstance(current, client_types()):
            self.shell.user_ns[CLIENT_NAME] = client
            print(f"{what}; its client is `{CLIENT_NAME}`.")
        else:
            print(f"{what}; `{CLIENT_NAME}` holds something else, so use "
                  f"scatter_magics.get_client() to reach it.")

    def close(self, reason: str = "client closed") -> None:
        """Close the client the magics started (ending its workers) or connected with (its
        cluster keeps running), and forget its futures."""
        backend, self.owned, self.connected = self.owned, None, False
        entry, self.entry = self.entry, None
        discovery.unregister(entry)
        if backend is None:
            return
        client = backend.client
        self.names.forget_client(client)
        if self.shell.user_ns.get(CLIENT_NAME) is client:
            del self.shell.user_ns[CLIENT_NAME]
        backend.close()
        # Every widget showing this cluster's futures or workers now says "not live".
        from .widget import mark_not_live

        mark_not_live(client, reason)
