"""Walking nested containers of futures (find them, put values in their place), and awaiting many."""

from __future__ import annotations

import asyncio

_CONTAINERS = (list, tuple, set, frozenset)


def find_futures(obj, future_type) -> list:
    """Every future in ``obj`` (a future, or lists/tuples/sets/dicts of them, nested)."""
    found: list = []
    _walk(obj, future_type, found)
    return found


def futures_of(obj) -> list:
    """Every future of any engine in ``obj`` (nested containers, a Dask collection's
    graph), each once, in the order found: Dask's ``futures_of``.

    >>> futures_of([1, {"a": (2, 3)}])
    []
    """
    from .backend import future_types

    seen: dict = {}
    for future in _futures_in(obj, future_types()):
        seen.setdefault(id(future), future)
    return list(seen.values())


def _futures_in(obj, future_type) -> list:
    graph = getattr(obj, "__dask_graph__", None)
    if callable(graph) and not isinstance(obj, future_type):  # a Dask collection
        found = []
        for value in (graph() or {}).values():
            found += _futures_in(value, future_type)
        return found
    return find_futures(obj, future_type)


def _walk(obj, future_type, found: list) -> None:
    if isinstance(obj, future_type):
        found.append(obj)
    elif type(obj) in _CONTAINERS:
        for item in obj:
            _walk(item, future_type, found)
    elif type(obj) is dict:
        for item in obj.values():
            _walk(item, future_type, found)


class _Skip:
    """Marks a failed future dropped by ``errors="skip"``."""


SKIP = _Skip()


def substitute(obj, future_type, values: dict):
    """``obj`` with each future replaced by ``values[key]``; ``SKIP`` values are dropped."""
    if isinstance(obj, future_type):
        return values[obj.key]
    if type(obj) in _CONTAINERS:
        items = (substitute(x, future_type, values) for x in obj)
        return type(obj)(x for x in items if x is not SKIP)
    if type(obj) is dict:
        out = {k: substitute(v, future_type, values) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v is not SKIP}
    return obj


async def gather_all(awaitables) -> list:
    """``asyncio.gather``, without its task overhead in the common single-item case."""
    awaitables = list(awaitables)
    if len(awaitables) == 1:
        return [await awaitables[0]]
    return await asyncio.gather(*awaitables)
