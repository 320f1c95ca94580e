"""Pacing a widget's flushes: a flood of "something changed" pokes becomes at most one
flush per interval, a trailing flush, and a settled re-send."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class Throttle:
    """Run ``flush`` at most once per ``interval`` seconds, however often it is poked.

    The first poke after a quiet spell flushes at once (leading edge); pokes during the
    interval are folded into one flush at its end (trailing edge), so the last state is
    always pushed. ``settle`` seconds after the last flush, ``resend`` runs once: the
    front end gets the settled state again even if IOPub dropped a message under load.

    All methods must be called on the one event-loop thread that ``call_later`` belongs
    to; ``call_later(delay, fn)`` returns a handle with ``cancel()`` (as
    ``asyncio.AbstractEventLoop.call_later`` does).
    """

    def __init__(
        self,
        flush: Callable[[], None],
        call_later: Callable[[float, Callable[[], None]], Any],
        *,
        interval: float = 0.1,
        settle: float | None = 0.5,
        resend: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._flush = flush
        self._resend = resend
        self._call_later = call_later
        self.interval = interval
        self.settle = settle
        self._clock = clock
        self._last = float("-inf")
        self._timer: Any = None
        self._settle_timer: Any = None
        self.flushes = 0

    def poke(self) -> None:
        """Note that the state changed: flush now, or at the end of this interval."""
        if self._timer is not None:
            return
        wait = self._last + self.interval - self._clock()
        if wait <= 0:
            self._fire()
        else:
            self._timer = self._call_later(wait, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._last = self._clock()
        self.flushes += 1
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        self._flush()
        if self._resend is not None and self.settle is not None:
            self._settle_timer = self._call_later(self.settle, self._settled)

    def _settled(self) -> None:
        self._settle_timer = None
        self._resend()

    def cancel(self) -> None:
        """Drop any pending flush or re-send."""
        for timer in (self._timer, self._settle_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._settle_timer = None
