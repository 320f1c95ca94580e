"""What ``submit`` and ``map`` send: one record per task.

A record is ``(key, task, deps, restrictions, options)``: the key; the call
``(func, args, kwargs)`` pickled with each Future in it replaced by a reference to its
key (``serialize.serialize_task``); the keys it reads; ``workers=`` as given (the
scheduler resolves names); and the options of ``task_options.py`` (None for defaults).

>>> [(key, _, deps, _, options)] = task_records(
...     abs, [(-1,)], [None], {}, True, None, {"priority": 1}, lambda obj: None)
>>> key.startswith("abs-"), deps, options
(True, set(), {'priority': 1})
"""

from __future__ import annotations

from typing import Callable

from ...tokenize import task_key
from ..wire.serialize import serialize_task as pickled_task
from .future import Future


def key_finder(client) -> Callable:
    """``key_of(obj)``: the key of a Future of ``client``, None for anything else; a
    Future of another client is a ValueError (its key is not this client's to use)."""
    def key_of(obj):
        if isinstance(obj, Future):
            if obj.client is not client:
                raise ValueError(f"future {obj.key!r} belongs to another client")
            return obj.key
        return None
    return key_of


def func_name(func) -> str:
    return getattr(func, "__name__", type(func).__name__)


def map_keys(key, func, argsets: list, kwargs: dict, pure: bool) -> list:
    """``map``'s keys: given (a list), made from a prefix (a str), or None (made per task)."""
    if isinstance(key, (list, tuple)):
        keys = list(key)
    elif isinstance(key, str):
        keys = [task_key(key, func, a, kwargs, pure) for a in argsets]
    else:
        keys = [None] * len(argsets)
    if len(keys) != len(argsets):
        raise ValueError(f"map() got {len(keys)} keys for {len(argsets)} tasks")
    return keys


def task_records(func, argsets, keys, kwargs: dict, pure: bool, restrictions,
                 options: dict | None, key_of: Callable, serialize_task=pickled_task) -> list:
    """One record per set of arguments (see the module docstring).

    ``key_of(obj)`` names the key of a Future (None for anything else);
    ``serialize_task`` turns the call into what travels (pickled, unless the workers
    share this process).
    """
    if not callable(func):
        raise TypeError(f"submit() needs a callable, got {type(func).__name__!r}")
    name = func_name(func)
    records = []
    for args, key in zip(argsets, keys):
        key = key or task_key(name, func, args, kwargs, pure)
        task, deps = serialize_task((func, tuple(args), kwargs), key_of)
        records.append((key, task, deps, restrictions, options))
    return records
