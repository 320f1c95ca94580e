"""Which client is current: the one :func:`get_client` returns, of whichever engine.

>>> from scatter_magics import Client, get_client
>>> client = Client(n_workers=1)             # doctest: +SKIP
>>> get_client() is client                   # doctest: +SKIP
True
"""

from __future__ import annotations

import weakref

from .backend import default_client_functions

_clients: list[weakref.ref] = []  # every engine's clients, in the order they started


def register_client(client) -> None:
    """Make ``client`` the one :func:`get_client` returns while it runs."""
    _clients[:] = [ref for ref in _clients if _is_running(ref())]
    _clients.append(weakref.ref(client))


def _is_running(client) -> bool:
    return client is not None and getattr(client, "status", None) == "running"


def get_client():
    """The most recently started client that is still running, of any engine.

    Clients the package registered come first; then an engine's own current client, if
    that engine is imported (a ``distributed.Client`` made in the user's code, or by
    dask-gateway or dask-jobqueue, is Dask's default client).
    """
    for ref in reversed(_clients):
        client = ref()
        if _is_running(client):
            return client
    for current in default_client_functions():
        try:
            client = current()
        except ValueError:  # that engine has no current client either
            continue
        if _is_running(client):
            return client
    raise ValueError("No client is running: create one with scatter_magics.Client() "
                     "or run %scatter / %cluster start in a notebook")
