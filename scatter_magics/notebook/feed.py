"""One event subscription of a live widget: batches folded in on the loop thread, flushes
paced by a :class:`~scatter_magics.notebook.throttle.Throttle`.

Every widget of :mod:`scatter_magics.notebook.widget` holds one; messages it causes are
sent outside any cell's context (:func:`outside_any_cell`), so nbclient and the front
ends attribute them to the cell running now, not to the one that made the widget.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable

from ..backend import backend_for
from .throttle import Throttle


CLIENT_CLOSED = "client closed"  # why a widget is not live, unless the stream says more


class Feed:
    """One event subscription, folding batches in and flushing through a :class:`Throttle`.

    ``apply(batch) -> bool`` and the throttle run on the client's loop thread; the
    throttle's timers use that thread's running asyncio loop, captured from the first
    batch. :meth:`request_flush` and :meth:`close` may be called from any thread.
    """

    def __init__(self, client, apply: Callable[[list], bool], flush: Callable[[], None],
                 resend: Callable[[], None], interval: float, settle: float | None,
                 client_closed: Callable[[], None] = lambda: None):
        self._apply = apply
        self._client_closed = outside_any_cell(client_closed)
        self.client_is_closed = False
        self.closed_reason = ""  # why the client's stream ended, once it did
        self._flush = outside_any_cell(self._unless_closed(flush))
        self._resend = outside_any_cell(self._unless_closed(resend))
        self._interval, self._settle = interval, settle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._throttle: Throttle | None = None
        self.closed = False
        # Weak references: a displayed widget must not keep a dropped client (and the
        # cluster it owns) alive; the client holds its subscriptions, not the reverse.
        self._client = weakref.ref(client)
        self._subscription = weakref.ref(backend_for(client).subscribe_events(self._on_events))

    def _unless_closed(self, fn: Callable[[], None]) -> Callable[[], None]:
        # A timer may fire on the loop thread just as close() runs on another.
        def run() -> None:
            if not self.closed:
                fn()
        return run

    def _on_events(self, batch: list) -> None:
        if self.closed:
            return
        closed = next((e for e in batch if e.get("event") == "closed"), None)
        if closed is not None:
            # Said at once: the loop (and any timer on it) may stop right after this batch,
            # e.g. when the Jupyter sidebar stopped the cluster from outside the kernel.
            self.client_is_closed = True
            self.closed_reason = closed.get("reason") or CLIENT_CLOSED
            if self._throttle is not None:
                self._throttle.cancel()  # its timers would never fire once the loop stops
            self._client_closed()
            return
        if self._throttle is None:
            self._loop = asyncio.get_running_loop()
            self._throttle = Throttle(self._flush, self._loop.call_later, interval=self._interval,
                                      settle=self._settle, resend=self._resend)
        if self._apply(batch):
            self._throttle.poke()

    def belongs_to(self, client) -> bool:
        return self._client() is client

    @property
    def live(self) -> bool:
        """Still subscribed to a running client."""
        client = self._client()
        return not self.closed and not self.client_is_closed and client is not None \
            and backend_for(client).running

    def request_flush(self) -> None:
        """Flush soon on the loop thread, or now if the loop is gone (nobody else writes)."""
        if self.live and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._poke)
                return
            except RuntimeError:  # the loop closed meanwhile
                pass
        self._flush()

    def _poke(self) -> None:
        if not self.closed and self._throttle is not None:
            self._throttle.poke()

    def close(self) -> None:
        """Unsubscribe and drop pending timers; idempotent."""
        if self.closed:
            return
        self.closed = True
        subscription = self._subscription()
        if subscription is not None:
            subscription.close()
        if self._loop is not None and self._throttle is not None:
            try:
                self._loop.call_soon_threadsafe(self._throttle.cancel)
            except RuntimeError:  # the loop is closed: its timers died with it
                pass


def outside_any_cell(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` run in an empty ``contextvars`` context.

    ipykernel 7 keeps the parent header of IOPub messages in a ContextVar
    (``Kernel._shell_parent``), and the loop thread's tasks inherit the context of the
    cell that started them: a message sent from there would claim to come from that
    long-finished cell, and nbclient, which keeps only messages of the running cell,
    drops it. In an empty context ``Kernel._get_shell_context_var`` falls back to the
    latest request's header. JupyterLab ignores the parent of comm messages either way.
    """
    return lambda: contextvars.Context().run(fn)
