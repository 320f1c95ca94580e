"""The names ``%scatter`` remembers: which future(s) each variable was scattered as.

``%gather df`` after ``%scatter df`` finds ``df``'s futures here, and the widgets and
``%cluster`` label keys with the names (``df``, ``rows[3]``) through :meth:`labels`.

>>> names = RememberedNames()
>>> names.remember({"x": "a future"}); "x" in names, names.known()
(True, 'x')
"""

from __future__ import annotations

from ..backend import future_types, is_future
from ..structure import find_futures
from .display import labelled_futures


class RememberedNames:
    """``{name: future(s)}`` of the latest ``%scatter`` of each name, and their labels."""

    def __init__(self):
        self.futures: dict[str, object] = {}  # name -> the future(s) %scatter made for it
        self._labels_of: dict[str, dict] = {}  # name -> {key: label} of its future(s)
        self._labels: dict[str, str] | None = {}  # key -> label, all names; None: rebuild

    def __contains__(self, name: str) -> bool:
        return name in self.futures

    def __getitem__(self, name: str):
        return self.futures[name]

    def known(self) -> str:
        """The names, for a message: ``"df, x"`` or ``"none yet"``."""
        return ", ".join(self.futures) or "none yet"

    def remember(self, results: dict) -> None:
        # Label only what is new: relabelling every remembered name on each %scatter
        # grew with the names a notebook had scattered.
        self.futures.update(results)
        for name, value in results.items():
            if is_future(value):  # the usual %scatter x: no walk
                self._labels_of[name] = {value.key: name}
            else:
                self._labels_of[name] = {f.key: label
                                         for label, f in labelled_futures({name: value})}
        self._labels = None

    def forget_client(self, client) -> None:
        """Forget every name whose futures belong to ``client`` (it closed)."""
        for name, value in list(self.futures.items()):
            if any(f.client is client for f in find_futures(value, future_types())):
                del self.futures[name]
                del self._labels_of[name]
        self._labels = None

    def labels(self) -> dict[str, str]:
        """``{key: 'df'}`` for the futures remembered."""
        if self._labels is None:
            self._labels = {key: label for labels in self._labels_of.values()
                            for key, label in labels.items()}
        return self._labels
