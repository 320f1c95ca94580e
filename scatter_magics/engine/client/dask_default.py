"""A running ``Client`` is dask's default scheduler, as a ``distributed.Client`` is.

While one of our clients runs, ``dask.config["scheduler"]`` is :data:`CURRENT`, which
hands ``dask.compute``, ``.compute()`` and ``.persist()`` to the current client
(``get_client()``: the most recently started one still running). ``CURRENT.persist``
makes dask's ``persist`` keep the results on the cluster (``dask.base.persist`` calls a
scheduler's own ``persist`` when it has one). Dask's default shuffle without a
``distributed`` client is ``"disk"`` (partd files of one process); while ours is the
scheduler it is ``"tasks"``, unless the user chose one.

``import dask`` takes about as long as starting a client (0.4 s against 0.7 s for our
own imports on a loaded 2-core machine), so nothing here imports it: if dask is not
imported yet when the first client starts, the configuration is set by a post-import
hook (``after_import.py``) the moment it is. A client started while
another took the default (a ``distributed.Client`` made since) takes it back, as the
newest Dask client does. The user's configuration comes back when the last client
closes, unless the user changed it meanwhile.

>>> CURRENT
<scheduler: the current scatter_magics Client>
"""

from __future__ import annotations

import importlib.util
import sys
import threading

from ...after_import import after_import
from ...current_client import get_client

_lock = threading.Lock()
_running: set[int] = set()  # id() of our clients that run
_applied: list = []  # dask.config.set(...)s while CURRENT is the scheduler; exits restore
_hooked = False  # the post-import hook is registered (once per process)


class CurrentClient:
    """dask's ``scheduler=``: whichever client is current when dask calls it."""

    def __call__(self, dsk, keys, **kwargs):
        return self._client().get(dsk, keys, **kwargs)

    def persist(self, collections, **kwargs):
        return self._client().persist(collections, **kwargs)

    @staticmethod
    def _client():
        client = get_client()
        if getattr(client, "asynchronous", False):  # dask's own words for its own case
            raise RuntimeError("Attempting to use an asynchronous Client in a synchronous "
                               "context of `dask.compute`")
        return client

    def __repr__(self) -> str:
        return "<scheduler: the current scatter_magics Client>"


CURRENT = CurrentClient()


def client_started(client) -> None:
    """``client`` runs: make the clients dask's scheduler (now, or once dask is imported)."""
    global _hooked
    with _lock:
        _running.add(id(client))
        dask = sys.modules.get("dask")
        if dask is not None:
            if not _applied or dask.config.get("scheduler", None) is not CURRENT:
                _apply()
        elif not _hooked and _installed("dask"):
            _hooked = True
            after_import("dask", _on_dask_import)


def client_closed(client) -> None:
    """``client`` stopped: with no client of ours left, dask's configuration is the user's."""
    with _lock:
        _running.discard(id(client))
        if _running or not _applied:
            return
        import dask.config

        if dask.config.get("scheduler", None) is CURRENT:  # else the user changed it since
            for applied in reversed(_applied):  # each restores what was before it
                applied.__exit__(None, None, None)
        _applied.clear()


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # blocked (sys.modules[name] = None) or broken
        return False


def _on_dask_import(module) -> None:
    with _lock:
        if _running and not _applied:
            _apply()


def _apply() -> None:
    import dask.config

    settings = {"scheduler": CURRENT}
    if dask.config.get("dataframe.shuffle.method", None) is None:
        settings["dataframe.shuffle.method"] = "tasks"
    _applied.append(dask.config.set(settings))
