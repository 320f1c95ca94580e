"""Pushing the cluster listing to open sidebars when, and only when, it changes.

:class:`ListingWatch` runs on the server's loop while at least one listener (a sidebar's
websocket, ``handlers.ClustersSocketHandler``) is connected. It learns of a change without
asking the clusters again:

- an embedded cluster's probe subscribes to its scheduler's event stream
  (``EmbeddedProbe.watch``): a key, a worker coming or going, a worker's shown memory
  moving, the connection closing;
- the registry directory's mtime (one ``stat`` every ``REGISTRY_CHECK`` s) moves when a
  cluster registers or unregisters;
- a Dask cluster has no such stream here: it is asked again every ``DASK_POLL`` s, as the
  sidebar's own poll did, and only while a Dask cluster is listed;
- every ``RECHECK`` s the listing is rebuilt anyway (a process killed without closing its
  connection, a notebook renamed).

A change is pushed ``DEBOUNCE`` s after it is seen, so a burst (a scatter of many keys)
is one message; an unchanged listing is not pushed at all. Measured in
benchmarks/RESULTS-lab.md: change → sidebar and the server's idle CPU.

>>> watch = ListingWatch(directory, notebook_paths)           # doctest: +SKIP
>>> watch.join(websocket.write_message)  # the listing now, then changes  # doctest: +SKIP
>>> watch.leave(websocket.write_message)                       # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Awaitable, Callable

from .. import discovery
from ..errors import ClusterUnreachableError
from .clusters import ClusterDirectory

logger = logging.getLogger(__name__)

DEBOUNCE = 0.1  # s from the first event of a burst to the push
REGISTRY_CHECK = 0.25  # s between two stats of the registry directory
DASK_POLL = 1.0  # s between two listings while a Dask cluster is listed
RECHECK = 10.0  # s between two listings when nothing said anything changed

Listener = Callable[[str], None]  # takes the listing as JSON text


class ListingWatch:
    """The listing, pushed to every listener on change; runs only while someone listens."""

    def __init__(self, directory: ClusterDirectory,
                 notebook_paths: Callable[[], Awaitable[dict[str, str]]]):
        self.directory = directory
        self.notebook_paths = notebook_paths
        self.listeners: set[Listener] = set()
        self._new: set[Listener] = set()  # joined, not yet sent the listing
        self._dirty = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._last = None  # JSON text of the last listing pushed

    def join(self, listener: Listener) -> None:
        """``listener`` gets the listing now, then each changed one."""
        self.listeners.add(listener)
        self._new.add(listener)
        self.mark_changed()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        self._new.discard(listener)
        if not self.listeners:
            self.mark_changed()  # wakes the loop, which sees nobody listens and ends

    def mark_changed(self) -> None:
        self._dirty.set()

    async def close(self) -> None:
        self.listeners.clear()
        self._new.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._stop_watching()

    # ------------------------------------------------------------ the loop ---
    async def _run(self) -> None:
        registry = discovery.registry_dir()
        registry_mtime = _mtime(registry)
        since_listing = 0.0
        try:
            while self.listeners:
                if not self._dirty.is_set():
                    try:
                        await asyncio.wait_for(self._dirty.wait(), REGISTRY_CHECK)
                    except asyncio.TimeoutError:
                        since_listing += REGISTRY_CHECK
                    mtime = _mtime(registry)
                    if mtime != registry_mtime or since_listing >= self._period():
                        registry_mtime = mtime
                        self._dirty.set()
                    if not self._dirty.is_set():
                        continue
                await asyncio.sleep(DEBOUNCE)  # the rest of a burst joins this push
                self._dirty.clear()
                since_listing = 0.0
                if self.listeners:
                    await self._push_or_say_why()
        except Exception:  # never let a bug here take the websocket handlers down silently
            logger.exception("scatter_magics: the cluster listing watch failed")
        finally:
            self._stop_watching()

    def _period(self) -> float:
        """How long a listing may stand without a push from the clusters."""
        silent = any(not p.reports_changes for p in self.directory.probes.values())
        return DASK_POLL if silent else RECHECK

    async def _push_or_say_why(self) -> None:
        """:meth:`_push`; a listing that fails is logged and the watch goes on: the
        sidebars listen to this socket only, and would stand still until reloaded."""
        try:
            await self._push()
        except Exception:
            logger.exception("scatter_magics: listing the clusters failed; trying again "
                             "at the next change")

    async def _push(self) -> None:
        listing = await self.directory.list(await self.notebook_paths())
        text = json.dumps(listing)
        targets = set(self.listeners) if text != self._last else set(self._new)
        self._last = text
        self._new.clear()
        for listener in targets:
            listener(text)
        await self._watch_all()

    async def _watch_all(self) -> None:
        """Subscribe to every listed cluster not yet watched (idempotent per probe)."""
        probes = list(self.directory.probes.values())
        results = await asyncio.gather(*(p.watch(self.mark_changed) for p in probes),
                                       return_exceptions=True)
        if any(result is True for result in results):
            # Subscribed after that listing was made: a change between the two is in no
            # event, so list once more (measured: a scatter right after a sidebar opened
            # otherwise waited for the next worker-metrics event, ~1.4 s).
            self.mark_changed()
        for result in results:
            # Unreachable now: the listing says so, and the next recheck tries again.
            if isinstance(result, BaseException) and not isinstance(
                    result, (ClusterUnreachableError, OSError, asyncio.TimeoutError,
                             asyncio.CancelledError)):
                logger.warning("scatter_magics: cannot watch a cluster: %r", result)

    def _stop_watching(self) -> None:
        for probe in self.directory.probes.values():
            probe.unwatch()


def _mtime(path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
