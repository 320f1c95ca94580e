"""A ``distributed.Client`` seen through the backend interface (``scatter_magics/backend.py``).

The magics call the same few operations on every engine; here they become Dask calls,
and Dask's errors become the classes in ``errors.py`` so the magics word a mistake the
same way: an unknown worker, no workers, something unpicklable, a timeout, a closed
client. Events come from :mod:`.events` (the scheduler plugin, or polling).

>>> backend = DaskBackend.start(n_workers=2, threads_per_worker=1, memory_limit="1GiB")  # doctest: +SKIP
>>> futures = backend.scatter({"x-1": 42}, workers=None, broadcast=True, direct=None,
...                           hash=True, timeout=None)                 # doctest: +SKIP
>>> backend.gather(futures, errors="raise", timeout=10)                # doctest: +SKIP
{'x-1': 42}
>>> backend.close()                                                    # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import CancelledError
import os
import pickle
import re
import warnings
import weakref
from typing import Callable

import dask.config
import distributed
from dask.sizeof import sizeof
from dask.utils import parse_timedelta
from distributed import Future, LocalCluster

from .. import discovery
from ..current_client import register_client
from ..errors import (
    ClientClosedError,
    FutureLostError,
    PollingFallbackWarning,
    SerializationError,
    UnknownWorkerError,
)
from ..structure import SKIP, find_futures, substitute
from . import views
from . import room
from .credentials import security_fields, security_from_fields
from .dashboard import dashboard_link
from .events import DaskSubscription, hub_for
from .failures import connection_error, quiet_reconnect, raise_gather_error
from .resend import resender_for

logger = logging.getLogger(__name__)


class DaskBackend:
    """One ``distributed.Client`` (and the ``LocalCluster`` it owns, if it started one)."""

    kind = "dask"

    def __init__(self, client: distributed.Client):
        self.client = client

    @property
    def cluster(self) -> LocalCluster | None:
        return _owned_clusters.get(self.client)

    @property
    def running(self) -> bool:
        return self.client.status == "running"

    @property
    def closed_reason(self) -> str | None:
        return None  # a Dask client that lost its scheduler says only its status

    def when_lost(self, callback: Callable[[str], None]) -> None:
        """Never called: the client says it lost its scheduler only by its status (the
        event hub looks at it only while a widget subscribes)."""

    @property
    def default_timeout(self) -> float | None:
        return parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s")

    # ------------------------------------------------------------ data ---
    def scatter(self, items: dict, *, workers, broadcast, direct, hash, timeout,
                progress=None) -> dict:
        """``progress`` hears the whole scatter as one stage (Dask's ``Client.scatter``
        says nothing on the way): its size, as ``dask.sizeof`` estimates it, at once,
        and the end; the bar shows the time between."""
        self._check_open()
        hub = hub_for(self.client)
        hub.install()  # once: events, and tasks' output in the notebook
        addresses = self.resolve_workers(workers)
        if not items:  # (an empty --split: Dask's own scatter of nothing fails to unpack)
            return {}
        sizes = {key: sizeof(value) for key, value in items.items()}  # dask.sizeof's guess
        total = sum(sizes.values())
        groups = self._placement(sizes, total, addresses, broadcast)  # refuses what cannot fit
        if progress is not None:
            progress("scatter", None, total)
        if groups is None:
            futures = self._scatter_to(items, addresses, broadcast, direct, hash, timeout)
        else:  # only some workers have room: each group of keys to the workers that do
            futures = {}
            for targets, keys in groups.items():
                futures.update(self._scatter_to({k: items[k] for k in keys}, list(targets),
                                                broadcast, direct, hash, timeout))
        if broadcast:
            self.pin(list(futures), addresses)
        hub.touch(futures)
        if progress is not None:
            progress("scatter", total, total)
        return futures

    def _placement(self, sizes: dict, total: int, addresses: list[str] | None,
                   broadcast: bool):
        """``room.plan`` for a scatter of ``sizes`` (key -> bytes): None when it fits as asked."""
        if total < room.CHECK_FROM:
            return None
        workers = self.scheduler_info()["workers"]
        allowed = addresses or sorted(workers)
        return room.plan(sizes, workers, [a for a in allowed if a in workers], broadcast,
                         *room.thresholds())

    def _scatter_to(self, items: dict, addresses, broadcast, direct, hash, timeout) -> dict:
        options = dict(workers=addresses, broadcast=broadcast, direct=direct, hash=hash)
        try:
            if timeout is None:  # as a user calls it: one trip to the loop, nothing around it
                return self.client.scatter(items, **options)  # Dask's default timeout
            return self._bounded(self.client.scatter(items, asynchronous=True,
                                                     timeout=timeout, **options), timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            self._take_back(items)
            raise TimeoutError(f"scatter did not finish within {timeout} s") from exc
        except (TypeError, pickle.PicklingError, AttributeError) as exc:
            self._take_back(items)
            if _is_pickling_error(exc):
                raise SerializationError(_root_message(exc)) from exc
            raise
        except Exception as exc:
            raise connection_error(self.client, exc) or exc

    def _bounded(self, awaitable, timeout: float | None):
        """Run ``awaitable`` on the client's loop; with ``timeout``, at most that long."""
        async def run():
            return await asyncio.wait_for(awaitable, timeout) if timeout else await awaitable
        return self.client.sync(run)

    def _take_back(self, items: dict) -> None:
        # A scatter cut short may have left data on workers, wanted by this client but
        # held by no Future: a Future made and released for each key lets it go.
        for key in items:
            Future(key, self.client).release()

    def pin(self, keys: list, workers: list | None) -> None:
        """Keep ``keys`` on every (allowed) worker while they live (``--broadcast``)."""
        hub = hub_for(self.client)
        if hub.install() == "plugin":
            self.client.sync(self.client.scheduler.scatter_magics_pin, keys=keys, workers=workers)
        else:
            _warn_polling(self.client, hub.install_error)

    def resend_from(self, sources: dict, *, workers, broadcast: bool) -> None:
        """Scatter a key again from ``sources[key]`` (``backend.Source``) when Dask lets
        it go with its last holder, with the same ``workers`` and ``broadcast``."""
        resender_for(self.client).keep(sources, workers, broadcast)

    def gather(self, futures, *, errors: str, timeout: float | None, progress=None):
        """``progress`` hears the whole gather as one stage, without a count (Dask
        says nothing on the way): the bar shows the time it takes."""
        self._check_open()
        hub_for(self.client).install()  # once: events, and tasks' output in the notebook
        if progress is not None:
            progress("gather", None, None)
        if (type(futures) is Future and futures.client is self.client and errors == "raise"
                and timeout is None and futures.status == "finished"):
            # The magics' usual case, as a user calls it: Dask's own gather of one future
            # (the general path's walk and rebuild cost ~60 us, 2% of a small round trip).
            try:
                return self.client.gather(futures)
            except CancelledError as exc:  # its holder died as we asked: re-sent, if it can be
                if not self._resent([futures], timeout):
                    raise_gather_error(self.client, exc, [futures])
            except Exception as exc:
                raise_gather_error(self.client, exc, [futures])
        found = find_futures(futures, Future)
        try:
            self._resent(found, timeout)  # data Dask let go, scattered again first
        except FutureLostError:
            if errors == "raise":
                raise
        try:
            return self._gather(futures, found, errors, timeout)
        except TimeoutError:
            raise
        except Exception as exc:
            raise_gather_error(self.client, exc, found)

    def _gather(self, futures, found: list, errors: str, timeout: float | None):
        if any(f.client is not self.client and f.client.status in ("closing", "closed")
               for f in found):  # this backend's own client was checked just above
            raise ClientClosedError("the client of these futures was closed")
        if timeout is not None or errors == "skip":  # else Dask's gather waits by itself
            self._wait(found, timeout)
        wanted = [f for f in found if errors == "raise" or f.status == "finished"]
        values = dict(zip((f.key for f in wanted), self.client.gather(wanted), strict=True))
        values.update({f.key: SKIP for f in found if f.key not in values})
        return substitute(futures, Future, values)

    def _resent(self, futures: list, timeout: float | None) -> bool:
        """Wait for the re-sends of ``futures`` whose data Dask let go (``resend.py``);
        False if none of them can be re-sent."""
        resender = resender_for(self.client, make=False)
        if resender is None or not any(resender.resends(f.key) for f in futures):
            return False
        resender.ensure(futures, timeout)
        return True

    def _wait(self, futures: list, timeout: float | None) -> None:
        try:
            with self.client.as_current():  # distributed.wait uses the current client
                distributed.wait(futures, timeout=timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise TimeoutError(f"gather did not finish within {timeout} s") from exc

    # ------------------------------------------------------------ the cluster ---
    def resolve_workers(self, workers) -> list[str] | None:
        """Addresses for ``workers`` given as addresses, ``(host, port)`` or names."""
        if workers is None:
            return None
        known = self._workers()
        by_name = {str(w["name"]): a for a, w in known.items()}
        by_hostport = {a.split("://", 1)[-1]: a for a in known}
        out = []
        for w in [workers] if isinstance(workers, (str, tuple)) else workers:
            text = f"{w[0]}:{w[1]}" if isinstance(w, tuple) else str(w)
            address = (text if text in known else by_name.get(text) or by_hostport.get(text))
            if address is None:
                names = ", ".join(sorted(by_name, key=_natural)) or "none"
                raise UnknownWorkerError(f"unknown worker {w!r}; known workers: {names}")
            out.append(address)
        return out

    def scheduler_info(self) -> dict:
        self._check_open()
        info = {"address": self.client.scheduler.address, "workers": self._workers(),
                "datasets": self.client.sync(views.datasets, self.client)}
        link = dashboard_link(self.client)
        return {**info, "dashboard_link": link} if link else info

    def _workers(self) -> dict:
        """``scheduler_info()["workers"]`` alone (one trip: ``-w`` resolves names often)."""
        self._check_open()
        if hub_for(self.client).install() == "plugin":
            return self.client.sync(self.client.scheduler.scatter_magics_workers)
        # Asked, not Client.scheduler_info(): that returns a cache which the client's
        # 2 s refresh (asking for no workers) may overwrite between fetch and return.
        return _workers_from_identity(
            self.client.sync(self.client.scheduler.identity, n_workers=-1))

    # ------------------------------------------------------------ datasets ---
    def publish(self, name, data) -> None:
        self._check_open()
        self.client.publish_dataset(data, name=name, override=True)

    def get_dataset(self, name):
        self._check_open()
        return self.client.get_dataset(name)

    def registry_fields(self) -> dict:
        """What the discovery registry needs to reach this client's scheduler, and show."""
        return {"secret": None, "security": security_fields(self.client.security),
                "dashboard_link": dashboard_link(self.client)}

    def has_what(self) -> dict:
        self._check_open()
        return {a: [str(k) for k in keys] for a, keys in self.client.has_what().items()}

    def n_workers(self) -> int:
        self._check_open()
        return len(self.client.nthreads())

    def overview(self) -> dict:
        self._check_open()
        return self.client.sync(views.overview, self.client)

    def memory_history(self) -> dict:
        self._check_open()
        return self.client.sync(views.history, self.client)

    def task_stream(self, since: int = 0) -> dict:
        self._check_open()
        return self.client.sync(views.tasks, self.client, since)

    def subscribe_events(self, callback: Callable[[list], None]) -> DaskSubscription:
        self._check_open()
        hub = hub_for(self.client)
        if hub.install() == "poll":
            _warn_polling(self.client, hub.install_error)
        subscription = DaskSubscription(hub, callback)
        self.client.sync(hub.add, subscription)
        return subscription

    def _check_open(self) -> None:
        if self.client.status in ("closing", "closed"):
            raise ClientClosedError("the Dask client was closed")

    # ------------------------------------------------------------ lifecycle ---
    def close(self) -> None:
        """Close the client; a LocalCluster it started ends too, a remote one keeps running."""
        cluster = self.cluster
        resender = resender_for(self.client, make=False)
        if resender is not None:
            resender.close()
        if self.client.status == "running":
            hub = hub_for(self.client)
            if cluster is None:  # a cluster we joined: take our plugins off if we were last
                hub.leave()
            self.client.sync(_on_loop, hub.close)
        with quiet_reconnect(self.client):  # (its scheduler is gone: said in one line)
            self.client.close()
        if cluster is not None:
            discovery.unregister(_registry_entries.pop(cluster, None))
            cluster.close()

    @classmethod
    def start(cls, *, n_workers=None, threads_per_worker=1, memory_limit="auto") -> "DaskBackend":
        """A Dask ``LocalCluster`` of worker processes on 127.0.0.1, owned by the client."""
        n = n_workers or os.cpu_count() or 1
        cluster = NamedLocalCluster(n_workers=0, processes=True, host="127.0.0.1",
                                    threads_per_worker=threads_per_worker,
                                    memory_limit=memory_limit, dashboard_address=None,
                                    # no dashboard, and its HTTP server (health, metrics) on
                                    # a free port rather than 8787, which may be taken
                                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        try:
            cluster.scale(n)
            client = distributed.Client(cluster, set_as_default=False)
            client.wait_for_workers(n)
        except BaseException:
            cluster.close()
            raise
        _owned_clusters[client] = cluster
        register_client(client)
        _advertise(cluster)
        return cls(client)

    @classmethod
    def connect(cls, address: str | None = None, *, scheduler_file: str | None = None,
                security=None, timeout: float = 10) -> "DaskBackend":
        """A client of the scheduler at ``address`` (or in ``scheduler_file``)."""
        if isinstance(security, dict) and "class" in security:  # from the registry
            security = security_from_fields(security)
        elif isinstance(security, dict):  # %cluster connect's --tls-* options
            security = distributed.Security(require_encryption=True, **security)
        if (address or "").startswith("tls://") and security is None:
            raise ValueError("a tls:// scheduler needs TLS files: --tls-ca-file, "
                             "--tls-client-cert and --tls-client-key, or a "
                             "distributed.Security in ScatterMagics.dask_security")
        client = distributed.Client(address, scheduler_file=scheduler_file, security=security,
                                    timeout=timeout, set_as_default=False)
        register_client(client)
        return cls(client)


class NamedLocalCluster(LocalCluster):
    """A Dask ``LocalCluster`` whose workers are named ``worker-0``, ``worker-1``… as ours."""

    def _new_worker_name(self, worker_number):  # the hook SpecCluster documents for this
        return f"worker-{worker_number}"


_owned_clusters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> cluster
_registry_entries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # cluster -> entry


def _advertise(cluster: LocalCluster) -> None:
    """Put a cluster we started in the discovery registry, for the Jupyter sidebar.

    A Dask LocalCluster on loopback takes no credential, so none is written."""
    try:
        _registry_entries[cluster] = discovery.register(
            backend="dask", scheduler_address=cluster.scheduler_address, secret=None)
    except Exception as exc:  # e.g. a read-only runtime dir: the cluster still works
        logger.warning("this Dask cluster is not in the discovery registry (the Jupyter "
                       "sidebar will not show it): %r", exc)


def _on_loop(fn):
    async def run():
        fn()
    return run()


def _warn_polling(client, error) -> None:
    hub = hub_for(client)
    if getattr(hub, "warned", False):
        return
    hub.warned = True
    warnings.warn(PollingFallbackWarning(
        f"the scheduler at {client.scheduler.address} did not accept the scatter_magics "
        f"event plugin ({type(error).__name__}: {error}); the live view polls it once a "
        f"second instead, and --broadcast replicas are not protected from the Active "
        f"Memory Manager"), stacklevel=3)


def _workers_from_identity(info: dict) -> dict:
    out = {}
    for address, w in info.get("workers", {}).items():
        metrics = w.get("metrics", {})
        out[address] = {"name": str(w.get("name", address)), "nthreads": w.get("nthreads", 0),
                        "memory_limit": w.get("memory_limit") or 0,
                        "memory": metrics.get("memory", 0),
                        "nbytes": metrics.get("managed_bytes", 0), "nkeys": None}
    return out


def _is_pickling_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, pickle.PicklingError) or "pickle" in text or "serializ" in text


def _root_message(exc: BaseException) -> str:
    """The first error of a chain (Dask wraps "cannot pickle 'lock'" twice)."""
    while (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc)


def _natural(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
