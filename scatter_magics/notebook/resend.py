"""Where ``%scatter`` can read a value again: the variable it was scattered from.

When every replica of a value is gone (its only worker died), the engine asks the
magics for it again (``Backend.resend_from``). :class:`VariableSource` reads the
variable now, keys it the way ``%scatter`` did, and gives back each value whose key is
unchanged; the content hash in the key is the proof that the variable still holds what
was scattered. A variable that was deleted, rebound or changed in place gives no value
but a :class:`~scatter_magics.errors.FutureLostError` that names it and says what to do;
a stale value is never sent.

Engines call :meth:`VariableSource.values` from one of their own threads while the
notebook may be running a cell: the variable is read once per call, by name and
attribute (never by evaluating text again, which could run code).

>>> class Shell: user_ns = {"b": [1, 2]}
>>> source = VariableSource(Shell(), "b", lambda value: {f"b-{value!r}": value})
>>> source.values(["b-[1, 2]"])
{'b-[1, 2]': [1, 2]}
>>> Shell.user_ns["b"] = [3]
>>> source.values(["b-[1, 2]"])["b-[1, 2]"]
FutureLostError('b changed after it was scattered and its only worker died: %scatter b again')
"""

from __future__ import annotations

from typing import Callable

from ..backend import future_types, is_future
from ..errors import FutureLostError
from ..structure import find_futures
from .arguments import is_dotted_name, keyed_items
from .namespace import MISSING, read_variable
from .splitting import cut_items


class VariableSource:
    """One ``%scatter`` argument (a variable or dotted name) and how it was keyed.

    ``rekey(value)`` gives ``{key: value}`` as that ``%scatter`` did (one key, or one
    per element with ``--split``), hashing the value's content again.
    """

    def __init__(self, shell, name: str, rekey: Callable[[object], dict]):
        self.shell, self.name, self.rekey = shell, name, rekey

    def values(self, keys: list) -> dict:
        """``{key: value}`` for each of ``keys`` the variable still holds as scattered,
        ``{key: FutureLostError}`` for the others."""
        value = read_variable(self.shell, self.name)
        if value is MISSING:
            return dict.fromkeys(keys, self._lost(
                "was deleted after it was scattered and its only worker died", "assign it and "))
        try:
            current = self.rekey(value)
        except Exception as exc:  # it cannot be keyed any more (--split of a non-sequence…)
            return dict.fromkeys(keys, self._lost(
                f"changed after it was scattered ({type(exc).__name__}: {exc}) and its only "
                "worker died"))
        changed = self._lost("changed after it was scattered and its only worker died")
        return {key: current[key] if key in current else changed for key in keys}

    def _lost(self, what: str, then: str = "") -> FutureLostError:
        return FutureLostError(f"{self.name} {what}: {then}%scatter {self.name} again")


MADE = 256  # sources remembered for reuse; past that, the cache starts again


class SourceOffers:
    """What ``%scatter`` tells its engine about where each scattered key can be read again.

    One :class:`VariableSource` per variable and way of keying it, made once and reused
    by every ``%scatter`` of that name: the engine keeps a key's source until the key is
    released, and a fresh source per call (with its closure and the parsed line it held)
    outlived the call, so the garbage collector ran ~50% more often in a loop of small
    round trips (gen-0 passes per 5,000 faked pairs: 98 against the bare client's 64).
    """

    def __init__(self, shell):
        self.shell = shell
        self._made: dict[tuple, VariableSource] = {}

    def offer(self, backend, results: dict, args) -> None:
        """Tell ``backend`` where to read the keys of each variable ``%scatter`` scattered.

        ``results`` maps each argument's text to its future(s); ``args`` are the
        ``%scatter``'s options, kept so a value scattered again is keyed (split, cut
        into the same pieces) and placed as before. Expressions (``df[0]``, ``f(x)``)
        get no source (reading them again would run code), nor does ``--no-hash`` (no
        content hash to check the variable against): their data is lost as any
        scattered data is.
        """
        resend_from = getattr(backend, "resend_from", None)
        if resend_from is None or not args.hash:
            return
        sources = {}
        for text, futures in results.items():
            if is_dotted_name(text):
                source = self._source(text, args)
                if is_future(futures):  # the usual %scatter x: no walk
                    sources[futures.key] = source
                else:
                    keys = [f.key for f in find_futures(futures, future_types())]
                    sources.update(dict.fromkeys(keys, source))
        if sources:
            resend_from(sources, workers=args.workers, broadcast=args.broadcast)

    def _source(self, text: str, args) -> "VariableSource":
        how = (text, getattr(args, "cuts", {}).get(text), args.split is True, args.hash)
        source = self._made.get(how)
        if source is None:
            if len(self._made) >= MADE:
                self._made.clear()
            source = self._made[how] = VariableSource(self.shell, text, _rekey(*how))
        return source


def _rekey(text: str, n: int | None, split: bool, hash: bool) -> Callable[[object], dict]:
    """``{key: value}`` as ``%scatter text`` keyed it (cut into ``n`` pieces, if it was)."""
    def rekey(value) -> dict:
        if n is not None:
            return cut_items(text, value, n, hash)[0]
        return keyed_items(text, value, split, hash)[0]
    return rekey
