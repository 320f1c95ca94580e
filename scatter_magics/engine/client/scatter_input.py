"""What ``scatter`` is given, as ``{key: value}``, and how to rebuild its shape around futures."""

from __future__ import annotations

from collections.abc import Iterator
from queue import Queue

from ...keys import check_key, random_token
from ...tokenize import named_tokens, tokenize


def full_address(address: str) -> str:
    return address if "://" in address else f"tcp://{address}"


def plain_workers(workers):
    """``workers=`` as plain data the scheduler resolves (it knows the names)."""
    if workers is None or isinstance(workers, str):
        return workers
    if isinstance(workers, tuple) and len(workers) == 2 and isinstance(workers[1], int):
        return [workers]
    return list(workers)


def keyed_items(data, hash: bool):
    """``{key: value}`` for the values to scatter, and how to rebuild the result's shape."""
    if isinstance(data, Iterator) or isinstance(data, Queue) or type(data).__name__ == "Queue":
        raise TypeError(f"scatter() takes a value or a list/tuple/set/dict of values, not "
                        f"{type(data).__name__!r}; materialize it first, e.g. with list()")
    if isinstance(data, range):
        data = list(data)

    def key_for(value) -> str:
        return f"{type(value).__name__}-{tokenize(value) if hash else random_token()}"

    if type(data) is dict:  # the dict's own keys, kept as they are (tuples too), as in Dask
        items = {check_key(k): v for k, v in data.items()}
        return items, lambda fs: {k: fs[k] for k in data}
    is_namedtuple = isinstance(data, tuple) and hasattr(data, "_fields")
    if type(data) in (list, tuple, set, frozenset) or is_namedtuple:
        values = list(data)
        if hash:  # key_for, for the whole list in one call
            keys = named_tokens(values)
        else:
            keys = [key_for(v) for v in values]
        items = dict(zip(keys, values))
        if is_namedtuple:
            return items, lambda fs: type(data)(*(fs[k] for k in keys))
        return items, lambda fs: type(data)(fs[k] for k in keys)
    key = key_for(data)
    return {key: data}, lambda fs: fs[key]


def n_values(data) -> int:
    """How many values (so futures) a scatter of ``data`` makes."""
    return len(data) if type(data) in (list, tuple, set, frozenset, dict, range) else 1
