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
import logging
import os
import sys
import threading
import uuid
import weakref
from typing import Callable

from ...current_client import register_client
from ...errors import ClientClosedError
from ...progress_callback import Progress, no_progress
from ...structure import find_futures, substitute
from ...tokenize import tokenize
from ..cluster.local import LocalCluster, find_local_cluster
from ..shm.mapper import SegmentMapper
from ..wire.loop import LoopThread, ready, wants_awaitable
from ..wire.peers import WorkerPool
from ..wire.serialize import serialize_task
from .callbacks import DoneCallbacks
from .events import EventStream, Subscription
from .future import Future
from .gather import Gathering, flat_futures, local_values, views_in
from .gc_pause import paused_collection
from .link import LocalSchedulerLink, RemoteSchedulerLink
from .references import References
from .scatter import Scattering
from .scatter_input import full_address, plain_workers
from .send_ahead import LOCAL_COPY_LIMIT, SendAhead

__all__ = ["Client", "Subscription", "NO_DEFAULT", "LOCAL_COPY_LIMIT"]

logger = logging.getLogger(__name__)

NO_DEFAULT = "__no_default__"
DEFAULT_TIMEOUT = 30.0  # seconds to connect, and to wait for workers to appear
SECRET_ENV = "SCATTER_MAGICS_SECRET"


class Client:
    """Connects to a cluster (or starts an embedded one) and moves data and work to it.

    ``Client()`` starts a :class:`LocalCluster` owned by this client and ended by
    :meth:`close`. ``Client(cluster)`` or ``Client(address)`` connects to an existing one;
    a scheduler in another process needs its secret (``secret=`` or the
    ``SCATTER_MAGICS_SECRET`` environment variable).

    What it is made of: ``refs`` (:class:`References`, the keys its Futures hold),
    its event subscriptions (:class:`EventStream`), the scattering and the gathering
    (:class:`Scattering`, :class:`Gathering`, on the loop thread), and ``done_callbacks``
    (:class:`DoneCallbacks`); each is given only the links, pools and callables it uses.
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
        # Made now, wired in _start: the scheduler may report before _start returns.
        self.refs = References()
        self._events = EventStream()
        self.done_callbacks = DoneCallbacks()
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
            self._link = self._connect(cluster)
        except BaseException:
            self._shutdown_owned()
            raise
        self._assemble()
        self.status = "running"
        register_client(self)

    def _connect(self, cluster: LocalCluster | None):
        if cluster is not None:
            self.cluster, self.loop, self.secret = cluster, cluster.loop, cluster.secret
            return self.loop.sync(self._open_local(cluster.scheduler))
        self.secret = self._secret or os.environ.get(SECRET_ENV)
        if not self.secret:
            raise ValueError(f"connecting to {self._address!r} needs the cluster's secret: "
                             f"pass secret= or set ${SECRET_ENV}")
        self.loop, self._owns_loop = LoopThread("scatter-magics-client"), True
        return self.loop.sync(RemoteSchedulerLink.open(
            full_address(self._address), self.secret, self._on_report, self.timeout))

    async def _open_local(self, scheduler) -> LocalSchedulerLink:
        return LocalSchedulerLink(scheduler, self._on_report)

    def _assemble(self) -> None:
        """Make the parts that use the link, each given only what it uses (no ``self``:
        the scheduler and the loop outlive a client the user dropped)."""
        link = self._link
        self._workers = WorkerPool(self.secret)
        pool = self.cluster.shm_pool if self.cluster is not None else None
        self._segments = SegmentMapper()  # other processes' shared memory, for gather
        self._ahead = SendAhead(self.loop, link)  # small scatters, not waited for
        self.refs.start(self.loop, self._ahead.in_flight, _releaser(link))
        self._events.start(self.loop, link)
        self._gathering = Gathering(link, self._workers, views_in(pool, self._segments))
        self._scattering = Scattering(link, self._workers, pool, self.cluster is not None,
                                      self._ahead, self.refs.get)

    def _on_report(self, msg: dict) -> None:
        if msg["op"] == "events":
            self._events.publish(msg["events"])
        elif msg["op"] == "key-update":
            self.refs.apply(msg)
        elif msg["op"] == "worker-unresponsive" and hasattr(self, "_workers"):
            self._workers.fail_pending(msg["address"], msg["error"])

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

    def sync(self, func, *args, asynchronous: bool | None = None, callback_timeout=None,
             **kwargs):
        """Run the coroutine ``func(*args, **kwargs)`` on the client's loop, as Dask's does.

        Blocks for its result, or returns an awaitable for an asynchronous client (or
        ``asynchronous=True``); ``callback_timeout`` (seconds) raises ``TimeoutError``.
        ``wait()`` and ``Future.exception()`` go through here, as they do in Dask.
        """
        self._check_open()
        return self._run(_within(func(*args, **kwargs), callback_timeout), asynchronous)

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
            batch = self._scattering.pack(data, hash, progress, self)
            direct = self._direct(direct)
            wait = self.timeout if timeout is NO_DEFAULT else timeout
            if (progress is None and workers is None and not broadcast and timeout is NO_DEFAULT
                    and not direct and not wants_awaitable(self, asynchronous)
                    and self._scattering.send_ahead(batch, wait)):
                return batch.result
            coro = _within(self._scattering.send(
                batch, plain_workers(workers), broadcast, direct, wait,
                timeout is not NO_DEFAULT, progress or no_progress), timeout)
            return self._run(coro, asynchronous, then=lambda _: batch.result)

    def _direct(self, direct: bool | None) -> bool:
        if direct is None:
            direct = self.direct_to_workers
        if direct is None:  # in-process, the scheduler path costs no copy; remote, one hop less
            direct = not isinstance(self._link, LocalSchedulerLink)
        return direct

    # ------------------------------------------------------------ gather ---
    def gather(self, futures, errors: str = "raise", direct: bool | None = None,
               asynchronous: bool | None = None, timeout: float | None = None,
               progress: Progress | None = None):
        """Bring the values of ``futures`` back, in the same (nested) structure.

        ``errors="raise"`` re-raises a failed task's own exception; ``"skip"`` drops
        failed futures from the result. ``timeout`` bounds the wait (Dask has none).
        ``progress(stage, done, total)``: as for :meth:`scatter` (stages ``wait``, in
        futures, and ``transfer``, in bytes).
        """
        self._check_open()
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        found = flat_futures(futures)
        if found is None:
            found = find_futures(futures, Future)
        for f in found:
            if f.client is not self:
                raise ValueError(f"future {f.key!r} belongs to another client")
        # Paused for the values made here only: waiting on the loop may take minutes.
        with paused_collection(len(found)):
            local = local_values(futures, found)
        if local is not None:  # every value is here already: no loop, no worker
            return ready(local) if wants_awaitable(self, asynchronous) else local
        states = {f.key: f._state for f in found}
        coro = _within(self._gathering.read(states, errors, self._direct(direct),
                                            progress or no_progress), timeout)
        return self._run(coro, asynchronous, then=lambda serialized: substitute(
            futures, Future, self._gathering.values(serialized)))

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

    # ------------------------------------------------------------ events ---
    def subscribe_events(self, callback: Callable[[list], None]) -> Subscription:
        """Call ``callback(batch)`` on the loop thread with scheduler events.

        The first batch is a snapshot; see ``docs/internals.md`` for the event records.
        """
        self._check_open()
        return self._events.subscribe(callback)

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
        self.done_callbacks.close()

    async def _close_links(self) -> None:
        self.refs.close()  # every future not done is cancelled
        self._events.close()  # say so, so a widget can show it
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


async def _within(coro, timeout):
    if timeout is None or timeout is NO_DEFAULT:
        return await coro
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"operation did not finish within {timeout} s") from None


def _releaser(link) -> Callable[[list], None]:
    """``send_release(keys)``: tell the scheduler no Future of ours holds ``keys`` now."""
    def send_release(keys: list) -> None:
        if not link.closed:
            link.send({"op": "release-keys", "keys": keys})
    return send_release


def _n_values(data) -> int:
    """How many values (so futures) a scatter of ``data`` makes."""
    return len(data) if type(data) in (list, tuple, set, frozenset, dict, range) else 1


def _keys_of(futures) -> list[str]:
    return [f.key for f in find_futures(futures, Future)]


def _task_key(prefix: str, func, args, kwargs: dict, pure: bool) -> str:
    """``prefix-<token of the call>`` when pure (the same call, the same key), else random."""
    return f"{prefix}-{tokenize(func, args, kwargs) if pure else uuid.uuid4().hex}"
