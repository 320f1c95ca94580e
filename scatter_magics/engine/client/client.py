"""``Client``: scatter, gather and compute on a cluster, with Dask's API.

>>> from scatter_magics import Client
>>> client = Client(n_workers=2)                           # doctest: +SKIP
>>> [f] = client.scatter([list(range(10))], broadcast=True)  # doctest: +SKIP
>>> client.gather([client.submit(sum, f) for _ in range(3)])   # doctest: +SKIP
[45, 45, 45]
>>> client.close()                                         # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import sys
import threading
import uuid
import weakref
from typing import Callable

from ...current_client import register_client
from ...errors import ClientClosedError
from ...progress import Progress, no_progress
from ...progress import counter as _counter
from ...structure import find_futures
from ...tokenize import reporting, tokenize
from ..cluster.local import LocalCluster, find_local_cluster
from ..scheduler.placing import place
from ..shm.mapper import SegmentMapper
from ..wire.loop import LoopThread, wants_awaitable
from ..wire.peers import WorkerPool
from ..wire.serialize import for_message, serialize_task
from .events import Events, Subscription
from .future import Future, FutureState
from .gather import Gathering
from .gc_pause import paused_collection
from .link import LocalSchedulerLink, RemoteSchedulerLink
from .references import References
from .scatter_copy import serialize_for_scatter, write_ahead
from .scatter_input import full_address, keyed_items, plain_workers
from .send_ahead import LOCAL_COPY_LIMIT, SendAhead

logger = logging.getLogger(__name__)

NO_DEFAULT = "__no_default__"
DEFAULT_TIMEOUT = 30.0  # seconds to connect, and to wait for workers to appear
SECRET_ENV = "SCATTER_MAGICS_SECRET"
TAKE_BACK_TIMEOUT = 5.0  # s; a failed direct scatter asks the scheduler what to delete


class Client(Gathering, Events, References):
    """Connects to a cluster (or starts an embedded one) and moves data and work to it.

    ``Client()`` starts a :class:`LocalCluster` owned by this client and ended by
    :meth:`close`. ``Client(cluster)`` or ``Client(address)`` connects to an existing one;
    a scheduler in another process needs its secret (``secret=`` or the
    ``SCATTER_MAGICS_SECRET`` environment variable).
    """

    def __init__(self, address=None, *, n_workers: int | None = None, threads_per_worker: int = 1,
                 memory_limit="auto", asynchronous: bool = False,
                 direct_to_workers: bool | None = None, timeout: float = DEFAULT_TIMEOUT,
                 secret: str | None = None):
        self._address = address
        self._cluster_options = dict(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                     memory_limit=memory_limit)
        self.asynchronous = asynchronous
        self.direct_to_workers = direct_to_workers
        self.timeout = timeout
        self._secret = secret
        self.status = "newly-created"
        self.cluster: LocalCluster | None = None
        self._owns_cluster = self._owns_loop = False
        self._states: dict[str, FutureState] = {}
        self._refcount: dict[str, int] = {}
        self._lock = threading.Lock()
        self._dropped: collections.deque[str] = collections.deque()  # keys of dropped futures
        self._flush_scheduled = False
        self._subscriptions: list[Subscription] = []
        self._callback_executor: concurrent.futures.ThreadPoolExecutor | None = None
        if not asynchronous:
            self._start()

    # ------------------------------------------------------------ starting ---
    def _start(self) -> None:
        cluster = self._address if isinstance(self._address, LocalCluster) else None
        if self._address is None:
            cluster = LocalCluster(**self._cluster_options)
            cluster.owner = weakref.ref(self)
            self._owns_cluster = True
        elif isinstance(self._address, str):
            cluster = find_local_cluster(full_address(self._address))
        try:
            if cluster is not None:
                self.cluster, self.loop, self.secret = cluster, cluster.loop, cluster.secret
                self._link = self.loop.sync(self._open_local(cluster.scheduler))
            else:
                self.secret = self._secret or os.environ.get(SECRET_ENV)
                if not self.secret:
                    raise ValueError(f"connecting to {self._address!r} needs the cluster's secret: "
                                     f"pass secret= or set ${SECRET_ENV}")
                self.loop, self._owns_loop = LoopThread("scatter-magics-client"), True
                self._link = self.loop.sync(RemoteSchedulerLink.open(
                    full_address(self._address), self.secret, self._on_report, self.timeout))
        except BaseException:
            self._shutdown_owned()
            raise
        self._workers = WorkerPool(self.secret)
        self._pool = self.cluster.shm_pool if self.cluster is not None else None
        self._segments = SegmentMapper()  # other processes' shared memory, for gather
        self._ahead = SendAhead(self.loop, self._link)  # small scatters, not waited for
        self.status = "running"
        register_client(self)

    async def _open_local(self, scheduler) -> LocalSchedulerLink:
        return LocalSchedulerLink(scheduler, self._on_report)

    def __await__(self):
        async def start():
            if self.status == "newly-created":
                await asyncio.to_thread(self._start)
            return self
        return start().__await__()

    @property
    def scheduler_address(self) -> str:
        return self.cluster.scheduler_address if self.cluster else full_address(self._address)

    # ------------------------------------------------------------ the door ---
    def _check_open(self) -> None:
        if self.status != "running":
            raise ClientClosedError(f"this Client is {self.status}; create a new Client()"
                                    if self.status == "closed" else
                                    "this asynchronous Client was not started: await it first")

    def _run(self, coro, asynchronous: bool | None, then: Callable = lambda x: x):
        """Run ``coro`` on the loop: block for the result, or return an awaitable."""
        coro = self._ahead.after_sent(coro)  # never ahead of a scatter sent ahead
        if wants_awaitable(self, asynchronous):
            async def awaitable():
                return then(await asyncio.wrap_future(self.loop.submit(coro)))
            return awaitable()
        return then(self.loop.sync(coro))

    @staticmethod
    async def _within(coro, timeout):
        if timeout is None or timeout is NO_DEFAULT:
            return await coro
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"operation did not finish within {timeout} s") from None

    # ------------------------------------------------------------ scatter ---
    def scatter(self, data, workers=None, broadcast: bool = False, direct: bool | None = None,
                hash: bool = True, timeout=NO_DEFAULT, asynchronous: bool | None = None,
                progress: Progress | None = None):
        """Move ``data`` into the workers' memory; the result matches the input's shape.

        One object gives one Future; a list, tuple, set or frozenset gives the same
        container of Futures; a dict gives a dict of Futures keyed (and named) by its
        keys. ``workers`` restricts placement; ``broadcast`` puts a copy on every
        (allowed) worker; ``direct`` sends client → workers instead of through the
        scheduler; ``hash`` makes keys from the content (``False``: random keys);
        ``timeout`` bounds the whole operation. ``progress(stage, done, total)`` (ours,
        not Dask's) hears how far hashing, serializing, copying and sending have got
        (docs/internals.md, "The backend interface").
        """
        self._check_open()
        with paused_collection(_n_values(data)):
            return self._scatter_sync(data, workers, broadcast, direct, hash, timeout,
                                      asynchronous, progress)

    def _scatter_sync(self, data, workers, broadcast, direct, hash, timeout, asynchronous,
                      progress):
        report = progress or no_progress
        early = write_ahead(self._pool, data, progress) if hash else None
        try:
            with reporting(_counter(report, "hash") if progress else None):
                items, rebuild = keyed_items(data, hash)  # hashing, while `early` copies
            futures = Future.for_keys(items, self)
            payload, pinned = serialize_for_scatter(items, self._pool, self.cluster is not None,
                                                    early, progress)
        finally:
            if early is not None:
                early.close()
        types = {key: type(value).__name__ for key, value in items.items()}
        if (progress is None and workers is None and not broadcast and timeout is NO_DEFAULT
                and not wants_awaitable(self, asynchronous) and not self._direct(direct)):
            states = [f._state for f in futures.values()]
            if self._ahead.send(payload, types, states, lambda: self._send_scatter(
                    payload, types, None, False, False, NO_DEFAULT)):
                return rebuild(futures)
        coro = self._within(self._scatter(payload, types, plain_workers(workers), broadcast,
                                          direct, timeout, pinned, report), timeout)
        return self._run(coro, asynchronous, then=lambda _: rebuild(futures))

    def _view_of(self, ref):
        if self._pool is not None and self._pool.owns(ref.name):
            return self._pool.view(ref)
        return self._segments.view(ref)

    async def _scatter(self, payload, types, workers, broadcast, direct, timeout,
                       pinned, report: Progress) -> None:
        # A sum over every value: only for someone watching (10,000-element scatters).
        total = sum(s.nbytes for s in payload.values()) if report is not no_progress else 0
        report("transfer", 0, total)
        try:
            await self._send_scatter(payload, types, workers, broadcast, direct, timeout)
            report("transfer", total, total)
        finally:  # sent (the scheduler has recorded the keys) or failed: unpin either way
            if pinned:
                self._pool.unpin(pinned)
        states = self._states
        for key, serialized in payload.items():
            state = states.get(key)
            if state is not None:
                # The pickle alone (bytes): no object for the garbage collector per key.
                # kept_locally(), inlined: a call less per element of a long list.
                small = not serialized.buffers and len(serialized.header) <= LOCAL_COPY_LIMIT
                state.finish(types[key], serialized.header if small else None)

    async def _send_scatter(self, payload, types, workers, broadcast, direct, timeout) -> None:
        wait = self.timeout if timeout is NO_DEFAULT else timeout
        payload, nbytes, shared = for_message(payload)
        if self._direct(direct):
            async def choose(keys, exclude):
                return await self._link.request({
                    "op": "choose-workers", "n": len(keys), "workers": workers,
                    "broadcast": broadcast, "timeout": wait, "exclude": exclude,
                    "nbytes": {k: nbytes[k] for k in keys}})

            async def put(address, keys):
                return await self._workers.request(
                    address, {"op": "put-data", "data": {k: payload[k] for k in keys}})

            async def record(placement):
                return await self._link.request({"op": "update-data", "placement": placement,
                                                 "nbytes": nbytes, "types": types,
                                                 "shared": shared, "broadcast": broadcast,
                                                 "workers": workers})
            await place(list(payload), choose, put, record, self._take_back)
        else:
            # An explicit timeout asks to know the data arrived within it: then the
            # scheduler waits for the workers' acknowledgements (see Scheduler._scatter).
            await self._link.request({"op": "scatter", "data": payload, "workers": workers,
                                      "broadcast": broadcast, "nbytes": nbytes, "types": types,
                                      "shared": shared, "timeout": wait,
                                      "confirm": timeout is not NO_DEFAULT})

    async def _take_back(self, by_worker: dict) -> None:
        """Delete what a failed direct scatter may have left on workers, unrecorded.

        The scheduler names the keys it does not record there (the same content may be
        held from an earlier scatter); the deletes go over our own channel to each
        worker, so they arrive after our put-data, never before it.
        """
        keys = {address: list(data) for address, data in by_worker.items()}
        try:
            orphans = await asyncio.wait_for(
                self._link.request({"op": "unrecorded", "by_worker": keys}), TAKE_BACK_TIMEOUT)
        except Exception as exc:  # the scheduler is gone or stuck: nothing to reconcile with
            logger.warning("could not take back a failed scatter's data: %r", exc)
            return
        for address, orphan_keys in orphans.items():
            self._workers.send(address, {"op": "delete-keys", "keys": orphan_keys})

    def _direct(self, direct: bool | None) -> bool:
        if direct is None:
            direct = self.direct_to_workers
        if direct is None:  # in-process, the scheduler path costs no copy; remote, one hop less
            direct = not isinstance(self._link, LocalSchedulerLink)
        return direct

    # ------------------------------------------------------------ compute ---
    def submit(self, func, *args, key: str | None = None, workers=None, pure: bool = True,
               **kwargs) -> Future:
        """Run ``func(*args, **kwargs)`` on a worker; futures in the arguments become values.

        The task runs where its largest input already lives, unless ``workers`` says
        otherwise; inputs held elsewhere are fetched worker-to-worker.
        """
        return self._submit_many(func, [args], [key], workers, pure, kwargs)[0]

    def map(self, func, *iterables, key=None, workers=None, pure: bool = True, **kwargs) -> list:
        """``submit`` for each element of the iterables; one message for all of them."""
        argsets = list(zip(*iterables))
        keys = key if isinstance(key, (list, tuple)) else [None] * len(argsets)
        if isinstance(key, str):
            keys = [_task_key(key, func, a, kwargs, pure) for a in argsets]
        if len(keys) != len(argsets):
            raise ValueError(f"map() got {len(keys)} keys for {len(argsets)} tasks")
        return self._submit_many(func, argsets, keys, workers, pure, kwargs)

    def _submit_many(self, func, argsets, keys, workers, pure, kwargs) -> list:
        self._check_open()
        if not callable(func):
            raise TypeError(f"submit() needs a callable, got {type(func).__name__!r}")
        name = getattr(func, "__name__", type(func).__name__)
        tasks, futures = [], []
        for args, key in zip(argsets, keys):
            key = key or _task_key(name, func, args, kwargs, pure)
            task, deps = serialize_task((func, tuple(args), kwargs), self._key_of)
            futures.append(Future(key, self))
            tasks.append((key, task, deps, plain_workers(workers)))
        self._run(self._link.request({"op": "submit", "tasks": tasks}), asynchronous=False)
        return futures

    def _key_of(self, obj) -> str | None:
        if isinstance(obj, Future):
            if obj.client is not self:
                raise ValueError(f"future {obj.key!r} belongs to another client")
            return obj.key
        return None

    # ------------------------------------------------------------ placement ---
    def who_has(self, futures=None, asynchronous: bool | None = None) -> dict:
        """``{key: [worker addresses]}`` for ``futures`` (default: every key)."""
        self._check_open()
        keys = None if futures is None else _keys_of(futures)
        return self._run(self._link.request({"op": "who-has", "keys": keys}), asynchronous)

    def has_what(self, workers=None, asynchronous: bool | None = None) -> dict:
        """``{worker address: [keys]}``."""
        self._check_open()
        msg = {"op": "has-what", "workers": plain_workers(workers)}
        return self._run(self._link.request(msg), asynchronous)

    def nthreads(self, asynchronous: bool | None = None) -> dict:
        """``{worker address: threads}``."""
        self._check_open()
        return self._run(self._link.request({"op": "scheduler-info"}), asynchronous,
                         then=lambda info: {a: w["nthreads"] for a, w in info["workers"].items()})

    def scheduler_info(self, asynchronous: bool | None = None) -> dict:
        """The scheduler's address and, per worker, name, threads, memory and bytes held."""
        self._check_open()
        return self._run(self._link.request({"op": "scheduler-info"}), asynchronous)

    def cancel(self, futures, force: bool = False, asynchronous: bool | None = None) -> None:
        """Stop and forget ``futures``; ``force`` also when other clients hold them."""
        self._check_open()
        msg = {"op": "cancel", "keys": _keys_of(futures), "force": force}
        return self._run(self._link.request(msg), asynchronous)

    def replicate(self, futures, n: int | None = None, workers=None,
                  asynchronous: bool | None = None) -> None:
        """Keep each future's data on ``n`` workers (default: all of ``workers``).

        Copies go to the workers holding the least data; with more than ``n`` replicas
        among ``workers``, the extra ones are deleted (as in Dask).
        """
        self._check_open()
        msg = {"op": "replicate", "keys": _keys_of(futures), "n": n,
               "workers": plain_workers(workers)}
        return self._run(self._link.request(msg), asynchronous)

    # ------------------------------------------------------------ closing ---
    def close(self, timeout=NO_DEFAULT):
        """Release everything this client holds; end the cluster if this client started it.

        An asynchronous client returns an awaitable, as Dask's does: ``await client.close()``.
        """
        if self.asynchronous:
            return self._close_in_thread()
        self._close()

    async def _close_in_thread(self) -> None:
        # Closing joins the loop thread and the workers: not on the caller's event loop.
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        if self.status == "closed":
            return
        if self.status == "running" and self.loop.running:
            try:
                self.loop.sync(self._close_links(), DEFAULT_TIMEOUT)
            except Exception:
                logger.exception("error while closing the client")
        self.status = "closed"
        self._shutdown_owned()
        if self._callback_executor is not None:
            self._callback_executor.shutdown(wait=True)

    async def _close_links(self) -> None:
        for state in list(self._states.values()):
            if not state.done():
                state.cancel()
        self._publish([{"event": "closed"}])  # say so, so a widget can show it
        self._subscriptions.clear()
        self._workers.close()
        self._link.close()
        self._segments.close()

    def _shutdown_owned(self) -> None:
        if self._owns_cluster and self.cluster is not None:
            self.cluster.close()
        elif self._owns_loop:
            self.loop.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    async def __aenter__(self):
        return await self

    async def __aexit__(self, *exc) -> None:
        await self._close_in_thread()

    def __del__(self):
        # A dropped client that started its cluster ends it. Not inline: the collector
        # may run us on the loop thread (where close() cannot wait) or mid-operation.
        # At interpreter exit atexit has closed the cluster already, and a thread started
        # during finalization waits forever (a script that never closed its Client hung).
        if getattr(self, "status", "closed") == "running" and self._owns_cluster \
                and self.cluster.status != "closed" and not sys.is_finalizing():
            threading.Thread(target=self._close, name="scatter-magics-close", daemon=True).start()

    def __repr__(self) -> str:
        if self.status != "running":
            return f"<Client: {self.status}>"
        return f"<Client: scheduler={self.scheduler_address!r} status={self.status}>"


def _n_values(data) -> int:
    """How many values (so futures) a scatter of ``data`` makes."""
    return len(data) if type(data) in (list, tuple, set, frozenset, dict, range) else 1


def _keys_of(futures) -> list[str]:
    return [f.key for f in find_futures(futures, Future)]


def _task_key(prefix: str, func, args, kwargs: dict, pure: bool) -> str:
    """``prefix-<token of the call>`` when pure (the same call, the same key), else random."""
    return f"{prefix}-{tokenize(func, args, kwargs) if pure else uuid.uuid4().hex}"
