"""A client's subscriptions to its scheduler's event stream.

What the live widget and the Jupyter server's probes use, through
``Client.subscribe_events``: each subscription gets a snapshot, then every batch of
events the scheduler reports (``docs/internals.md`` has the event records).

>>> stream = EventStream()
>>> stream.start(client.loop, client_link)                   # doctest: +SKIP
>>> subscription = stream.subscribe(print)                   # doctest: +SKIP
>>> subscription.close()                                     # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Callable

logger = logging.getLogger("scatter_magics.engine.client.client")

UNSUBSCRIBE_TIMEOUT = 10.0  # s; Subscription.close() waits for the loop this long at most


class Subscription:
    """A callback receiving batches of scheduler events; ``close()`` stops it."""

    def __init__(self, stream: "EventStream", callback: Callable[[list], None]):
        self.stream, self.callback = stream, callback

    def close(self) -> None:
        """Stop the callbacks: called from another thread, none runs after this returns."""
        self.stream.remove(self)


class EventStream:
    """The subscriptions of one client, fed on its loop thread."""

    def __init__(self):
        self._subscriptions: list[Subscription] = []
        self.closed = False

    def start(self, loop, link) -> None:
        """Subscribe through ``link`` (the client's link to its scheduler) on ``loop``."""
        self._loop, self._link = loop, link

    def subscribe(self, callback: Callable[[list], None]) -> Subscription:
        """Call ``callback(batch)`` on the loop thread: a snapshot first, then events.

        From a thread other than the loop's; returns once the snapshot was delivered.
        """
        subscription = Subscription(self, callback)
        self._loop.sync(self._add(subscription))
        return subscription

    async def _add(self, subscription: Subscription) -> None:
        snapshot = await self._link.request({"op": "subscribe"})
        subscription.callback(snapshot)
        self._subscriptions.append(subscription)

    def remove(self, subscription: Subscription) -> None:
        """Stop ``subscription``, from any thread: a batch being delivered right now
        finishes first."""
        if self.closed or not self._loop.running:
            return
        self._loop.call(self._remove, subscription, timeout=UNSUBSCRIBE_TIMEOUT)

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
            if not self._subscriptions and not self._link.closed:
                # Sent now, in order: a subscribe queued behind us must come after it.
                self._link.send({"op": "unsubscribe"})

    def publish(self, batch: list) -> None:
        """Hand ``batch`` to every subscription (on the loop); a failing callback is logged."""
        for subscription in list(self._subscriptions):
            try:
                subscription.callback(batch)
            except Exception:
                logger.exception("event callback %r failed", subscription.callback)

    def close(self, reason: str | None = None) -> None:
        """Say so to every subscription (a widget shows it), with ``reason`` when the
        client closed under its user, then forget them (on the loop)."""
        self.publish([{"event": "closed", **({"reason": reason} if reason else {})}])
        self._subscriptions.clear()
        self.closed = True
