"""The names ``%scatter`` remembers: which future(s) each variable was scattered as.

``%gather df`` after ``%scatter df`` finds ``df``'s futures here, and the widgets and
``%cluster`` label keys with the names (``df``, ``rows[3]``) through :meth:`labels`.

>>> names = RememberedNames()
>>> names.remember({"x": "a future"}); "x" in names, names.known()
(True, 'x')
"""

from __future__ import annotations

from IPython.core.error import UsageError

from ..backend import future_types, is_future
from ..structure import find_futures
from .display import ScatterResult, labelled_futures
from .splitting import Cut

UNDEFINED = object()  # the value of a %gather name that names nothing


class RememberedNames:
    """``{name: future(s)}`` of the latest ``%scatter`` of each name, and their labels."""

    def __init__(self):
        self.futures: dict[str, object] = {}  # name -> the future(s) %scatter made for it
        self._labels_of: dict[str, dict] = {}  # name -> {key: label} of its future(s)
        self._labels: dict[str, str] | None = {}  # key -> label, all names; None: rebuild
        self.cuts: dict[str, Cut] = {}  # name -> how %scatter --split cut its value

    def __contains__(self, name: str) -> bool:
        return name in self.futures

    def __getitem__(self, name: str):
        return self.futures[name]

    def gather_target(self, text: str, value):
        """What ``%gather text`` gathers, given ``value``, what ``text`` evaluates to
        (:data:`UNDEFINED` if nothing): the value if it holds futures, else what
        ``%scatter text`` made; UsageError naming the names remembered if neither."""
        if isinstance(value, ScatterResult):  # the core walks plain dicts only
            value = dict(value)
        if value is not UNDEFINED and find_futures(value, future_types()):
            return value
        if text in self.futures:
            return self.futures[text]
        known = self.known()
        if value is UNDEFINED:
            raise UsageError(f"{text!r} is not defined and %scatter has not scattered anything "
                             f"by that name (names %scatter remembers: {known})")
        raise UsageError(f"nothing to gather: {text} (of type {type(value).__name__}) holds "
                         f"no futures, and %scatter has not scattered it (names %scatter "
                         f"remembers: {known})")

    def known(self) -> str:
        """The names, for a message: ``"df, x"`` or ``"none yet"``."""
        return ", ".join(self.futures) or "none yet"

    def remember(self, results: dict, cuts: dict[str, Cut] | None = None) -> None:
        """Remember ``{name: future(s)}``; ``cuts`` says which were cut into pieces."""
        # Label only what is new: relabelling every remembered name on each %scatter
        # grew with the names a notebook had scattered.
        cuts = cuts or {}
        self.futures.update(results)
        for name, value in results.items():
            cut = cuts.get(name)
            if cut is not None:
                self.cuts[name] = cut
                self._labels_of[name] = cut.labels()
                continue
            self.cuts.pop(name, None)
            if is_future(value):  # the usual %scatter x: no walk
                self._labels_of[name] = {value.key: name}
            else:
                self._labels_of[name] = {f.key: label
                                         for label, f in labelled_futures({name: value})}
        self._labels = None

    def let_go(self, names, new_keys) -> None:
        """Forget the future(s) of each of ``names`` that is about to be scattered again
        as other keys, before that scatter: the name's old value is stale (the variable
        changed), and letting go of it first gives its memory back before the new copy
        needs room. Its release also travels with the new scatter (on Dask: one wake-up
        of the client's loop, not a second one after it: ~2 % of a small round trip).
        A name whose value did not change keeps its future: the scatter is a no-op.
        """
        for name in names:
            old = self.futures.get(name)
            if old is None:
                continue
            keys = [old.key] if is_future(old) else [f.key for f in find_futures(
                old, future_types())]
            if new_keys.isdisjoint(keys):
                del self.futures[name], self._labels_of[name]
                self.cuts.pop(name, None)
                self._labels = None

    def cut_of(self, value) -> Cut | None:
        """The :class:`Cut` whose pieces' futures ``value`` is, in order, if any."""
        if type(value) is not list or not value:
            return None
        keys = tuple(getattr(f, "key", None) for f in value)
        return next((cut for cut in self.cuts.values() if cut.keys == keys), None)

    def forget_all(self) -> None:
        """Forget every name (``%unload_ext``): the futures only the magics held are
        released now, not whenever the garbage collector breaks the magics' cycles."""
        self.futures.clear()
        self._labels_of.clear()
        self.cuts.clear()
        self._labels = None

    def forget_client(self, client) -> None:
        """Forget every name whose futures belong to ``client`` (it closed)."""
        for name, value in list(self.futures.items()):
            if any(f.client is client for f in find_futures(value, future_types())):
                del self.futures[name]
                del self._labels_of[name]
                self.cuts.pop(name, None)
        self._labels = None

    def labels(self) -> dict[str, str]:
        """``{key: 'df'}`` for the futures remembered."""
        if self._labels is None:
            self._labels = {key: label for labels in self._labels_of.values()
                            for key, label in labels.items()}
        return self._labels
