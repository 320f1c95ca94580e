"""Cutting a value into pieces along its first axis, and putting the pieces back together.

``%scatter df --split`` and ``%gather df`` use these; so can any code, on either engine::

    from scatter_magics import join, split
    futures = client.scatter(split(df, 4))      # four DataFrames of about len(df) / 4 rows
    partial = client.map(summarize, futures)    # one task per piece, where the piece lives
    whole = join(client.gather(futures))        # equal to df: same type, dtypes, index

What can be cut: a numpy array (along axis 0), a pandas DataFrame or Series (by rows, the
index kept), and anything else with a length whose slices are values of its own type and
that :func:`join` knows how to put back together (text, bytes, lists and tuples, polars,
pyarrow and xarray objects, arrays of the Array API standard, other sequences whose ``+``
concatenates). Pieces are slices: a numpy array's pieces are views of it, a DataFrame's
are built from views of its columns (:func:`cutter`); nothing is copied to cut.

>>> split(list(range(7)), 3)
[[0, 1, 2], [3, 4], [5, 6]]
>>> join(split("abcdefg", 3))
'abcdefg'
>>> split(5, 2)
Traceback (most recent call last):
...
TypeError: cannot cut a value of type int into pieces: it has no length
"""

from __future__ import annotations

import collections.abc
import functools
import math
import operator
import sys
from typing import Any, Callable

from .sizes import parse_bytes

__all__ = ["split", "join", "bounds", "check_cuttable", "count_for_size", "size_of"]


def split(value, n: int | None = None, *, size: int | str | None = None, client=None) -> list:
    """``value`` cut along its first axis into ``n`` pieces of near-equal length.

    ``size`` (bytes, or text such as ``"64MiB"``) asks for pieces of about that size
    instead. With neither, one piece per worker thread of ``client`` (default: the
    current client, ``get_client()``), as ``%scatter NAME --split`` does. The first
    ``len(value) % n`` pieces are one row longer, as with ``numpy.array_split``.

    Raises ``TypeError`` for a value that cannot be cut (a scalar, a generator, a dict)
    and ``ValueError`` for more pieces than it has rows.

    >>> import numpy as np
    >>> [p.tolist() for p in split(np.arange(5), 2)]
    [[0, 1, 2], [3, 4]]
    """
    length = check_cuttable(value)
    if n is not None and size is not None:
        raise ValueError("give split() a number of pieces or a size, not both")
    if size is not None:
        n = count_for_size(value, length, parse_bytes(size))
    elif n is None:
        n = min(max(length, 1), threads_of(client))
    take = cutter(value)
    return [take(start, stop) for start, stop in bounds(length, n)]


def join(pieces: list):
    """The value whose pieces ``pieces`` are, in order: the inverse of :func:`split`.

    numpy arrays are concatenated (``np.concatenate``; masked arrays with their mask,
    subclasses keep their type), pandas objects too
    (``pd.concat``: dtypes, index and columns as they were), text, bytes and sequences
    joined. Raises ``ValueError`` for no pieces and ``TypeError`` for pieces of a type
    it does not know how to put together.

    >>> join([(1, 2), (3,)])
    (1, 2, 3)
    """
    pieces = list(pieces)
    if not pieces:
        raise ValueError("join() needs at least one piece")
    kinds = {type(p) for p in pieces}
    if len(kinds) > 1:
        names = ", ".join(sorted(k.__name__ for k in kinds))
        raise TypeError(f"cannot join pieces of different types ({names})")
    joiner = joiner_for(pieces[0])
    if joiner is None:
        raise TypeError(f"cannot join pieces of type {type(pieces[0]).__name__}: no way to "
                        f"put them back together is known")
    return joiner(pieces)


def bounds(length: int, n: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of ``n`` near-equal pieces of ``range(length)``.

    >>> bounds(10, 3)
    [(0, 4), (4, 7), (7, 10)]
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"the number of pieces must be a whole number >= 1, not {n!r}")
    if n > max(length, 1):  # an empty value is one (empty) piece
        rows = f"{length:,} row{'' if length == 1 else 's'}"
        raise ValueError(f"cannot cut {rows} into {n:,} pieces")
    step, extra = divmod(length, n)
    out, start = [], 0
    for i in range(n):
        stop = start + step + (i < extra)
        out.append((start, stop))
        start = stop
    return out


def cut(value, start: int, stop: int):
    """Rows ``start:stop`` of ``value`` (see :func:`cutter`)."""
    return cutter(value)(start, stop)


def cutter(value) -> Callable[[int, int], Any]:
    """``take(start, stop)``: rows ``start:stop`` of ``value``, by position for pandas.

    A DataFrame whose columns each lie contiguous in memory (pandas' usual 2-D blocks,
    a row of the block per column) is cut column by column: each piece's columns are
    views of the frame's, so a pickle carries them out-of-band as they lie, with no
    copy, and the pieces' columns continue one another (one shared-memory copy for all
    of them). A row slice of a 2-D block would be pickled as a fresh contiguous copy.
    """
    if _is_pandas(value, "DataFrame", "Series"):
        if _columns_contiguous(value):
            return lambda start, stop: _frame_rows(value, start, stop)
        return lambda start, stop: value.iloc[start:stop]
    return lambda start, stop: value[start:stop]


def _columns_contiguous(frame) -> bool:
    """Whether ``frame`` is a plain DataFrame whose numpy columns are contiguous views."""
    pd = sys.modules["pandas"]
    if type(frame) is not pd.DataFrame or not frame.shape[1]:
        return False
    columns = (frame.iloc[:, j] for j in range(frame.shape[1]))
    return all(c.to_numpy(copy=False).flags.c_contiguous for c in columns
               if isinstance(c.dtype, _numpy().dtype))


def _frame_rows(frame, start: int, stop: int):
    """Rows ``start:stop`` of ``frame``, built from views of its columns (one block each)."""
    pd, np = sys.modules["pandas"], _numpy()
    columns = [frame.iloc[start:stop, j] for j in range(frame.shape[1])]
    arrays = [c.to_numpy(copy=False) if isinstance(c.dtype, np.dtype) else c.array
              for c in columns]
    piece = pd.DataFrame(dict(enumerate(arrays)), index=frame.index[start:stop], copy=False)
    piece.columns = frame.columns  # names as they were, duplicates and levels too
    piece.attrs = dict(frame.attrs)
    piece.flags.allows_duplicate_labels = frame.flags.allows_duplicate_labels
    return piece


def _numpy():
    return sys.modules["numpy"]  # loaded: pandas imports it


def check_cuttable(value) -> int:
    """``len(value)``, if ``value`` can be cut and its pieces joined; else ``TypeError`` why."""
    what = f"cannot cut a value of type {type(value).__name__} into pieces"
    if isinstance(value, (collections.abc.Mapping, collections.abc.Set)):
        raise TypeError(f"{what}: it has no order to slice")
    try:
        length = len(value)
    except TypeError:  # a scalar, a generator, a 0-d array
        hint = " (make it a list first)" if isinstance(value, collections.abc.Iterator) else ""
        raise TypeError(f"{what}: it has no length{hint}") from None
    try:
        probe = cut(value, 0, min(length, 1))
    except Exception as exc:
        raise TypeError(f"{what}: slicing it failed "
                        f"({type(exc).__name__}: {exc})") from None
    if type(probe) is not type(value):
        raise TypeError(f"{what}: its slices are of type "
                        f"{type(probe).__name__}")
    if joiner_for(value) is None:
        raise TypeError(f"{what}: no way to put its pieces back "
                        f"together is known (numpy, pandas, polars, pyarrow, xarray, text, "
                        f"bytes and sequences are)")
    return length


def count_for_size(value, length: int, size: int) -> int:
    """How many pieces make pieces of about ``size`` bytes (at least one, at most one a row).

    >>> count_for_size(bytes(1000), 1000, 300)
    4
    """
    if size <= 0:
        raise ValueError(f"a piece size must be more than 0 bytes, not {size}")
    return max(1, min(length, math.ceil(size_of(value) / size)))


def size_of(value) -> int:
    """An estimate of the bytes ``value`` holds (exact for arrays, DataFrames, text)."""
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    if _is_pandas(value, "DataFrame", "Series"):
        used = value.memory_usage(index=True, deep=True)
        return int(used.sum() if hasattr(used, "sum") else used)
    for attribute in ("nbytes", "estimated_size"):  # numpy, pyarrow, xarray; polars
        found = getattr(value, attribute, None)
        found = found() if callable(found) else found
        if isinstance(found, int):
            return found
    sample = [value[i] for i in range(min(len(value), 1000))]
    each = sum(sys.getsizeof(x) for x in sample) / max(len(sample), 1)
    return sys.getsizeof(value) + int(each * len(value))


def threads_of(client=None, workers=None) -> int:
    """Worker threads of ``client`` (default: the current one), of ``workers`` only if given.

    ``workers`` are addresses or names, as ``scheduler_info()`` has them.
    """
    from .backend import backend_for
    from .current_client import get_client

    info = backend_for(client if client is not None else get_client()).scheduler_info()
    allowed = info["workers"].items()
    if workers is not None:
        wanted = set(workers)
        allowed = [(a, w) for a, w in allowed if a in wanted or w.get("name") in wanted]
    threads = sum(w.get("nthreads") or 1 for _, w in allowed)
    if not threads:
        raise ValueError("the cluster has no workers to cut a value for; pass a number of pieces")
    return threads


# ------------------------------------------------------------ putting it back ---

def joiner_for(value) -> Callable[[list], Any] | None:
    """How to join pieces of ``value``'s type, or None (looked up without importing)."""
    root, kind = _root(value), type(value)
    module = sys.modules.get(root)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return _numpy_join(numpy, kind)
    if _is_pandas(value, "DataFrame", "Series"):  # subclasses too (a GeoDataFrame)
        return sys.modules["pandas"].concat
    if _is_pandas(value, "Index"):
        return lambda pieces: pieces[0].append(pieces[1:])
    if root == "polars":
        return module.concat
    if root == "pyarrow":
        return _arrow_join(value, module)
    if root == "xarray" and hasattr(value, "dims"):
        return lambda pieces: module.concat(pieces, dim=pieces[0].dims[0])
    if kind in (str, bytes, bytearray):
        return lambda pieces: kind().join(pieces)
    if kind is range:
        return _join_ranges
    if issubclass(kind, (list, tuple)) and not hasattr(value, "_fields"):
        return lambda pieces: kind(item for piece in pieces for item in piece)
    if hasattr(value, "__array_namespace__"):  # the Array API standard (cupy, torch, jax)
        return lambda pieces: pieces[0].__array_namespace__().concat(pieces, axis=0)
    if isinstance(value, collections.abc.Sequence) and hasattr(kind, "__add__"):
        return lambda pieces: functools.reduce(operator.add, pieces)
    return None


def _numpy_join(numpy, kind: type) -> Callable[[list], Any]:
    """``np.concatenate``, which keeps neither a masked array's mask (``np.ma``'s own
    concatenate does) nor the type of a subclass that does not ask for it: its result
    is viewed as ``kind`` again.

    >>> import numpy as np
    >>> a = np.ma.masked_array([1, 2, 3, 4], mask=[0, 1, 0, 1])
    >>> int(join(split(a, 2)).sum())
    4
    """
    if issubclass(kind, numpy.ma.MaskedArray):
        return numpy.ma.concatenate
    if kind is numpy.ndarray:
        return numpy.concatenate

    def join_subclass(pieces: list):
        joined = numpy.concatenate(pieces)
        return joined if type(joined) is kind else joined.view(kind)
    return join_subclass


def _arrow_join(value, pa):
    if isinstance(value, pa.Table):
        return pa.concat_tables
    if isinstance(value, pa.Array):
        return pa.concat_arrays
    if isinstance(value, pa.ChunkedArray):
        return lambda pieces: pa.chunked_array([c for p in pieces for c in p.chunks], value.type)
    return None


def _join_ranges(pieces: list) -> range:
    first, last = pieces[0], pieces[-1]
    return range(first.start, last.stop, first.step)


def _is_pandas(value, *names: str) -> bool:
    """Whether ``value`` is one of pandas' classes ``names`` (or a subclass), if pandas is loaded."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, tuple(getattr(pd, n) for n in names))


def _root(value) -> str:
    return type(value).__module__.partition(".")[0]
