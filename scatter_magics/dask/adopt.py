"""Dask clusters a notebook starts on its own, shown in the Jupyter sidebar too.

dask-labextension cannot see a ``LocalCluster`` made inside a notebook (its issues #131,
#189, #204). With ``%load_ext scatter_magics``, after every cell, the Dask clusters that
this process's ``distributed.Client`` objects started or were given (``Client()``,
``Client(LocalCluster(...))``, a jobqueue or gateway cluster object) are written to the
discovery registry (``scatter_magics/discovery.py``) and taken out again once closed.
Those the magics started (``%cluster start --dask``) are registered already.

The check reads ``distributed``'s own set of clients: nothing at all if ``distributed``
was never imported, a few attribute reads per client otherwise.

>>> from distributed import Client, LocalCluster                 # doctest: +SKIP
>>> client = Client(LocalCluster(n_workers=2))                   # doctest: +SKIP
>>> adopt_clusters()   # the sidebar now lists it               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sys
import weakref

from .. import discovery

logger = logging.getLogger(__name__)

# Clusters registered here, by id(): (a weak reference to the cluster, its registry entry).
_adopted: dict[int, tuple[weakref.ref, discovery.Entry]] = {}


def adopt_clusters() -> None:
    """Register the running Dask clusters of this process's clients; drop closed ones."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return
    _forget_closed()
    from .backend import (
        _registry_entries,  # the magics' own clusters: registered already
    )

    for client in list(distributed.Client._instances):
        cluster = getattr(client, "cluster", None)
        if (cluster is None or id(cluster) in _adopted or cluster in _registry_entries
                or not _running(cluster)):
            continue
        address = getattr(cluster, "scheduler_address", "") or ""
        if not address.startswith("tcp://"):
            continue  # inproc:// is out of reach of another process; tls:// needs its files
        _adopt(cluster, address)


def _adopt(cluster, address: str) -> None:
    try:
        entry = discovery.register(backend="dask", scheduler_address=address, secret=None)
    except Exception as exc:  # e.g. a read-only runtime dir: the cluster still works
        logger.warning("this Dask cluster is not in the discovery registry (the Jupyter "
                       "sidebar will not show it): %r", exc)
        return
    key = id(cluster)
    # Collected without a close (a notebook that drops its last reference): unregister.
    _adopted[key] = (weakref.ref(cluster, lambda _ref: _drop(key)), entry)


def _forget_closed() -> None:
    for key, (ref, _entry) in list(_adopted.items()):
        cluster = ref()
        if cluster is None or not _running(cluster):
            _drop(key)


def _drop(key: int) -> None:
    adopted = _adopted.pop(key, None)
    if adopted is not None:
        discovery.unregister(adopted[1])


def _running(cluster) -> bool:
    """Whether a ``distributed`` cluster object is up (its ``status`` is an enum)."""
    status = getattr(cluster, "status", None)
    return getattr(status, "name", status) == "running"


def install(ipython) -> None:
    """Check after every cell, from ``%load_ext scatter_magics`` on."""
    ipython.events.register("post_run_cell", _after_cell)


def uninstall(ipython) -> None:
    try:
        ipython.events.unregister("post_run_cell", _after_cell)
    except ValueError:
        pass


def _after_cell(_result=None) -> None:
    try:
        adopt_clusters()
    except Exception:  # a cell's output must never end in our traceback
        logger.debug("could not check for Dask clusters to register", exc_info=True)
