"""``Client.run(function)`` on a worker: the function called on the worker's event loop.

As in Dask: a function with a ``dask_worker`` parameter gets the worker; a coroutine
function is awaited (or, with ``wait=False``, left running). The call arrives pickled
apart from its message, so a function that does not unpickle here (a module the worker
lacks) is an error of this call, not of the connection.
"""

from __future__ import annotations

import inspect

from ..wire.serialize import deserialize


async def run_function(worker, msg: dict):
    """Call ``msg["call"]`` (a serialized ``(function, args, kwargs)``) on ``worker``."""
    function, args, kwargs = deserialize(msg["call"])
    if takes(function, "dask_worker"):
        kwargs = {**kwargs, "dask_worker": worker}
    result = function(*args, **kwargs)
    if inspect.isawaitable(result):
        if not msg.get("wait", True):
            worker.keep_running(result)
            return None
        result = await result
    return result


def takes(function, name: str) -> bool:
    """Whether ``function`` has a parameter called ``name`` (or takes ``**kwargs``: no)."""
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False
