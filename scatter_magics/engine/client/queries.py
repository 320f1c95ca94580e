"""The Client's questions about the cluster, with Dask's signatures: ``who_has``,
``has_what``, ``nthreads`` (``ncores``), ``processing``, ``scheduler_info``.

Functions of a client, bound as its methods by ``client.py`` (as ``cluster_methods.py``'s
are); each asks the scheduler once and changes nothing.

>>> client.nthreads(workers=["worker-0"])                      # doctest: +SKIP
{'tcp://127.0.0.1:40125': 1}
"""

from __future__ import annotations

from .future import keys_of
from .scatter_input import plain_workers


def who_has(client, futures=None, asynchronous: bool | None = None) -> dict:
    """``{key: [worker addresses]}`` for ``futures`` (default: every key)."""
    keys = None if futures is None else keys_of(futures)
    return client._ask({"op": "who-has", "keys": keys}, asynchronous)


def has_what(client, workers=None, asynchronous: bool | None = None) -> dict:
    """``{worker address: [keys]}``, for ``workers`` (addresses or names; default: all)."""
    return client._ask({"op": "has-what", "workers": plain_workers(workers)}, asynchronous)


def nthreads(client, workers=None, asynchronous: bool | None = None) -> dict:
    """``{worker address: threads}``, for ``workers`` (addresses or names; default: all;
    one that is not there is left out, as in Dask)."""
    return client._ask({"op": "nthreads", "workers": plain_workers(workers)}, asynchronous)


def processing(client, workers=None, asynchronous: bool | None = None) -> dict:
    """``{worker address: [keys of the tasks sent to it, not yet done]}``."""
    return client._ask({"op": "processing", "workers": plain_workers(workers)}, asynchronous)


def scheduler_info(client, asynchronous: bool | None = None) -> dict:
    """The scheduler's address and, per worker, name, threads, memory, bytes held and
    declared ``resources``."""
    return client._ask({"op": "scheduler-info"}, asynchronous)
