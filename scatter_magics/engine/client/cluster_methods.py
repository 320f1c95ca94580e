"""The Client's house-keeping methods, with Dask's signatures: ``wait_for_workers``,
``run``, ``run_on_scheduler``, ``restart``, ``upload_file``, ``get_versions``,
``get_executor``, ``futures_of``.

Functions of a client, bound as its methods by ``client.py`` (as ``graphs.py``'s
``get``/``compute``/``persist`` are); the work is :class:`~.housekeeping.Housekeeping`'s,
on the client's loop.
"""

from __future__ import annotations

import inspect

from ...structure import futures_of as find_all_futures
from .executor import ClientExecutor
from .scatter_input import plain_workers
from .task_options import parse_timedelta
from .waiting import NO_DEFAULT


def wait_for_workers(client, n_workers: int, timeout=None, asynchronous: bool | None = None):
    """Block until ``n_workers`` workers are connected; ``TimeoutError`` after ``timeout``."""
    timeout = None if timeout is None else parse_timedelta(timeout)
    return client._call(client._house.wait_for_workers, n_workers, timeout,
                        asynchronous=asynchronous)


def run(client, function, *args, workers=None, wait: bool = True, nanny: bool = False,
        on_error: str = "raise", asynchronous: bool | None = None, **kwargs) -> dict | None:
    """``{address: function(*args, **kwargs)}`` on every worker (or ``workers``), on
    its event loop; ``dask_worker=`` gives it the worker. ``on_error``: ``"raise"``,
    ``"return"`` (the exception as the value) or ``"ignore"`` (left out).

    ``wait=False`` (a coroutine function only, as in Dask) leaves it running on the
    workers and returns None."""
    if not wait and not inspect.iscoroutinefunction(function):
        raise ValueError("run(wait=False) is for coroutine functions, left running on the "
                         f"workers; {function!r} is a plain function, which always runs to "
                         "its end (Dask refuses it too): leave out wait=False")
    return client._call(client._house.run, function, args, kwargs, plain_workers(workers),
                        wait, on_error, nanny, asynchronous=asynchronous)


def run_on_scheduler(client, function, *args, asynchronous: bool | None = None, **kwargs):
    """``function(*args, **kwargs)`` on the scheduler (``dask_scheduler=``: itself)."""
    return client._call(client._house.run_on_scheduler, function, args, kwargs,
                        asynchronous=asynchronous)


def restart(client, timeout=NO_DEFAULT, wait_for_workers: bool = True,
            asynchronous: bool | None = None):
    """Fresh workers in place of all; every key forgotten, every future cancelled (Dask's)."""
    seconds = 4 * client.timeout if timeout is NO_DEFAULT else parse_timedelta(timeout)
    return client._call(client._house.restart, seconds, wait_for_workers,
                        client.refs.cancel_all, asynchronous=asynchronous)


def upload_file(client, filename: str, load: bool = True, asynchronous: bool | None = None):
    """A ``.py``/``.zip``/``.egg`` to every worker, present and future (``load``: imported)."""
    return client._call(client._house.upload_file, filename, load, asynchronous=asynchronous)


def get_versions(client, check: bool = False, packages=None,
                 asynchronous: bool | None = None) -> dict:
    """Versions of Python and packages on the scheduler, the workers and here;
    ``check`` raises ``ValueError`` where those that matter differ."""
    return client._call(client._house.versions, check, packages, asynchronous=asynchronous)


def get_executor(client, **kwargs) -> ClientExecutor:
    """This cluster as a ``concurrent.futures.Executor``; ``kwargs`` go to ``submit``."""
    return ClientExecutor(client, **kwargs)


def futures_of(client, futures) -> list:
    """The Futures of this client in ``futures`` (nested containers too)."""
    return [f for f in find_all_futures(futures) if getattr(f, "client", None) is client]
