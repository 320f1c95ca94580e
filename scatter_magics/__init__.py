"""scatter_magics: put notebook data into the memory of a pool of workers.

``%load_ext scatter_magics`` adds ``%scatter``, ``%gather`` and ``%cluster``; the same
cluster is reachable from Python through :class:`Client`, whose API is Dask's.
"""

from .client import Client, Subscription, get_client
from .cluster import LocalCluster
from .future import Future
from .waiting import as_completed, wait

__version__ = "0.1.0"
__all__ = ["Client", "Future", "LocalCluster", "Subscription", "as_completed", "get_client",
           "wait", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    """``%load_ext scatter_magics``: register %scatter, %gather and %cluster."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ipython)
