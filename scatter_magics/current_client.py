"""Which client is current: the one :func:`get_client` returns, of whichever engine.

>>> from scatter_magics import Client, get_client
>>> client = Client(n_workers=1)             # doctest: +SKIP
>>> get_client() is client                   # doctest: +SKIP
True

Inside a task on a worker, :func:`get_client` returns that worker's own client instead
(the worker marks its task threads with :func:`serve_tasks`), as Dask's does.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable

_clients: list[weakref.ref] = []  # every engine's clients, in the order they started
_task_thread = threading.local()  # a worker's task thread: .client_of, its worker's client


def register_client(client) -> None:
    """Make ``client`` the one :func:`get_client` returns while it runs."""
    _clients[:] = [ref for ref in _clients if _is_running(ref())]
    _clients.append(weakref.ref(client))


def _is_running(client) -> bool:
    return client is not None and getattr(client, "status", None) == "running"


def serve_tasks(client_of: Callable[[], object]) -> None:
    """Mark the calling thread as a worker's task thread: :func:`get_client` there
    returns ``client_of()`` (the worker's client, connected on first use)."""
    _task_thread.client_of = client_of


def find_client(scheduler_address: str):
    """A running client of this process connected to ``scheduler_address``, or None."""
    for ref in reversed(_clients):
        client = ref()
        if _is_running(client) and getattr(client, "scheduler_address", None) == scheduler_address:
            return client
    return None


def get_client():
    """The client to use here: in a task on a worker, the worker's client; elsewhere the
    most recently started client that is still running, of any engine.

    Clients the package registered come first; then an engine's own current client, if
    that engine is imported (a ``distributed.Client`` made in the user's code, or by
    dask-gateway or dask-jobqueue, is Dask's default client).
    """
    client_of = getattr(_task_thread, "client_of", None)
    if client_of is not None:
        return client_of()
    return default_client()


def default_client(c=None):
    """``c`` if given, else the most recently started client that is still running
    (the current client outside tasks, as :func:`get_client` finds it); ``ValueError``
    if there is none, as Dask's ``default_client``."""
    if c is not None:
        return c
    for ref in reversed(_clients):
        client = ref()
        if _is_running(client):
            return client
    # Imported here: this module is on every worker's start-up path (task threads are
    # marked with serve_tasks), and the backend table (with dataclasses) cost ~3 ms of it.
    from .backend import default_client_functions

    for current in default_client_functions():
        try:
            client = current()
        except ValueError:  # that engine has no current client either
            continue
        if _is_running(client):
            return client
    raise ValueError("No client is running: create one with scatter_magics.Client() "
                     "or run %scatter / %cluster start in a notebook")
