"""The client's side of the scheduler's event stream, and its reports about keys.

A mixin of :class:`~scatter_magics.engine.client.client.Client`: ``subscribe_events`` (what
the live widget and the Jupyter server's probes use) and the handling of the
scheduler's unsolicited reports (``events``, ``key-update``, ``worker-unresponsive``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .client import Client

logger = logging.getLogger("scatter_magics.engine.client.client")

UNSUBSCRIBE_TIMEOUT = 10.0  # s; Subscription.close() waits for the loop this long at most


class Subscription:
    """A callback receiving batches of scheduler events; ``close()`` stops it."""

    def __init__(self, client: "Client", callback: Callable[[list], None]):
        self.client, self.callback = client, callback

    def close(self) -> None:
        """Stop the callbacks: called from another thread, none runs after this returns."""
        client = self.client
        if client.status == "closed":
            return
        if client.loop.in_loop_thread():
            client._unsubscribe(self)
        else:  # a batch being delivered right now finishes first
            client.loop.sync(_call_async(client._unsubscribe, self), UNSUBSCRIBE_TIMEOUT)


async def _call_async(fn: Callable, *args) -> None:
    fn(*args)


class Events:
    """Subscriptions to the scheduler's events, and reports from it."""

    def subscribe_events(self, callback: Callable[[list], None]) -> Subscription:
        """Call ``callback(batch)`` on the loop thread with scheduler events.

        The first batch is a snapshot; see ``docs/internals.md`` for the event records.
        """
        self._check_open()
        subscription = Subscription(self, callback)
        self.loop.sync(self._subscribe(subscription))
        return subscription

    async def _subscribe(self, subscription: Subscription) -> None:
        snapshot = await self._link.request({"op": "subscribe"})
        subscription.callback(snapshot)
        self._subscriptions.append(subscription)

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
            if not self._subscriptions and not self._link.closed:
                # Sent now, in order: a subscribe queued behind us must come after it.
                self._link.send({"op": "unsubscribe"})

    def _on_report(self, msg: dict) -> None:
        if msg["op"] == "events":
            self._publish(msg["events"])
        elif msg["op"] == "key-update":
            self._key_update(msg)
        elif msg["op"] == "worker-unresponsive" and hasattr(self, "_workers"):
            self._workers.fail_pending(msg["address"], msg["error"])

    def _publish(self, batch: list) -> None:
        for subscription in list(self._subscriptions):
            try:
                subscription.callback(batch)
            except Exception:
                logger.exception("event callback %r failed", subscription.callback)

    def _key_update(self, msg: dict) -> None:
        state = self._states.get(msg["key"])
        if state is None:
            return
        status = msg["status"]
        if status == "finished":
            state.finish(msg["type"])
        elif status == "error":
            state.set_error(msg["exception"], msg["traceback"])
        elif status == "lost":
            state.lose(msg["exception"])
        elif status == "cancelled":
            state.cancel(msg["exception"])
        elif status == "pending":
            state.reset()
