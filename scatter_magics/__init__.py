"""scatter_magics: put notebook data into the memory of a pool of workers.

``%load_ext scatter_magics`` adds ``%scatter``, ``%gather`` and ``%cluster``; the same
cluster is reachable from Python through :class:`Client`, whose API is Dask's.

The public names are imported on first use: a worker process imports this file first, and
has no use for the client, the scheduler or tornado (measured: 0.12 s → 0.08 s per worker
start). Looking up ``Client`` or ``LocalCluster`` here starts the fork server before their
own imports run: the process that forks a cluster's workers imports a worker's modules
while this one imports the client's, instead of after (``engine/cluster/forkserver.py``;
an idle process that ends with this one, started at most once).
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # not typing's: importing it is ~8 ms before a cold start's first step

__version__ = "0.1.0"

_PUBLIC = {"Client": "engine.client.client", "Subscription": "engine.client.events",
           "get_client": "current_client", "LocalCluster": "engine.cluster.local",
           "Future": "engine.client.future", "as_completed": "engine.client.as_completed",
           "wait": "engine.client.waiting", "progress": "notebook.progress_futures",
           "fire_and_forget": "engine.client.fire_and_forget", "futures_of": "structure",
           "default_client": "current_client", "get_worker": "engine.worker.task_context",
           "secede": "engine.worker.task_context", "rejoin": "engine.worker.task_context",
           "worker_client": "engine.worker.task_context",
           "Variable": "engine.client.coordination", "Queue": "engine.client.coordination",
           "Lock": "engine.client.locks", "Event": "engine.client.locks",
           "Semaphore": "engine.client.locks", "split": "pieces", "join": "pieces"}
__all__ = sorted([*_PUBLIC, "load_ipython_extension", "unload_ipython_extension"])

if TYPE_CHECKING:  # what static tools and IDEs see
    from .current_client import default_client, get_client
    from .engine.client.as_completed import as_completed
    from .engine.client.client import Client
    from .engine.client.coordination import Queue, Variable
    from .engine.client.events import Subscription
    from .engine.client.fire_and_forget import fire_and_forget
    from .engine.client.future import Future
    from .engine.client.locks import Event, Lock, Semaphore
    from .engine.client.waiting import wait
    from .engine.cluster.local import LocalCluster
    from .engine.worker.task_context import get_worker, rejoin, secede, worker_client
    from .notebook.progress_futures import progress
    from .pieces import join, split
    from .structure import futures_of


_STARTS_CLUSTERS = ("Client", "LocalCluster")


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'scatter_magics' has no attribute {name!r}")
    if name in _STARTS_CLUSTERS and "scatter_magics.engine.worker.process" not in sys.modules:
        from .engine.cluster import template_spawn  # (not in a worker: it starts no cluster)

        template_spawn.prestart()
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _jupyter_server_extension_points() -> list[dict]:
    """The Jupyter server extension (the cluster sidebar's REST API), loaded lazily."""
    return [{"module": "scatter_magics.lab"}]


def _jupyter_labextension_paths() -> list[dict]:
    """The prebuilt JupyterLab / Notebook 7 extension shipped in the wheel."""
    return [{"src": "labextension", "dest": "scatter-magics"}]


def load_ipython_extension(ipython) -> None:
    """``%load_ext scatter_magics``: register %scatter, %gather and %cluster."""
    from .dask import adopt
    from .notebook.magics import load_ipython_extension as load

    load(ipython)
    adopt.install(ipython)  # Dask clusters the notebook starts itself: in the sidebar too


def unload_ipython_extension(ipython) -> None:
    from .dask import adopt
    from .notebook.magics import unload_ipython_extension as unload

    unload(ipython)
    adopt.uninstall(ipython)
