"""What a worker holds: each key's value, serialized or not, and the total of their sizes.

A scattered value arrives serialized and is unpickled only when a task reads it; a
task's result is held as a value and serialized only when someone reads it over a
connection. :class:`HeldData` keeps the bytes held, for ``memory_limit``.
"""

from __future__ import annotations

import sys

from ..shm.mapper import SegmentMapper
from ..wire.serialize import Serialized, deserialize, nbytes_of, serialize, sizeof, wire

SEGMENTS = SegmentMapper()  # this process's read-only mappings of shared memory


class StoredValue:
    """A key's data: its serialized form, its value, or both (built lazily)."""

    __slots__ = ("_serialized", "_value", "_has_value", "nbytes", "type")

    def __init__(self, serialized: Serialized | bytes | None = None, value=None,
                 has_value=False):
        self._serialized, self._value, self._has_value = serialized, value, has_value
        self.nbytes = nbytes_of(serialized) if serialized is not None else sizeof(value)
        self.type = type(value).__name__ if has_value else None

    @property
    def value(self):
        if not self._has_value:
            self._value, self._has_value = deserialize(self._serialized, SEGMENTS.view), True
        return self._value

    @property
    def serialized(self) -> Serialized | bytes:
        """In its wire form (see ``serialize.wire``)."""
        if self._serialized is None:
            return wire(serialize(self._value))  # not cached: it would double the memory held
        return self._serialized


class HeldData(dict):
    """``{key: StoredValue}`` that keeps the total of their sizes, for ``memory_limit``."""

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def __setitem__(self, key: str, value: StoredValue) -> None:
        old = self.get(key)
        self.nbytes += value.nbytes - (old.nbytes if old is not None else 0)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.nbytes -= self[key].nbytes
        super().__delitem__(key)

    def pop(self, key: str, *default):
        if key in self:
            self.nbytes -= self[key].nbytes
        return super().pop(key, *default)


def not_aliasing_shared_memory(value):
    """``value``, copied if it is a numpy view into a shared segment.

    Segments are reused once their key is released; a result that kept pointing into
    one (``x[:10]`` of a scattered array) would then silently change.
    """
    numpy = sys.modules.get("numpy")
    if numpy is None or not isinstance(value, numpy.ndarray) or value.base is None:
        return value
    low, high = numpy.byte_bounds(value) if hasattr(numpy, "byte_bounds") else \
        numpy.lib.array_utils.byte_bounds(value)
    if any(start <= low < end or start < high <= end for start, end in SEGMENTS.spans()):
        return value.copy()
    return value
