"""Dask keys: what may be one, and how one reads on screen.

A key is what Dask allows (``dask.typing.Key``): a ``str``, ``bytes``, ``int`` or
``float``, or a tuple of keys, such as ``("x", 0)``. Keys keep their type everywhere a
program sees them (``Future.key``, ``who_has``, event records); only what a person reads
(a widget cell, a table) shows their text.

>>> key_text(("x", 0))
"('x', 0)"
>>> value_name("df[0/4]-5f3c2a9b8e7d"), value_name("len-3f2a9c0b1d2e"), value_name(("x", 0))
('df', 'len', "('x', 0)")
>>> short_key("f-4b4d31504aa145c187b6381823235b1a")
'f-4b4d3150'
>>> check_key(["x", 0])
Traceback (most recent call last):
...
TypeError: a key must be a str, bytes, int, float or a tuple of them, as in Dask; got 'list'
"""

from __future__ import annotations

import os
import re

ATOMS = (str, bytes, int, float)
_TOKEN = re.compile(r"-[0-9a-f]{8,}$")


def random_token() -> str:
    """32 random hex digits, as ``uuid.uuid4().hex``: the random part of a key or an id.

    Not uuid itself: importing it runs ``platform.system()``, ~2 ms of a cold start.
    """
    return os.urandom(16).hex()


def is_key(obj) -> bool:
    if isinstance(obj, ATOMS):
        return True
    return type(obj) is tuple and all(is_key(part) for part in obj)


def check_key(obj):
    """``obj`` if it is a valid key; else a TypeError naming its type."""
    if not is_key(obj):
        raise TypeError(f"a key must be a str, bytes, int, float or a tuple of them, as in "
                        f"Dask; got {type(obj).__name__!r}")
    return obj


def key_text(key) -> str:
    """The key as shown to a person: itself if a str, else its ``str()`` (as Dask shows it)."""
    return key if isinstance(key, str) else str(key)


def key_name(key) -> str:
    """What a key was made from: ``'len'`` for ``len-3f2a…`` (a task's function), as Dask's
    ``key_split`` does; keys without a token suffix are returned whole (as text).

    >>> key_name("revenue-5f3c0a9b1d2e"), key_name("df"), key_name(("x", 0))
    ('revenue', 'df', "('x', 0)")
    """
    return _TOKEN.sub("", key_text(key))


def value_name(key) -> str:
    """The name of the value a key holds all or part of, as views count values: ``df`` for
    ``df-<token>``, for a piece ``df[0/4]-<token>`` and for an element ``df[3]-<token>``; a
    task's function (``len-<token>``), as Dask's key prefixes name them."""
    text = key_text(key)
    head, dash, token = text.rpartition("-")
    # A set test, not a regex: ~0.9 µs a key, 9 ms for the overview of 10,000 (a regex
    # and all() over a generator took 29 ms).
    if dash and len(token) >= 8 and _HEX.issuperset(token):
        text = head
    bracket = text.find("[")
    return text[:bracket] if bracket > 0 else text


_HEX = frozenset("0123456789abcdef")


_LONG_TOKEN = re.compile(r"-([0-9a-f]{8})[0-9a-f]{8,}$")


def short_key(key) -> str:
    """The key's text with a long hex token cut to 8 digits (``f-4b4d3150``): enough to
    tell a task from the others in a line of output, short enough to read."""
    return _LONG_TOKEN.sub(r"-\1", key_text(key))
