"""What the pool keeps per key (:class:`KeyRecord`) and per early copy (:class:`Draft`)."""

from __future__ import annotations

import threading
from typing import NamedTuple

from .segment import Segment


class KeyRecord:
    """A key's segment and who still needs it.

    ``pins`` counts scatters in flight that will send its refs to workers; ``held`` says
    the scheduler records the key. The segment is reused only when neither is true (for
    any key in it: the pieces of a split share one): the scheduler forgetting a key must
    not free a segment that a scatter of the same content is about to point workers at
    (a gather then returned another key's data).
    """

    __slots__ = ("segment", "refs", "pins", "held", "ready", "error", "size")

    def __init__(self):
        self.size = 0  # bytes of its large buffers, aligned
        self.segment: Segment | None = None
        self.refs: list | None = None  # stays None if the buffers went over the socket
        self.pins = 1
        self.held = False
        self.ready = threading.Event()  # set when the writer is done, either way
        self.error: BaseException | None = None


class Draft(NamedTuple):  # not a dataclass: the worker template imports no dataclasses
    """Buffers copied before their key was known (``segment`` None: no room for them)."""

    segment: Segment | None
    refs: list | None
    size: int
    why: str | None  # why there is no segment, if there is none
