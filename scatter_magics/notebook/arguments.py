"""What the magics' arguments become: checked option values, keyed items, known workers.

The ``type=`` functions turn one option's text into a value or an argparse error (which
``magic_arguments`` shows as a ``UsageError``); the rest turns ``%scatter``'s names into
``{key: value}`` and checks ``-w`` against the running cluster before anything starts.

>>> is_dotted_name("self.data.df"), is_dotted_name("df[0]")
(True, False)
"""

from __future__ import annotations

import argparse
import functools
import keyword
import re
from collections.abc import Sequence

from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring

from ..backend import Backend
from ..keys import random_token
from ..sizes import parse_bytes
from ..tokenize import tokenize
from .display import natural_order

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


PARSED_LINES = 512  # lines remembered per magic: a notebook repeats a handful of them


def parse_line(magic, line: str) -> argparse.Namespace:
    """``parse_argstring(magic, line)``, parsed once per distinct line.

    The parse depends only on the line's text (every ``type=`` here is a pure function
    of its text), and argparse with IPython's line splitting took ~50 µs a magic in a
    loop of small scatters, a tenth of the magics' whole overhead on Dask. Errors are
    not remembered: a bad line raises its ``UsageError`` every time. Each call gets its
    own copy, lists too, so a caller may change what it got.
    """
    parsed = _parse_cached(getattr(magic, "__func__", magic), line)
    copy = argparse.Namespace()
    copy.__dict__.update(parsed.__dict__)
    for name, value in parsed.__dict__.items():
        if type(value) is list:
            copy.__dict__[name] = value.copy()
    return copy


def parse_scatter_line(magic, line: str) -> argparse.Namespace:
    """``%scatter``'s line: :func:`parse_line`, with the names a bare ``--split`` saw first
    (:class:`SplitOption`) put back in front; UsageError if there is no name at all."""
    args = parse_line(magic, line)
    args.names = [*getattr(args, "leading_names", []), *args.names]
    if not args.names:
        raise UsageError("%scatter needs at least one NAME_OR_EXPR: %scatter df")
    return args


@functools.lru_cache(maxsize=PARSED_LINES)
def _parse_cached(function, line: str) -> argparse.Namespace:
    # Keyed by the magic's function, not the bound method: the cache must not keep a
    # ScatterMagics (and the cluster it owns) alive after %unload_ext.
    return parse_argstring(function, line)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _memory_limit(text: str) -> str:
    """``auto``, ``0`` (no limit) or a size such as ``2GiB``; kept as text for the engine."""
    if text != "auto":
        try:
            parse_bytes(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"memory_limit {text!r} is not a size: use auto, "
                                             "bytes, or a number with a unit such as 2GiB") from None
    return text


def _worker(text: str):
    """An address ``tcp://host:port`` or a name stay text; ``host:port`` becomes a tuple."""
    host, sep, port = text.rpartition(":")
    if "://" not in text and sep and host and port.isdigit():
        return (host, int(port))
    return text


def _as_typed(worker) -> str:
    """A ``-w`` worker as the user wrote it: ``host:port`` again for a pair."""
    return worker if isinstance(worker, str) else f"{worker[0]}:{worker[1]}"


def _piece_size(text: str) -> int:
    """``--split-size``: bytes per piece, ``64MiB`` or a number of bytes (> 0)."""
    try:
        size = parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"--split-size {text!r} is not a size > 0")
    return size


_COUNT = re.compile(r"[+-]?\d+")


class SplitOption(argparse.Action):
    """``--split`` (``True``) or ``--split N`` (``N``, a whole number >= 1).

    A bare ``--split`` used to be a flag, so ``%scatter --split rows`` must still name
    ``rows``: a word that is not a number is kept as a leading name (``leading_names``)
    rather than taken as the count.
    """

    def __call__(self, parser, namespace, value, option_string=None):
        if value is None:
            namespace.split = True
        elif _COUNT.fullmatch(value) or _is_number(value):  # (no name starts with a digit)
            if not _COUNT.fullmatch(value) or int(value) < 1:
                raise argparse.ArgumentError(self, f"{value!r} is not a whole number >= 1")
            namespace.split = int(value)
        else:
            namespace.split = True
            namespace.leading_names = [*getattr(namespace, "leading_names", []), value]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return not text.isidentifier()  # ("nan" and "inf" are names too)


def _name(text: str) -> str:
    if not is_dotted_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a variable name")
    return text


@functools.lru_cache(maxsize=256)  # asked by every %scatter and %gather of the same few names
def is_dotted_name(text: str) -> bool:
    """``df`` or ``self.data.df``: something an assignment can bind."""
    return bool(_DOTTED.fullmatch(text)) and not any(
        keyword.iskeyword(part) for part in text.split("."))



def check_workers(backend: Backend | None, workers: list) -> None:
    """UsageError unless every ``-w`` worker is one of the running cluster's.

    Checked before anything is hashed, sent or started: with no cluster running there
    are no workers to choose, and starting one just to fail would leave it running.
    """
    given = ", ".join(map(_as_typed, workers))
    if backend is None:
        raise UsageError(f"-w {given}: no cluster is running, so there are no workers to "
                         f"choose from; start one with %cluster start (its workers are named "
                         f"worker-0, worker-1, …), then %scatter with -w")
    known = backend.scheduler_info()["workers"]
    names = {w.get("name"): a for a, w in known.items()}
    for worker in workers:
        address = f"tcp://{worker[0]}:{worker[1]}" if isinstance(worker, tuple) else worker
        if address not in known and address not in names:
            listed = ", ".join(f"{w.get('name')} ({a})" for a, w in sorted(
                known.items(), key=lambda item: natural_order(item[1].get("name", item[0]))))
            raise UsageError(f"unknown worker {_as_typed(worker)!r}; known workers: "
                             f"{listed or 'none'}. "
                             f"Pass -w a worker name, address or host:port.")


def keyed_items(name: str, value, split: bool, hash: bool):
    """``{key: value}`` to scatter for one argument, and how to rebuild its result.

    Keys keep the argument as a readable prefix: ``df-<token>``, ``rows[3]-<token>``.
    """
    def key(label: str, v) -> str:
        return f"{label}-{tokenize(v) if hash else random_token()}"

    if not split:
        k = key(name, value)
        return {k: value}, lambda futures: futures[k]
    if isinstance(value, dict):
        keys = {item: key(f"{name}[{item!r}]", v) for item, v in value.items()}
        return ({keys[i]: v for i, v in value.items()},
                lambda futures: {i: futures[k] for i, k in keys.items()})
    if isinstance(value, (set, frozenset, Sequence)) and not isinstance(value, (str, bytes)):
        elements = list(value)
        keys = [key(f"{name}[{i}]", v) for i, v in enumerate(elements)]
        kind = type(value) if type(value) in (list, tuple, set, frozenset) else list
        items = dict(zip(keys, elements, strict=True))
        return items, lambda futures: kind(futures[k] for k in keys)
    raise UsageError(f"--split needs a list, tuple, set, sequence or dict; {name} is of "
                     f"type {type(value).__name__}")
