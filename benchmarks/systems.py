"""One adapter per system, each exposing the same operations on the same work.

``start(n_workers)`` brings a cluster up and returns once ``n_workers`` workers are there;
``close()`` stops all of it and is safe to call after a failed ``start``. An operation a system
has no counterpart for raises :class:`NotApplicable`, and the table shows "–" for it.

Heavy imports happen inside ``start`` so that ``benchmarks.coldstart`` counts them; this
module imports only what an interpreter has loaded at start-up or builds in, so that the
harness's own imports (logging, collections) do not delay the system's start.

>>> system = make_system("dask")
>>> system.start(2)
>>> system.roundtrip(41)
41
>>> system.close()
"""

import itertools
import os
import time

from benchmarks import remote

#: Ray's shared-memory object store; large enough for an 800 MB object and its neighbours.
RAY_OBJECT_STORE_BYTES = 4 * 2**30


class NotApplicable(Exception):
    """The system has no counterpart for this operation."""


class DaskAPISystem:
    """Operations written once against Dask's ``Client`` API; subclasses only make the client."""

    name = ""

    def __init__(self):
        self.client = None
        self.workers = []

    def make_client(self, n_workers):
        raise NotImplementedError

    def start(self, n_workers):
        self.client = self.make_client(n_workers)
        self.workers = self._wait_for_workers(n_workers)

    def _wait_for_workers(self, n_workers, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            workers = sorted(self.client.scheduler_info()["workers"])
            if len(workers) >= n_workers:
                return workers
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(workers)} of {n_workers} workers after {timeout} s")
            time.sleep(0.005)

    def close(self):
        if self.client is not None:
            client, self.client = self.client, None
            client.close()

    def roundtrip(self, obj):
        return self.client.gather(self.client.scatter(obj))

    def scatter(self, obj, direct=False):
        if direct:
            return self.client.scatter(obj, direct=True, hash=False)
        return self.client.scatter(obj)

    def gather(self, handle, direct=False):
        if direct:
            return self.client.gather(handle, direct=True)
        return self.client.gather(handle)

    def broadcast(self, obj):
        return self.client.scatter(obj, broadcast=True)

    def split_scatter(self, frame, n):
        """The frame cut into ``n`` pieces, one future each, as Dask's users do it:
        ``scatter(np.array_split(df, n))``, whose pieces pandas 3 turns into bare arrays;
        so the same row ranges, as DataFrames (``iloc``)."""
        import numpy as np

        ranges = np.array_split(np.arange(len(frame)), n)
        return self.client.scatter([frame.iloc[r[0]:r[-1] + 1] for r in ranges])

    def split_gather(self, handle):
        import pandas as pd

        return pd.concat(self.client.gather(handle))

    def touch_all(self, handle):
        futures = [
            self.client.submit(remote.touch, handle, workers=[w], pure=False)
            for w in self.workers
        ]
        return self.client.gather(futures)

    def scatter_many(self, items):
        return self.client.scatter(items)

    def gather_many(self, handles):
        return self.client.gather(handles)

    def run_tasks(self, args):
        return self.client.gather([self.client.submit(remote.inc, a) for a in args])

    def tokenize(self, obj):
        raise NotApplicable("no content hashing function")

    def spread(self, n_tasks, seconds, n_workers, threads):
        """Issue 19's placement case, on a cluster of its own: a small input on worker 0,
        ``scale(n_workers)`` (``threads`` each), then ``n_tasks`` tasks of ``seconds`` that
        each read it. Returns ``(seconds to gather them all, tasks per worker)``."""
        client = self.make_spread_client(threads)
        try:
            [first] = self._wait_for_workers_of(client, 1)
            [data] = client.scatter([list(range(10))], workers=[first])
            client.cluster.scale(n_workers)
            self._wait_for_workers_of(client, n_workers)
            t0 = time.perf_counter()
            pids = client.gather([client.submit(remote.pid_after, seconds, data, i)
                                  for i in range(n_tasks)])
            elapsed = time.perf_counter() - t0
        finally:
            client.close()
        import collections

        return elapsed, sorted(collections.Counter(pids).values(), reverse=True)

    def make_spread_client(self, threads):
        raise NotApplicable("no cluster to scale")

    def _wait_for_workers_of(self, client, n_workers, timeout=60.0):
        saved, self.client = self.client, client
        try:
            return self._wait_for_workers(n_workers, timeout)
        finally:
            self.client = saved

    def drop_reusable(self):
        """Give back memory kept for reuse (nothing to give back here)."""

    def settle(self, timeout=10.0):
        """Wait until the workers hold no data (released futures are freed asynchronously)."""
        deadline = time.monotonic() + timeout
        while any(self.client.has_what().values()) and time.monotonic() < deadline:
            time.sleep(0.01)


class OursSystem(DaskAPISystem):
    """scatter_magics' embedded cluster: scheduler in this process, worker subprocesses."""

    name = "scatter_magics"

    def make_client(self, n_workers):
        from scatter_magics import Client

        return Client(n_workers=n_workers, threads_per_worker=1)

    def make_spread_client(self, threads):
        from scatter_magics import Client

        return Client(n_workers=1, threads_per_worker=threads)

    def drop_reusable(self):
        """Unlink the free segments of the shared-memory pool (what it would reuse)."""
        self.settle()
        self.client.cluster.shm_pool.trim(0)

    def split_scatter(self, frame, n):
        """``%scatter df --split``, run by the magics in an IPython shell bound to this
        client (one piece per worker thread: ``n`` here)."""
        shell = self._shell()
        shell.user_ns["df"] = frame
        return shell.run_line_magic("scatter", "df --split")

    def split_gather(self, handle):
        return self._shell().run_line_magic("gather", "df")

    def tokenize(self, obj):
        """The content hash of ``hash=True`` keys (lost when this class moved onto
        DaskAPISystem, whose default says there is none)."""
        from scatter_magics.tokenize import tokenize

        return tokenize(obj)

    def _shell(self):
        """An IPython shell with the magics loaded; their client is ours (``get_client()``)."""
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        if not InteractiveShell.initialized():
            config = Config()
            config.HistoryManager.hist_file = ":memory:"
            InteractiveShell.instance(config=config)
        shell = InteractiveShell.instance()
        if "ScatterMagics" not in shell.magics_manager.registry:
            shell.run_line_magic("load_ext", "scatter_magics")
            # No bar on stderr: the benchmark's log is not a notebook.
            shell.run_line_magic("config", "ScatterMagics.progress_delay = 3600")
        return shell

    def settle(self, timeout=10.0):
        """As for Dask; the magics remember what %scatter made, so they go first."""
        from IPython.core.interactiveshell import InteractiveShell

        if InteractiveShell.initialized():
            InteractiveShell.instance().run_line_magic("unload_ext", "scatter_magics")
        super().settle(timeout)


class DaskSystem(DaskAPISystem):
    """A ``distributed.LocalCluster`` with worker processes, made by ``Client(n_workers=...)``."""

    name = "dask"

    def make_client(self, n_workers):
        from distributed import Client

        # No dashboard: neither system under test serves one, so neither pays for it.
        return Client(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None)

    def make_spread_client(self, threads):
        from distributed import Client

        return Client(n_workers=1, threads_per_worker=threads, processes=True,
                      dashboard_address=None)

    def tokenize(self, obj):
        from dask.base import tokenize

        return tokenize(obj)


class RaySystem:
    """A local Ray instance: ``put``/``get`` for data, remote tasks, one actor per worker."""

    name = "ray"

    def __init__(self):
        self.ray = None
        self.actors = []

    def start(self, n_workers):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import logging

        import ray

        self.ray = ray
        ray.init(num_cpus=n_workers, object_store_memory=RAY_OBJECT_STORE_BYTES,
                 include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        self.n_workers = n_workers
        self._inc = ray.remote(remote.inc)

    def close(self):
        if self.ray is not None:
            self.actors = []
            self.ray.shutdown()
            self.ray = None

    def roundtrip(self, obj):
        return self.ray.get(self.ray.put(obj))

    def scatter(self, obj, direct=False):
        if direct:
            raise NotApplicable("no direct/hash options")
        return self.ray.put(obj)

    def gather(self, handle, direct=False):
        if direct:
            raise NotApplicable("no direct/hash options")
        return self.ray.get(handle)

    def broadcast(self, obj):
        return self.ray.put(obj)

    def touch_all(self, handle):
        if not self.actors:
            # Ray places data itself; actors are how to make n distinct processes each read
            # it. Made on first use (the untimed warm-up), so a cold start does not pay them.
            toucher = self.ray.remote(num_cpus=0)(remote.Toucher)
            self.actors = [toucher.remote() for _ in range(self.n_workers)]
        return self.ray.get([actor.touch.remote(handle) for actor in self.actors])

    def split_scatter(self, frame, n):
        raise NotApplicable("put() keeps objects in the driver's object store; no scatter to workers")

    def split_gather(self, handle):
        raise NotApplicable("put() keeps objects in the driver's object store; no scatter to workers")

    def scatter_many(self, items):
        return [self.ray.put(item) for item in items]

    def gather_many(self, handles):
        return self.ray.get(handles)

    def run_tasks(self, args):
        return self.ray.get([self._inc.remote(a) for a in args])

    def tokenize(self, obj):
        raise NotApplicable("no content hashing function")

    def drop_reusable(self):
        pass  # the object store's memory is Ray's to manage

    def settle(self):
        pass  # an object is freed when its last ObjectRef is dropped


class IPyParallelSystem:
    """An ``ipp.Cluster``: push/pull to one engine, a DirectView for broadcast, a load-balanced
    view for tasks."""

    name = "ipyparallel"

    def __init__(self):
        self.cluster = None
        self.rc = None
        self._names = itertools.count()

    def start(self, n_workers):
        import logging

        import ipyparallel as ipp

        self.ipp = ipp
        self.cluster = ipp.Cluster(n=n_workers, log_level=logging.WARNING)
        self.rc = self.cluster.start_and_connect_sync()
        self.all = self.rc[:]
        self.one = self.rc[self.rc.ids[0]]
        self.balanced = self.rc.load_balanced_view()

    def close(self):
        try:
            if self.rc is not None:
                self.rc.close()
        finally:
            self.rc = None
            if self.cluster is not None:
                cluster, self.cluster = self.cluster, None
                cluster.stop_cluster_sync()

    def _push(self, view, obj):
        name = f"bench_{next(self._names)}"
        view.push({name: obj}, block=True)
        return view, name

    def roundtrip(self, obj):
        view, name = self._push(self.one, obj)
        return view.pull(name, block=True)

    def scatter(self, obj, direct=False):
        if direct:
            raise NotApplicable("no direct/hash options")
        return self._push(self.one, obj)

    def gather(self, handle, direct=False):
        if direct:
            raise NotApplicable("no direct/hash options")
        view, name = handle
        return view.pull(name, block=True)

    def broadcast(self, obj):
        return self._push(self.all, obj)

    def touch_all(self, handle):
        view, name = handle
        return view.apply_sync(remote.touch, self.ipp.Reference(name))

    def split_scatter(self, frame, n):
        """``DirectView.scatter``: a partition of the frame's rows per engine."""
        name = f"bench_{next(self._names)}"
        self.all.scatter(name, frame, block=True)
        return name

    def split_gather(self, name):
        import pandas as pd

        return pd.concat(self.all.gather(name, block=True))  # its gather lists the partitions

    def scatter_many(self, items):
        raise NotApplicable("scatter partitions a sequence; no object per element")

    def gather_many(self, handles):
        raise NotApplicable("scatter partitions a sequence; no object per element")

    def run_tasks(self, args):
        results = [self.balanced.apply_async(remote.inc, a) for a in args]
        return [r.get() for r in results]

    def tokenize(self, obj):
        raise NotApplicable("no content hashing function")

    def drop_reusable(self):
        pass

    def settle(self):
        """Drop pushed names on the engines and cached results in the client and hub."""
        self.all.execute("for _n in [n for n in globals() if n.startswith('bench_')]:"
                         " del globals()[_n]", block=True)
        self.rc.purge_everything()


SYSTEMS = {cls.name: cls for cls in (OursSystem, DaskSystem, RaySystem, IPyParallelSystem)}

#: The module each system needs, to tell "not installed" from "broken".
MODULES = {"scatter_magics": "scatter_magics", "dask": "distributed", "ray": "ray",
           "ipyparallel": "ipyparallel"}


def make_system(name):
    """A fresh, unstarted adapter for the system called ``name``."""
    return SYSTEMS[name]()
