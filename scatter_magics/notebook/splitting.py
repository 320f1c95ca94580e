"""``%scatter NAME --split``: which values are cut into pieces, the pieces' keys and labels,
and ``%gather NAME`` putting them back together.

A bare ``--split`` keeps its first meaning for containers: a list, tuple, set, dict or
other sequence gives one future per item. Anything else with a length (a numpy array, a
DataFrame or Series, text) is cut along its first axis (:mod:`scatter_magics.pieces`):
by default one piece per worker thread (of the ``-w`` workers, if given), ``--split N``
into ``N`` pieces (lists and tuples too), ``--split-size 64MiB`` into pieces of about
that size. Piece ``i`` of ``n`` is labelled ``df[i/n]`` and keyed ``df[i/n]-<token>``.

>>> cut = Cut("df", ("df[0/2]-a", "df[1/2]-b"), (3, 2), "DataFrame")
>>> cut.labels()
{'df[0/2]-a': 'df[0/2]', 'df[1/2]-b': 'df[1/2]'}
"""

from __future__ import annotations

import collections.abc
from dataclasses import dataclass

from IPython.core.error import UsageError

from .. import pieces
from ..keys import random_token
from ..sizes import format_bytes
from ..tokenize import tokenize
from .arguments import keyed_items
from .piece_label import PieceLabel


@dataclass(frozen=True)
class Cut:
    """A value ``%scatter`` cut into pieces: its name, its pieces' keys and their rows."""

    name: str
    keys: tuple
    rows: tuple[int, ...]
    type_name: str

    def label(self, i: int) -> PieceLabel:
        return PieceLabel(f"{self.name}[{i}/{len(self.keys)}]", self.rows[i])

    def labels(self) -> dict:
        """``{key: 'df[i/n]'}``, each a :class:`PieceLabel` that knows its rows."""
        return {key: self.label(i) for i, key in enumerate(self.keys)}


def is_itemwise(value) -> bool:
    """Whether a bare ``--split`` scatters ``value`` item by item (its first meaning)."""
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return False
    return isinstance(value, (collections.abc.Mapping, collections.abc.Set,
                              collections.abc.Sequence))


def cuts(values: dict, args) -> dict:
    """``{text: n}`` for each value ``args`` cut into pieces: ``n`` pieces, or None for one
    per worker thread (known once a cluster runs). UsageError, before anything is sent
    or started, for a value that cannot be cut or has fewer rows than pieces asked for.
    """
    split, size = args.split, args.split_size
    if split is not False and split is not True and size is not None:
        raise UsageError(f"--split {split} and --split-size both say how many pieces; "
                         f"give one of them")
    if split is False and size is None:
        return {}
    out = {}
    for text, value in values.items():
        if split is True and size is None and is_itemwise(value):
            continue  # one future per item, as --split always did
        option = f"--split-size {format_bytes(size)}" if size is not None else (
            "--split" if split is True else f"--split {split}")  # as the user asked
        try:
            length = pieces.check_cuttable(value)
            if size is not None:
                out[text] = pieces.count_for_size(value, length, size)
            elif split is True:
                out[text] = None
            else:
                out[text] = len(pieces.bounds(length, split))
        except (TypeError, ValueError) as exc:
            hint = " (--split alone scatters it item by item)" if is_itemwise(value) else ""
            raise UsageError(f"{option} {text}: {exc}{hint}; nothing was sent") from None
    return out


def cut_items(text: str, value, n: int, hash: bool) -> tuple[dict, object, Cut]:
    """``{key: piece}`` for ``value`` cut into ``n`` pieces, how to rebuild the result (the
    list of the pieces' futures) and the :class:`Cut` to remember.

    With ``hash``, the value is hashed once, whole, and each piece's key is made from
    that token and the piece's rows: the same value cut the same way gets the same keys,
    and no piece is pickled to be hashed (pandas copies a row slice of a 2-D block).
    """
    spans = pieces.bounds(len(value), n)
    whole = tokenize(value) if hash else None
    keys = tuple(f"{text}[{i}/{n}]-"
                 f"{tokenize(whole, start, stop) if hash else random_token()}"
                 for i, (start, stop) in enumerate(spans))
    take = pieces.cutter(value)
    items = {key: take(start, stop) for key, (start, stop) in zip(keys, spans, strict=True)}
    cut = Cut(text, keys, tuple(stop - start for start, stop in spans), type(value).__name__)
    return items, lambda futures: [futures[k] for k in keys], cut


def per_thread(counts: dict, values: dict, info: dict, workers: list | None) -> dict:
    """``counts`` with each None (one piece per thread) made the threads of the workers
    ``-w`` allows (all without it), from ``scheduler_info()``; at most one piece a row."""
    names = None if not workers else {
        f"tcp://{w[0]}:{w[1]}" if isinstance(w, tuple) else w for w in workers}
    threads = sum(w.get("nthreads") or 1 for address, w in info["workers"].items()
                  if names is None or address in names or w.get("name") in names)
    if not threads:
        raise UsageError("--split: the cluster has no workers to cut for; start some with "
                         "%cluster start -n 2, or give --split N")
    return {text: n or min(threads, max(len(values[text]), 1)) for text, n in counts.items()}


def key_values(values: dict, args) -> tuple[dict, dict, dict]:
    """``{key: value}`` for every argument's value(s) (or pieces), how to rebuild each
    result, and ``{text: Cut}`` for the values cut into pieces."""
    items, rebuilders, made = {}, {}, {}
    for text, value in values.items():
        if text in args.cuts:
            keyed, rebuilders[text], made[text] = cut_items(text, value, args.cuts[text],
                                                            args.hash)
        else:
            keyed, rebuilders[text] = keyed_items(text, value, args.split is True, args.hash)
        items.update(keyed)
    return items, rebuilders, made


def joined(text: str, cut: Cut, gathered):
    """The value ``%gather`` gives for a cut: its pieces joined.

    Pieces left out by ``--errors skip`` cannot make the whole: UsageError, saying how
    to get the pieces that are there.
    """
    if not isinstance(gathered, list) or len(gathered) != len(cut.keys):
        got = len(gathered) if isinstance(gathered, list) else 0
        raise UsageError(f"%gather {text}: only {got} of the {len(cut.keys)} pieces of "
                         f"{cut.name} could be gathered, which cannot make the whole "
                         f"{cut.type_name}; %gather {text} --pieces gives those pieces")
    return pieces.join(gathered)
