"""Deterministic content hashes, for ``scatter(hash=True)`` and ``submit(pure=True)`` keys.

``tokenize(x)`` is the same for equal data in any process and any run (it never uses
Python's salted ``hash()``), so scattering the same data twice gives one key. Large
buffers are hashed with xxh3 (tens of GB/s) straight from their memory, without a copy.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
import types
from typing import Callable, Iterator

import xxhash

from .keys import random_token

# Large buffers are hashed in pieces this big while someone watches (xxh3 streams, so
# the digest is the same): ~3 ms each at 20 GB/s, so a progress bar moves and Ctrl-C
# is seen between pieces.
HASH_CHUNK = 64 << 20
_on_hashed: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar(
    "scatter_magics_on_hashed", default=None)


@contextlib.contextmanager
def reporting(on_hashed: Callable[[int], None] | None) -> Iterator[None]:
    """Call ``on_hashed(nbytes)`` as buffers are hashed by :func:`tokenize` in this context.

    >>> seen = []
    >>> with reporting(seen.append):
    ...     _ = tokenize(bytes(100))
    >>> seen
    [100]
    """
    token = _on_hashed.set(on_hashed)
    try:
        yield
    finally:
        _on_hashed.reset(token)


def tokenize(*args, **kwargs) -> str:
    """A hex token of the arguments' content.

    >>> tokenize([1, 2, "a"]) == tokenize([1, 2, "a"])
    True
    >>> tokenize(1) == tokenize(1.0)
    False
    """
    if len(args) == 1 and not kwargs and type(args[0]) in _SCALARS:
        # The common scatter item (an element of a list of numbers or strings): the bytes
        # _update would stream, hashed in one call; the token is the same. A tenth of
        # the time, which is most of a 10,000-element scatter's keys.
        x = args[0]
        return xxhash.xxh3_128_hexdigest(
            _SCALAR_BYTES % (type(x).__qualname__.encode(), repr(x).encode()))
    h = xxhash.xxh3_128()
    _update(h, args)
    if kwargs:
        _update(h, kwargs)
    return h.hexdigest()


# What _update streams for a lone scalar (a 1-tuple of it), as one format: tokenize()
# and named_tokens() hash it in one call, and must give the same token.
_SCALAR_BYTES = b"tuple1[%s%s]"
_SCALARS = frozenset({type(None), bool, int, float, complex, str, type(Ellipsis), slice, range})


def task_key(prefix: str, func, args, kwargs: dict, pure: bool) -> str:
    """``prefix-<token of the call>`` when pure (the same call, the same key), else random."""
    if not pure:
        return f"{prefix}-{random_token()}"
    plain = _plain_call_bytes(func, args, kwargs)
    token = tokenize(func, args, kwargs) if plain is None else xxhash.xxh3_128_hexdigest(plain)
    return f"{prefix}-{token}"


_FUNCTIONS = frozenset({types.FunctionType, types.BuiltinFunctionType})


def _plain_call_bytes(func, args, kwargs: dict) -> bytes | None:
    """What ``_update`` streams for ``(func, args, kwargs)``, made at once, when the call
    is an importable function of scalars and no keywords (most submits); else None.

    Hashed in one call the token is the same (xxh3 streams), in a third of the time:
    3.6 -> 1.1 µs for ``inc(5)`` here (timeit), a tenth of a trivial task's submit.
    """
    if kwargs or type(args) is not tuple or type(func) not in _FUNCTIONS or \
            not _is_importable(func):
        return None
    parts = [b"tuple3[", type(func).__qualname__.encode(),
             f"{func.__module__}.{func.__qualname__}".encode(), b"tuple%d[" % len(args)]
    for x in args:
        t = type(x)
        if t not in _SCALARS:
            return None
        parts += (t.__qualname__.encode(), repr(x).encode())
    parts.append(b"]dict0{]")  # the end of args, then the empty kwargs, then the end
    return b"".join(parts)


def named_tokens(values) -> list[str]:
    """``"<type name>-<tokenize(value)>"`` for each value: the keys of a scattered list.

    >>> named_tokens([1, "a"]) == [f"int-{tokenize(1)}", f"str-{tokenize('a')}"]
    True

    One call for the whole list: a 10,000-element scatter spent a fifth of its hashing
    on calling tokenize() once per element.
    """
    hexdigest, scalars, out = xxhash.xxh3_128_hexdigest, _SCALARS, []
    for x in values:
        t = type(x)
        if t in scalars:  # tokenize()'s own shortcut, inlined
            out.append(f"{t.__name__}-" + hexdigest(
                _SCALAR_BYTES % (t.__qualname__.encode(), repr(x).encode())))
        else:
            out.append(f"{t.__name__}-{tokenize(x)}")
    return out


def _update(h, x) -> None:
    t = type(x)
    h.update(t.__qualname__.encode())
    if t in _SCALARS:
        h.update(repr(x).encode())
    elif t in (bytes, bytearray, memoryview):
        _update_buffer(h, memoryview(x))
    elif t in (list, tuple) or isinstance(x, (list, tuple)):
        h.update(b"%d[" % len(x))
        for item in x:
            _update(h, item)
        h.update(b"]")
    elif isinstance(x, dict):
        _update_unordered(h, [tokenize(k, v) for k, v in x.items()])
    elif isinstance(x, (set, frozenset)):
        _update_unordered(h, [tokenize(item) for item in x])
    else:
        _update_object(h, x)


def _update_unordered(h, tokens: list) -> None:
    h.update(b"%d{" % len(tokens))
    for token in sorted(tokens):
        h.update(token.encode())


def _update_buffer(h, view: memoryview) -> None:
    h.update(b"%d:" % view.nbytes)
    if not view.contiguous:
        view = memoryview(view.tobytes())
    view = view.cast("B") if view.ndim != 1 or view.format != "B" else view
    on_hashed = _on_hashed.get()
    if on_hashed is None:
        h.update(view)
        return
    for start in range(0, view.nbytes, HASH_CHUNK):
        piece = view[start:start + HASH_CHUNK]
        h.update(piece)
        on_hashed(piece.nbytes)


def _update_object(h, x) -> None:
    key = getattr(x, "key", None)
    if type(x).__name__ == "Future" and isinstance(key, str):
        h.update(key.encode())
        return
    module = type(x).__module__.split(".")[0]
    if module == "numpy" and hasattr(x, "dtype") and hasattr(x, "shape"):
        _update_ndarray(h, x)
    elif module == "pandas":
        _update_pandas(h, x)
    elif callable(x) and _is_importable(x):
        h.update(f"{x.__module__}.{x.__qualname__}".encode())
    else:
        _update_pickled(h, x)


def _update_ndarray(h, a) -> None:
    import numpy as np

    if a.dtype.hasobject:
        _update_pickled(h, a)
        return
    h.update(f"{a.dtype.str}{a.shape}".encode())
    a = np.ascontiguousarray(a)  # a no-op for contiguous arrays
    _update_buffer(h, memoryview(a.reshape(-1).view(np.uint8)))


def _update_pandas(h, x) -> None:
    # Its pickle: the structure (index, columns, dtypes, block layout) in a small header,
    # the column data as out-of-band buffers hashed where they lie. 1 GiB hashed at the
    # speed of memory; pd.util.hash_pandas_object ran at ~0.6 GB/s here (2 s per GiB).
    _update_pickled(h, x)


def _is_importable(func) -> bool:
    qualname = getattr(func, "__qualname__", "")
    return bool(getattr(func, "__module__", None)) and "<" not in qualname and \
        func.__module__ != "__main__"


def _update_pickled(h, x) -> None:
    """The pickle of ``x``; large buffers (numpy, pandas data) hashed without a copy."""
    buffers: list = []
    try:
        data = pickle.dumps(x, protocol=5, buffer_callback=buffers.append)
    except Exception:
        buffers.clear()
        try:
            import cloudpickle  # (first need: ~6 ms of a cold start, with what it imports)

            data = cloudpickle.dumps(x, protocol=5, buffer_callback=buffers.append)
        except Exception:
            # Unpicklable: it cannot be scattered anyway; a random token keeps
            # tokenize() total so the serializer can report the real problem.
            data, buffers = os.urandom(16), []
    _update_buffer(h, memoryview(data))
    for buffer in buffers:
        _update_buffer(h, buffer.raw())
