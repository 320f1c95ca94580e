"""Asking one registered cluster what it holds, from the Jupyter server's event loop.

The server keeps one authenticated connection per embedded cluster (the engine's own
``comm.connect`` with the secret from the registry file) and asks it for an ``overview``
(workers, keys counted by status) or a page of its keys. Connections are opened on first
use and dropped when the cluster goes away. Nothing here returns the secret.

While a sidebar is open, :meth:`EmbeddedProbe.watch` also subscribes to the scheduler's
event stream (docs/internals.md, "The event stream") and calls back on every event that
can change the listing, so the server learns of a change without asking again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from ..discovery import Entry
from ..errors import ClusterUnreachableError, ScatterMagicsError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0  # s; a cluster that does not answer by then is shown unreachable
REQUEST_TIMEOUT = 3.0
MIB = 2**20
STOPPED_BY_SIDEBAR = "stopped from the Jupyter sidebar"  # what the cluster's other clients show


class EmbeddedProbe:
    """One connection to an embedded cluster's scheduler, opened on first use."""

    owner_unregisters = True  # the process that owns the cluster removes its file on close
    reports_changes = True  # :meth:`watch` subscribes to the scheduler's events

    def __init__(self, entry: Entry):
        self.entry = entry
        self._channel = None
        self._opening: asyncio.Lock = asyncio.Lock()
        self._on_change: Callable[[], None] | None = None  # set while watched
        self._subscribed = None  # the channel our subscription lives on
        self._shown_metrics: dict[str, tuple] = {}  # worker address → what the listing shows

    async def _connected(self):
        async with self._opening:
            if self._channel is None or self._channel.closed:
                from ..engine.wire.comm import connect

                # What a scheduler tells every client; the listing learns it otherwise.
                handlers = {"events": self._on_events, "scheduler-closing": _not_needed,
                            "worker-unresponsive": _not_needed}
                self._channel = await connect(self.entry.scheduler_address, self.entry.secret,
                                              handlers, timeout=CONNECT_TIMEOUT)
                self._channel.on_close.append(self._on_channel_closed)
                await self._channel.request({"op": "register-client"})
            return self._channel

    # ------------------------------------------------------------ watching ---
    async def watch(self, on_change: Callable[[], None]) -> bool:
        """Call ``on_change()`` (on the server's loop) whenever the listing of this cluster
        may have changed, until :meth:`unwatch`; idempotent. True when it subscribed just
        now: a change made before that was not reported, so the caller lists again."""
        self._on_change = on_change
        try:
            channel = await asyncio.wait_for(self._connected(), CONNECT_TIMEOUT)
            if self._subscribed is not channel:
                # The snapshot is not needed: the listing is built from ``overview``.
                await asyncio.wait_for(channel.request({"op": "subscribe"}), REQUEST_TIMEOUT)
                self._subscribed = channel
                return True
        except (OSError, asyncio.TimeoutError, ScatterMagicsError) as exc:
            self.close()
            raise ClusterUnreachableError(f"the scheduler at {self.entry.scheduler_address} did "
                                          f"not answer: {type(exc).__name__}") from exc
        return False

    def unwatch(self) -> None:
        """Stop the event stream: with no sidebar open, the cluster sends the server nothing."""
        self._on_change = None
        channel, self._subscribed = self._subscribed, None
        if channel is not None and not channel.closed:
            channel.send({"op": "unsubscribe"})

    def _on_events(self, channel, msg: dict) -> None:
        if self._on_change is not None and any(self._changes_listing(e) for e in msg["events"]):
            self._on_change()

    def _changes_listing(self, event: dict) -> bool:
        """Every event does, but ``worker-metrics`` (one a second per worker, busy or not)
        only when what the listing shows of it (memory to the MiB, keys, bytes) moved."""
        if event.get("event") != "worker-metrics":
            return True
        shown = (rounded_memory(event["memory"]), event["nkeys"], event["nbytes"])
        if self._shown_metrics.get(event["address"]) == shown:
            return False
        self._shown_metrics[event["address"]] = shown
        return True

    def _on_channel_closed(self, channel) -> None:
        # The cluster closed or its process died: the listing changes (or shows unreachable).
        if channel is self._subscribed:
            self._subscribed = None
        if self._on_change is not None:
            self._on_change()

    async def request(self, msg: dict):
        try:
            channel = await asyncio.wait_for(self._connected(), CONNECT_TIMEOUT)
            return await asyncio.wait_for(channel.request(msg), REQUEST_TIMEOUT)
        except (OSError, asyncio.TimeoutError, ScatterMagicsError) as exc:
            self.close()
            # Only the address, never the entry: its repr would carry the secret.
            raise ClusterUnreachableError(f"the scheduler at {self.entry.scheduler_address} did "
                                     f"not answer: {type(exc).__name__}") from exc

    async def overview(self) -> dict:
        """The cluster's ``summary.summarize`` (workers, keys, totals) and its published
        ``datasets``, as the scheduler counts them, with each worker's process memory to
        the MiB."""
        return shown(await self.request({"op": "overview"}))

    async def history(self, step: int = 1) -> dict:
        """The scheduler's memory history (``history.MemoryHistory.as_dict``)."""
        return await self.request({"op": "memory-history", "step": step})

    async def tasks(self, since: int) -> dict:
        """Task records after cursor ``since``, of the last minute (``task_stream``)."""
        return await self.request({"op": "task-stream", "since": since})

    async def keys(self, offset: int, limit: int, status: str | None, name: str | None = None,
                   sort: str | None = None, descending: bool = False) -> dict:
        return await self.request({"op": "key-list", "offset": offset, "limit": limit,
                                   "status": status, "name": name, "sort": sort,
                                   "descending": descending})

    async def stop(self) -> None:
        reply = await self.request({"op": "close-cluster", "reason": STOPPED_BY_SIDEBAR})
        if not reply.get("closing"):
            raise ClusterUnreachableError("this cluster's scheduler has no owner to close it")

    def close(self) -> None:
        self._on_change = None
        self._subscribed = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def shown(summary: dict) -> dict:
    """A summary as the REST API shows it: process memory to the MiB (totals too)."""
    for w in summary["workers"]:
        w["memory"] = rounded_memory(w.get("memory") or 0)
    summary["totals"]["memory"] = sum(w["memory"] for w in summary["workers"])
    return summary


def _not_needed(channel, msg: dict) -> None:
    """A report the probe has no use for (an unknown op would log an error)."""


def rounded_memory(nbytes: int) -> int:
    """A worker's process memory to the MiB: its few-KiB jitter between heartbeats would
    change every answer (and its ETag) twice a second with nothing to show."""
    return round(nbytes / MIB) * MIB

