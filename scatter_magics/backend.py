"""The backend interface: what the notebook layer asks of a cluster, whichever engine runs it.

The magics, the widgets and the display code never call a client class directly. They
take the client a user holds (ours, or any other engine's) and ask :func:`backend_for`
for a :class:`Backend`, a thin adapter with the few operations below. Each engine ships
one adapter (``scatter_magics/engine/backend.py`` for the embedded engine) and names it
in :data:`ADAPTERS`, so adding an engine touches no notebook code.

Errors are part of the contract: an adapter raises the classes in ``errors.py``
(``UnknownWorkerError``, ``NoWorkersError``, ``SerializationError``,
``ClientClosedError``, ``TimeoutError``) so the magics can name what went wrong the
same way on every engine. Events follow ``docs/internals.md``.

>>> from scatter_magics import Client, backend
>>> with Client(n_workers=1) as client:                 # doctest: +SKIP
...     b = backend.backend_for(client)
...     b.kind, b.n_workers()
('embedded', 1)
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .errors import MissingDependencyError
from .progress_callback import Progress


class Subscription(Protocol):
    def close(self) -> None: ...


class Source(Protocol):
    """Where a scattered value can be read again (the magics: the variable it came from).

    Called by an engine, on a thread of its own, when every replica of its keys is gone.
    """

    def values(self, keys: list) -> dict:
        """``{key: value}`` for each of ``keys`` it still holds as scattered; for the
        others a ``FutureLostError`` whose message says why and what to do."""


class Backend(Protocol):
    """One client, seen by the notebook layer. Every method blocks until done."""

    kind: str  # "embedded", "dask": shown to users, and in the discovery registry
    client: Any  # what the user holds and ``get_client()`` returns

    @property
    def running(self) -> bool: ...

    @property
    def closed_reason(self) -> str | None:
        """Why the client stopped running when nobody here closed it ("stopped from the
        Jupyter sidebar"), where the engine knows; else None."""

    def when_lost(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` once, on any thread, if the client stops running
        when nobody here closed it; an engine that cannot tell never calls it."""

    @property
    def default_timeout(self) -> float | None:
        """The timeout a scatter gets when the caller gives none (None: no bound)."""

    def scatter(self, items: dict, *, workers, broadcast: bool, direct: bool | None,
                hash: bool, timeout: float | None, progress: Progress | None = None) -> dict:
        """``{key: future}`` for ``{key: value}``; keys are the caller's, used as given.

        ``progress(stage, done, total)`` hears how far the work has got (see :data:`Progress`)."""

    def gather(self, futures, *, errors: str, timeout: float | None,
               progress: Progress | None = None):
        """The values of (nested) futures, in the same structure; ``progress`` as above."""

    def resend_from(self, sources: dict, *, workers, broadcast: bool) -> None:
        """When every replica of a key of ``sources`` (``{key: Source}``) is gone, scatter
        it again from its source, under the same key, placed as ``workers`` and
        ``broadcast`` said (before anyone gathers it: a gather waits). A key its source
        refuses turns lost with the source's message. Optional: the magics skip an
        adapter without it."""

    def publish(self, name, data) -> None:
        """Publish ``data`` (futures, containers of them) on the cluster as ``name``,
        replacing a dataset of that name: it outlives this client (Dask's
        ``publish_dataset(data, name=name, override=True)``)."""

    def get_dataset(self, name):
        """The dataset published as ``name``, its futures this client's; ``KeyError``
        if there is none."""

    def scheduler_info(self) -> dict:
        """``{"address": str, "workers": {address: {name, nthreads, memory_limit,
        memory, nbytes, nkeys}}, "datasets": [{name, nbytes, workers}]}`` for the live
        workers and the published datasets (``workers``: the names of their holders)."""

    def has_what(self) -> dict:
        """``{worker address: [keys]}``."""

    def overview(self) -> dict:
        """The cluster as every view shows it: ``summary.summarize``'s ``{"workers",
        "keys", "totals"}``, counted by the scheduler (every key, not only this client's),
        and its published ``"datasets"`` (as in :meth:`scheduler_info`)."""

    def memory_history(self) -> dict:
        """The last five minutes of each worker's process memory and data held, a sample a
        second (``history.columns``' form)."""

    def task_stream(self, since: int = 0) -> dict:
        """``{"index", "now", "tasks"}``: what the workers ran in the last minute, after
        cursor ``since`` (``task_stream``'s records)."""

    def subscribe_events(self, callback: Callable[[list], None]) -> Subscription:
        """Batches of events (docs/internals.md), the first a snapshot; on any thread.

        The client keeps the subscription alive until its ``close()`` or the client's."""

    def n_workers(self) -> int:
        """Live workers now."""

    def close(self) -> None:
        """End this client (and the cluster, if the client owns it)."""

    @classmethod
    def start(cls, *, n_workers: int | None, threads_per_worker: int, memory_limit) -> "Backend":
        """Start a cluster of this engine on this machine, owned by the returned client."""


@dataclass(frozen=True)
class Adapter:
    """Where an engine's client and future classes live, and the class adapting them.

    Paths are ``"module:Name"`` and imported only when needed, so a notebook that never
    touches an engine never imports it.
    """

    kind: str
    client_class: str
    future_class: str
    backend_class: str
    # The engine's own "current client", if it has one; not part of the row's identity.
    default_client: str | None = field(default=None, compare=False)
    # The bytes its schedulers send first on every connection, if any: how
    # notebook/connect.py tells engines apart at an address without importing them.
    greeting: bytes | None = field(default=None, compare=False)


ADAPTERS: list[Adapter] = [
    Adapter("embedded", "scatter_magics.engine.client.client:Client",
            "scatter_magics.engine.client.future:Future",
            "scatter_magics.engine.backend:EmbeddedBackend",
            greeting=b"SMAG\x00\x00\x00\x01"),  # engine/wire/protocol.py's MAGIC (tested)
    Adapter("dask", "distributed.client:Client", "distributed.client:Future",
            "scatter_magics.dask.backend:DaskBackend", "distributed.client:default_client"),
]

EXTRAS = {"dask": "distributed"}  # engine -> the package its extra installs


def _split(path: str) -> tuple[str, str]:
    module, _, name = path.partition(":")
    return module, name


def _load(path: str):
    module, name = _split(path)
    return getattr(importlib.import_module(module), name)


def _loaded(path: str):
    """The class at ``path`` if its module is already imported, else None."""
    module, name = _split(path)
    return getattr(sys.modules[module], name, None) if module in sys.modules else None


def backend_for(client) -> Backend:
    """The adapter for ``client``; TypeError names the type if no engine knows it.

    A backend passed in is returned as it is (tests and embedders may bring their own).
    """
    adapter_class = _adapter_of_type.get(type(client))
    if adapter_class is not None:  # every magic asks: the search below ran once per type
        return adapter_class(client)
    if isinstance(getattr(client, "kind", None), str) and hasattr(client, "subscribe_events"):
        return client
    for adapter in ADAPTERS:
        cls = _loaded(adapter.client_class)
        if cls is not None and isinstance(client, cls):
            adapter_class = _adapter_of_type[type(client)] = _load(adapter.backend_class)
            return adapter_class(client)
    raise TypeError(f"{type(client).__module__}.{type(client).__qualname__} is not a client "
                    f"of an engine scatter_magics knows")


_adapter_of_type: dict[type, type] = {}  # a client class -> its engine's adapter class


def backend_class(kind: str) -> type:
    """The adapter class of engine ``kind``, imported now.

    Raises :class:`~scatter_magics.errors.MissingDependencyError` naming the extra to
    install when the engine's package is missing (``pip install "scatter_magics[dask]"``).
    """
    for adapter in ADAPTERS:
        if adapter.kind == kind:
            try:
                return _load(adapter.backend_class)
            except ImportError as exc:
                if kind in EXTRAS and exc.name and exc.name.split(".")[0] in ("dask", EXTRAS[kind]):
                    raise MissingDependencyError(
                        f"the {kind} engine needs {EXTRAS[kind]}: "
                        f'pip install "scatter_magics[{kind}]"') from exc
                raise
    raise ValueError(f"no engine {kind!r}; known: {', '.join(a.kind for a in ADAPTERS)}")


def greeting_kind(first_bytes: bytes) -> str | None:
    r"""The engine whose schedulers greet with ``first_bytes``, or None (Dask's say nothing first).

    >>> greeting_kind(b"SMAG\x00\x00\x00\x01"), greeting_kind(b"")
    ('embedded', None)
    """
    for adapter in ADAPTERS:
        if adapter.greeting and first_bytes.startswith(adapter.greeting):
            return adapter.kind
    return None


GREETING_SIZE = max(len(a.greeting) for a in ADAPTERS if a.greeting)


def start_backend(kind: str, **options) -> Backend:
    """Start a new cluster of engine ``kind`` (see :meth:`Backend.start`)."""
    return backend_class(kind).start(**options)


def future_types() -> tuple[type, ...]:
    """The future classes of the engines imported so far (importing none)."""
    return _classes_loaded("future_class")


def client_types() -> tuple[type, ...]:
    """The client classes of the engines imported so far (importing none)."""
    return _classes_loaded("client_class")


_found: dict[str, tuple[int, tuple[type, ...]]] = {}  # attribute -> (len(sys.modules), classes)


def _classes_loaded(attribute: str) -> tuple[type, ...]:
    # Asked several times by every magic; the answer changes only when a module is
    # imported, which changes the length of sys.modules (checking it: ~50 ns).
    modules = len(sys.modules)
    known = _found.get(attribute)
    if known is not None and known[0] == modules:
        return known[1]
    found = tuple(cls for cls in (_loaded(getattr(a, attribute)) for a in ADAPTERS) if cls)
    _found[attribute] = (modules, found)
    return found


def default_client_functions() -> list[Callable[[], Any]]:
    """Each imported engine's own "current client" function (Dask's ``default_client``)."""
    found = (_loaded(a.default_client) for a in ADAPTERS if a.default_client)
    return [function for function in found if function is not None]


def future_class_names() -> list[str]:
    """``"module.Name"`` of every engine's future class, for IPython's deferred printers."""
    return [".".join(_split(a.future_class)) for a in ADAPTERS]


def client_class_names() -> list[str]:
    """``"module.Name"`` of every engine's client class."""
    return [".".join(_split(a.client_class)) for a in ADAPTERS]


def is_future(obj) -> bool:
    return isinstance(obj, future_types())
