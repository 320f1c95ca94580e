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
import sys
import threading
from collections.abc import Iterator
from typing import Callable

from ... import task_output
from ...current_client import register_client
from ...keys import random_token
from ...progress_callback import Progress, no_progress
from ...structure import find_futures, substitute
from ..cluster.local import LocalCluster
from ..shm.mapper import SegmentMapper
from ..wire.loop import ready, wants_awaitable
from ..wire.peers import WorkerPool
from ..wire.serialize import IN_PROCESS, PICKLED
from . import cluster_methods, dask_default, datasets, describing, graphs, queries
from .callbacks import DoneCallbacks
from .ending import Ending, run_on
from .events import EventStream, Subscription
from .future import Future, keys_of
from .gather import Gathering, flat_futures, local_values, views_in
from .gc_pause import paused_collection
from .housekeeping import Housekeeping
from .connecting import SECRET_ENV, open_connection
from .link import LocalSchedulerLink, releaser
from .references import References
from .resending import Resending
from .scatter import Scattering
from .scatter_input import full_address, n_values, plain_workers
from .send_ahead import LOCAL_COPY_LIMIT, SendAhead
from .submit import key_finder, map_keys, task_records
from .task_options import task_options
from .waiting import NO_DEFAULT, timeout_seconds, within

__all__ = ["Client", "Subscription", "NO_DEFAULT", "LOCAL_COPY_LIMIT", "SECRET_ENV"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0  # seconds to connect, and to wait for workers to appear


class Client:
    """Connects to a cluster (or starts an embedded one) and moves data and work to it.

    ``Client()`` starts a :class:`LocalCluster` owned by this client and ended by
    :meth:`close`. ``Client(cluster)`` or ``Client(address)`` connects to an existing one;
    a scheduler in another process needs its secret (``secret=`` or the
    ``SCATTER_MAGICS_SECRET`` environment variable).

    Made of ``refs`` (:class:`References`: the keys its Futures hold), :class:`EventStream`,
    :class:`Scattering` and :class:`Gathering` (on the loop thread) and ``done_callbacks``
    (:class:`DoneCallbacks`), each given only the links, pools and callables it uses.
    """

    def __init__(self, address=None, *, n_workers: int | None = None, threads_per_worker: int = 1,
                 memory_limit="auto", asynchronous: bool = False,
                 direct_to_workers: bool | None = None, timeout=DEFAULT_TIMEOUT,
                 secret: str | None = None, processes: bool = True,
                 resources: dict | None = None):
        self._address = address
        self._cluster_options = dict(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                     memory_limit=memory_limit, processes=processes,
                                     resources=resources)
        self.asynchronous = asynchronous
        self.id = f"Client-{random_token()}"  # (Dask's form; not uuid: see random_token)
        self.direct_to_workers = direct_to_workers
        self.timeout, self._secret = timeout_seconds(timeout), secret  # ("5s" too)
        self.status = "newly-created"
        self.ending = Ending()  # why it closed, when its scheduler went away under it
        self.cluster: LocalCluster | None = None
        self._owns_cluster, self._connection = False, None
        # Made now, wired in _start: the scheduler may report before _start returns.
        self.refs = References()
        self._events = EventStream()
        self.done_callbacks = DoneCallbacks()
        if not asynchronous:
            self._start()

    # ------------------------------------------------------------ starting ---
    def _start(self) -> None:
        opened = open_connection(self._address, self._cluster_options, self._secret,
                                 self.timeout, self._on_report, self._on_scheduler_lost)
        self.cluster, self.loop, self.secret, self._link = (opened.cluster, opened.loop,
                                                            opened.secret, opened.link)
        self._owns_cluster, self._connection = opened.owns_cluster, opened
        self._assemble()
        self.status = "running"
        register_client(self)
        dask_default.client_started(self)

    def _assemble(self) -> None:
        """Make the parts that use the link, each given only what it uses (no ``self``:
        the scheduler and the loop outlive a client the user dropped)."""
        link = self._link
        self._workers = WorkerPool(self.secret)
        pool = self.cluster.shm_pool if self.cluster is not None else None
        self._segments = SegmentMapper()  # other processes' shared memory, for gather
        self._ahead = SendAhead(self.loop, link)  # small scatters, not waited for
        self._resending = Resending(link, self.refs.get, pool, self.cluster is not None)
        self.refs.start(self.loop, self._ahead.in_flight, releaser(link, self._resending.forget))
        self._events.start(self.loop, link)
        in_process = self.cluster is not None and self.cluster.in_process
        self.codec = IN_PROCESS if in_process else PICKLED  # how values and tasks travel
        self._house = Housekeeping(link, self._workers, self.codec)
        self._gathering = Gathering(link, self._workers, views_in(pool, self._segments))
        self._scattering = Scattering(link, self._workers, pool, self.cluster is not None,
                                      self._ahead, self.refs.get, in_process)
        # In-process, the scheduler path costs no copy; remote, going direct is one hop less.
        self._default_direct = not isinstance(link, LocalSchedulerLink) \
            if self.direct_to_workers is None else self.direct_to_workers

    def _on_report(self, msg: dict) -> None:
        if msg["op"] == "key-update":  # (the most frequent first: one per task that ends)
            self.refs.apply(msg)
        elif msg["op"] == "events":
            self._events.publish(msg["events"])
        elif msg["op"] == "worker-unresponsive" and hasattr(self, "_workers"):
            self._workers.fail_pending(msg["address"], msg["error"])
        elif msg["op"] == "resend" and hasattr(self, "_resending"):
            self._resending.requested(msg["keys"])  # every replica died: send ours
        elif msg["op"] == "task-output":  # what this client's tasks printed: in the cell
            task_output.show(msg["worker"], msg["records"])
        elif msg["op"] == "scheduler-closing" and isinstance(getattr(self, "_link", None),
                                                             LocalSchedulerLink):
            self._on_scheduler_lost(msg["reason"])  # a cluster in this process, closed

    def _on_scheduler_lost(self, reason: str) -> None:
        """The scheduler went away under us (on the loop thread): end as ``close()``
        would, saying why; ``closed``, as Dask's client ends when its scheduler is gone."""
        if self.status != "running":
            return
        logger.info("the client closed: %s", reason)
        self.ending.reason, self.status = reason, "closed"
        dask_default.client_closed(self)
        try:
            self._release_parts(reason)  # every future cancelled: its data went with it
        finally:
            self.ending.begin(self._connection.end_owned, self.done_callbacks.close)

    def __await__(self):
        async def start():
            if self.status == "newly-created":
                await asyncio.to_thread(self._start)
            return self
        return start().__await__()

    @property
    def scheduler_address(self) -> str:
        return self.cluster.scheduler_address if self.cluster else full_address(self._address)

    @property
    def scheduler_link(self):
        """How this client reaches its scheduler, on its loop: ``await link.request(msg)``,
        ``link.send(msg)`` (``link.py``); the door of what is built on a client (Variable)."""
        return self._link

    # ------------------------------------------------------------ the door ---
    def _check_open(self) -> None:
        if self.status != "running":
            raise self.ending.error(self.status)

    def _run(self, coro, asynchronous: bool | None, then: Callable = lambda x: x):
        """Run ``coro`` on the loop: block for the result, or return an awaitable."""
        coro = self._ahead.after_sent(coro)  # never ahead of a scatter sent ahead
        return run_on(self.loop, coro, wants_awaitable(self, asynchronous), then, self.ending)

    def _ask(self, msg: dict, asynchronous: bool | None, then: Callable = lambda x: x):
        """The scheduler's answer to ``msg``: blocking, or an awaitable (see ``_run``)."""
        self._check_open()
        return self._run(self._link.request(msg), asynchronous, then)

    def _call(self, method: Callable, *args, asynchronous: bool | None = None):
        """``method(*args)``, a coroutine of one of the parts, run as ``_run`` does."""
        self._check_open()
        return self._run(method(*args), asynchronous)

    def sync(self, func, *args, asynchronous: bool | None = None, callback_timeout=None,
             **kwargs):
        """Run the coroutine ``func(*args, **kwargs)`` on the client's loop, as Dask's does:
        its result, or an awaitable for an asynchronous client (or ``asynchronous=True``);
        ``callback_timeout`` (s) raises ``TimeoutError``. ``wait()`` comes through here."""
        self._check_open()
        callback_timeout = timeout_seconds(callback_timeout)  # (a bad one: before the coro)
        return self._run(within(func(*args, **kwargs), callback_timeout), asynchronous)

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
        ``timeout`` (s, or text: ``"5s"``) bounds the whole operation.
        ``progress(stage, done, total)`` (ours, not Dask's) hears how far hashing,
        serializing, copying and sending have got (docs/internals.md, "The backend
        interface").
        """
        self._check_open()
        timeout = timeout_seconds(timeout)
        with paused_collection(n_values(data)):
            batch = self._scattering.pack(data, hash, progress, self)
            direct = self._default_direct if direct is None else direct
            wait = self.timeout if timeout is NO_DEFAULT else timeout
            if (progress is None and workers is None and not broadcast and timeout is NO_DEFAULT
                    and not direct and not wants_awaitable(self, asynchronous)
                    and self._scattering.send_ahead(batch, wait)):
                return batch.result
            coro = within(self._scattering.send(
                batch, plain_workers(workers), broadcast, direct, wait,
                timeout is not NO_DEFAULT, progress or no_progress),
                None if timeout is NO_DEFAULT else timeout)
            return self._run(coro, asynchronous, then=lambda _: batch.result)

    def resend_from(self, sources: dict) -> None:
        """When every replica of a key of ``sources`` dies, scatter it again from
        ``sources[key]`` (a ``backend.Source``: the magics' variable) before anyone gathers it."""
        self._check_open()
        self._resending.keep(sources)

    # ------------------------------------------------------------ gather ---
    def gather(self, futures, errors: str = "raise", direct: bool | None = None,
               asynchronous: bool | None = None, timeout=None,
               progress: Progress | None = None):
        """Bring the values of ``futures`` back, in the same (nested) structure.

        ``errors="raise"`` re-raises a failed task's own exception; ``"skip"`` drops
        failed futures from the result; an iterator gives a generator of values.
        ``timeout`` bounds the wait (Dask has none).
        ``progress(stage, done, total)``: as for :meth:`scatter` (stages ``wait``, in
        futures, and ``transfer``, in bytes).
        """
        self._check_open()
        timeout = timeout_seconds(timeout)
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        if isinstance(futures, Iterator):  # values as they are read, as Dask's
            return (self.gather(f, errors, direct, timeout=timeout) for f in futures)
        found = flat_futures(futures)
        if found is None:
            found = find_futures(futures, Future)
        for f in found:
            if f.client is not self:
                raise ValueError(f"future {f.key!r} belongs to another client")
        # Paused for the values made here only: waiting on the loop may take minutes.
        with paused_collection(len(found)):
            local = local_values(futures, found, self._gathering.view_of)
        if local is not None:  # every value is here already: no loop, no worker
            return ready(local) if wants_awaitable(self, asynchronous) else local
        states = {f.key: f._state for f in found}
        direct = self._default_direct if direct is None else direct
        coro = within(self._gathering.read(states, errors, direct, progress or no_progress),
                      timeout)
        return self._run(coro, asynchronous, then=lambda serialized: substitute(
            futures, Future, self._gathering.values(serialized)))

    # ------------------------------------------------------------ compute ---
    def submit(self, func, *args, key=None, workers=None, resources=None, retries=None,
               priority=0, fifo_timeout="100 ms", allow_other_workers=False, actor=False,
               actors=False, pure: bool = True, **kwargs) -> Future:
        """Run ``func(*args, **kwargs)`` on a worker; futures in the arguments become values.

        The task runs where its largest input already lives, unless ``workers`` says
        otherwise. The other keywords are Dask's and stay here (``task_options.py``):
        ``priority`` (higher first), ``retries``, ``resources``, ``allow_other_workers``.
        """
        options = task_options(priority=priority, retries=retries, resources=resources,
                               workers=workers, allow_other_workers=allow_other_workers,
                               fifo_timeout=fifo_timeout, actor=actor, actors=actors)
        return self._submit_many(func, [args], [key], workers, pure, kwargs, options)[0]

    def map(self, func, *iterables, key=None, workers=None, retries=None, resources=None,
            priority=0, allow_other_workers=False, fifo_timeout="100 ms", actor=False,
            actors=False, pure: bool = True, batch_size=None, **kwargs) -> list:
        """``submit`` for each element of the iterables, with the same keywords; sent in
        messages of ``batch_size`` tasks (default: one message)."""
        options = task_options(priority=priority, retries=retries, resources=resources,
                               workers=workers, allow_other_workers=allow_other_workers,
                               fifo_timeout=fifo_timeout, actor=actor, actors=actors)
        argsets = list(zip(*iterables))
        keys = map_keys(key, func, argsets, kwargs, pure)
        size = max(1, int(batch_size)) if batch_size else max(1, len(argsets))
        return [f for start in range(0, len(argsets), size) for f in self._submit_many(
            func, argsets[start:start + size], keys[start:start + size], workers, pure,
            kwargs, options)]

    def _submit_many(self, func, argsets, keys, workers, pure, kwargs, options=None) -> list:
        self._check_open()
        restrictions = plain_workers(workers)
        tasks = task_records(func, argsets, keys, kwargs, pure, restrictions, options,
                             key_finder(self), self.codec.serialize_task)
        futures = [Future(task[0], self) for task in tasks]
        if restrictions is None and not self.asynchronous:
            # Sent ahead: nothing the caller gets back waits for the scheduler.
            self._ahead.submit(tasks, [f._state for f in futures])
        else:  # (workers= is resolved by the scheduler: an unknown one raises here)
            self._run(self._link.request({"op": "submit", "tasks": tasks}), asynchronous=False)
        return futures

    def retry(self, futures, asynchronous: bool | None = None):
        """Run the failed tasks among ``futures`` (and the failed inputs they read) again."""
        return self._ask({"op": "retry", "keys": keys_of(futures)}, asynchronous)

    # ------------------------------------------------------------ dask graphs ---
    # Dask's Client.get, compute and persist: functions of graphs.py, given this client.
    get, compute, persist = graphs.client_get, graphs.client_compute, graphs.client_persist

    # ------------------------------------------------------------ placement ---
    # Dask's questions about the cluster: functions of queries.py, given this client.
    who_has, has_what, processing = queries.who_has, queries.has_what, queries.processing
    nthreads = ncores = queries.nthreads  # (ncores: Dask's older name)
    scheduler_info = queries.scheduler_info

    def cancel(self, futures, force: bool = False, asynchronous: bool | None = None) -> None:
        """Stop and forget ``futures``; ``force`` also when other clients hold them."""
        return self._ask({"op": "cancel", "keys": keys_of(futures), "force": force}, asynchronous)

    def replicate(self, futures, n: int | None = None, workers=None,
                  asynchronous: bool | None = None) -> None:
        """Keep each future's data on ``n`` workers (default: all of ``workers``): copies go to
        those holding the least data, replicas beyond ``n`` are deleted (as in Dask)."""
        return self._ask({"op": "replicate", "keys": keys_of(futures), "n": n,
                          "workers": plain_workers(workers)}, asynchronous)

    def rebalance(self, futures=None, workers=None, asynchronous: bool | None = None):
        """Move data between ``workers`` (default: all) until each holds about the same
        bytes; only the keys of ``futures`` if given (once they are done)."""
        keys = None if futures is None else keys_of(futures)
        return self._call(self._house.rebalance, keys, plain_workers(workers),
                          asynchronous=asynchronous)

    # ------------------------------------------------------------ the cluster ---
    # Dask's house-keeping methods: functions of cluster_methods.py, given this client.
    wait_for_workers, run, run_on_scheduler = (
        cluster_methods.wait_for_workers, cluster_methods.run, cluster_methods.run_on_scheduler)
    restart, upload_file, get_versions = (
        cluster_methods.restart, cluster_methods.upload_file, cluster_methods.get_versions)
    get_executor, futures_of = cluster_methods.get_executor, cluster_methods.futures_of

    # ------------------------------------------------------------ datasets ---
    # Dask's names and meaning (datasets.py): data the cluster owns, outliving this client.
    publish_dataset = datasets.publish_dataset
    unpublish_dataset = datasets.unpublish_dataset
    list_datasets = datasets.list_datasets
    get_dataset = datasets.get_dataset
    datasets = property(datasets.datasets)

    def view(self, op: str, asynchronous: bool | None = None, **fields) -> dict:
        """(Ours) the scheduler's answer for the views: ``"overview"`` (``summary.summarize``),
        ``"memory-history"`` (``history.py``), ``"task-stream"`` (``since=``, a cursor)."""
        return self._run(self._link.request({**fields, "op": op}), asynchronous)

    # ------------------------------------------------------------ events ---
    def subscribe_events(self, callback: Callable[[list], None]) -> Subscription:
        """Call ``callback(batch)`` on the loop thread with scheduler events; the first
        batch is a snapshot (``docs/internals.md`` lists the event records)."""
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

    async def _close_in_thread(self) -> None:  # it joins the loop thread and the workers
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        if self.status == "closed":
            self.ending.wait()  # closed under us (the scheduler went away): let that end
            return
        dask_default.client_closed(self)
        if self.status == "running" and self.loop.running:
            try:
                self.loop.call(self._release_parts, None, self._owns_cluster,
                               timeout=DEFAULT_TIMEOUT)
            except Exception:
                logger.exception("error while closing the client")
        self.status = "closed"
        if self._connection is not None:
            self._connection.end_owned()
        self.done_callbacks.close()

    def _release_parts(self, reason: str | None = None, cluster_ending: bool = False) -> None:
        """On the loop: futures cancelled (all, saying why, if the scheduler went), all
        closed; the scheduler releases our keys, unless the cluster ends next."""
        self.refs.close(reason)
        self._resending.close()  # no re-send answered any more
        self._events.close(reason)  # say so, so a widget can show it
        self._workers.close()
        self._link.close(cluster_ending)
        self._segments.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    async def __aenter__(self):
        return await self

    async def __aexit__(self, *exc) -> None:
        await self._close_in_thread()

    def __del__(self):
        # A dropped client that started its cluster ends it; not inline: the collector may
        # run us on the loop thread (where close() cannot wait) or mid-operation. Not at exit:
        # atexit closed the cluster, and a thread started in finalization waits for ever.
        if getattr(self, "status", "closed") == "running" and self._owns_cluster \
                and self.cluster.status != "closed" and not sys.is_finalizing():
            threading.Thread(target=self._close, name="scatter-magics-close", daemon=True).start()

    # What it shows of itself, as Dask's does (describing.py).
    futures, dashboard_link = property(describing.futures), property(describing.dashboard_link)
    _repr_html_ = describing.client_html

    def __repr__(self) -> str:
        if self.status != "running":
            return f"<Client: {self.status}>"
        return f"<Client: scheduler={self.scheduler_address!r} status={self.status}>"
