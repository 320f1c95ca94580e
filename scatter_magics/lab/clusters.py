"""What the sidebar sees: every registered cluster, described for the browser.

:class:`ClusterDirectory` lives in the Jupyter server for its whole life. Each listing
re-reads the discovery registry (``discovery.live_entries``, which also prunes the files
of dead processes), keeps one :class:`~scatter_magics.lab.probe.EmbeddedProbe` per live
cluster, and asks all of them at once. It also starts and owns *server-owned* clusters,
which any notebook can join with ``%cluster connect <id>``.

Entries are grouped by scheduler address: one card per cluster. A kernel that joined a
cluster with ``%cluster connect`` registered a *connection* (``connected: true``); it
shows in the card's ``connected`` list (the notebooks using the cluster), and a cluster
only such connections know (a remote Dask scheduler, say) gets a card of its own for as
long as one kernel stays connected. The sidebar does not stop those: no process here
started them, and others may be using them.

What leaves this module for the browser is built field by field from
:meth:`discovery.Entry.public` and the probes' replies: the credentials are never in it.

>>> directory = ClusterDirectory()                             # doctest: +SKIP
>>> [c["name"] for c in await directory.list({})]              # doctest: +SKIP
['analysis.ipynb', 'Shared cluster 1']
"""

from __future__ import annotations

import asyncio
import logging
import time

from .. import discovery
from ..errors import ClusterUnreachableError, NotOwnedError, UnknownClusterError
from ..history import BRIEF_STEP, columns
from .probe import EmbeddedProbe

logger = logging.getLogger(__name__)

STOP_WAIT = 10.0  # s a DELETE waits for the owning process to take the cluster down
KEYS_PAGE_MAX = 1000  # keys per page of GET clusters/<id>


class ClusterDirectory:
    """The registry seen from the server: listing, details, stopping, starting."""

    def __init__(self):
        self.probes: dict = {}  # cluster id → probe (an open connection, once used)
        self.owned: dict = {}  # cluster id → LocalCluster this server started
        self._started = 0  # how many clusters this server started, for their names

    def _refresh(self) -> list[discovery.Entry]:
        """The live entries; probes of clusters that went away are closed."""
        entries = discovery.live_entries()
        live = {e.id for e in entries}
        for cluster_id in [i for i in self.probes if i not in live]:
            self.probes.pop(cluster_id).close()
        for cluster_id in [i for i, c in self.owned.items() if c.status == "closed"]:
            del self.owned[cluster_id]
        return entries

    def _probe(self, entry: discovery.Entry):
        probe = self.probes.get(entry.id)
        if probe is None:
            probe = self.probes[entry.id] = probe_for(entry)
        return probe

    def _group(self, cluster_id: str) -> tuple[discovery.Entry, list[discovery.Entry]]:
        for primary, connections in grouped(self._refresh()):
            if cluster_id == primary.id or any(c.id == cluster_id for c in connections):
                return primary, connections
        raise UnknownClusterError(f"no running cluster has the id {cluster_id!r}")

    def _entry(self, cluster_id: str) -> discovery.Entry:
        return self._group(cluster_id)[0]

    # ------------------------------------------------------------ reading ---
    async def list(self, notebook_paths: dict[str, str]) -> list[dict]:
        """Every live cluster; ``notebook_paths`` maps kernel ids to notebook paths. Each
        carries a brief ``history`` (a sample every ``BRIEF_STEP`` s), for the cards."""
        groups = grouped(self._refresh())
        return list(await asyncio.gather(*(self._describe(primary, notebook_paths, BRIEF_STEP,
                                                          connections)
                                           for primary, connections in groups)))

    async def get(self, cluster_id: str, notebook_paths: dict[str, str], *, offset: int = 0,
                  limit: int = 100, status: str | None = None, name: str | None = None,
                  sort: str | None = None, descending: bool = False) -> dict:
        """One cluster as :meth:`list` shows it, plus one page of its keys (filtered by
        ``status`` and ``name``, sorted by ``sort``: ``key_pages.page_of``)."""
        entry, connections = self._group(cluster_id)
        described = await self._describe(entry, notebook_paths, 1, connections)
        limit = max(0, min(limit, KEYS_PAGE_MAX))
        try:
            page = await self._probe(entry).keys(max(offset, 0), limit, status, name, sort,
                                                 descending)
        except (ClusterUnreachableError, KeyError):
            page = {"total": 0, "offset": offset, "keys": []}
        described["keys"] = {**described["keys"], "total": page["total"], "offset": page["offset"],
                             "limit": limit, "status": status, "name": name, "sort": sort,
                             "order": "desc" if descending else "asc", "items": page["keys"]}
        return described

    async def tasks(self, cluster_id: str, since: int) -> dict:
        """``{"index", "now", "tasks"}``: what its workers ran, after cursor ``since``."""
        entry = self._entry(cluster_id)
        try:
            return await self._probe(entry).tasks(max(since, 0))
        except KeyError:
            raise UnknownClusterError(f"this server cannot read a {entry.backend!r} "
                                      f"cluster") from None

    async def _describe(self, entry: discovery.Entry, notebook_paths: dict[str, str],
                        history_step: int, connections: list[discovery.Entry] = ()) -> dict:
        public = entry.public()
        remote = entry.connected  # only connections know it: no owner on this machine
        described = {
            "id": entry.id,
            "name": entry.name if remote else notebook_paths.get(entry.kernel_id or "",
                                                                 entry.name),
            "kernel_id": None if remote else entry.kernel_id,
            "connected": [{"id": c.id, "kernel_id": c.kernel_id,
                           "name": notebook_paths.get(c.kernel_id or "", c.name)}
                          for c in connections],
            "remote": remote,
            "dashboard_link": entry.dashboard_link or next(
                (c.dashboard_link for c in connections if c.dashboard_link), None),
            "backend": entry.backend,
            "scheduler_address": entry.scheduler_address,
            "pid": public["pid"],
            "started": public["started"],
            "server_owned": entry.id in self.owned,
            "status": "running",
            "workers": [],
            "keys": {"count": 0, "by_status": {}, "nbytes": 0, "replicas": 0,
                     "replica_nbytes": 0, "names": 0},
            "totals": {"n_workers": 0, "nthreads": 0, "memory": 0, "memory_limit": 0,
                       "nbytes": 0},
            "history": columns([], {}),
            "datasets": [],  # [{name, nbytes, workers}]: published, they outlive kernels
        }
        try:
            probe = self._probe(entry)
            described.update(await probe.overview())
            described["history"] = await probe.history(history_step)
        except KeyError:
            described.update(status="unknown", error=f"this server cannot read a "
                                                     f"{entry.backend!r} cluster")
        except ClusterUnreachableError as exc:
            described.update(status="unreachable", error=str(exc))
        except Exception as exc:  # one cluster that cannot be read must not hide the others
            logger.warning("scatter_magics: cannot read cluster %s", entry.id, exc_info=True)
            described.update(status="unknown", error=f"cannot read this cluster: {exc!r}")
        return described

    # ------------------------------------------------------------ acting ---
    async def stop(self, cluster_id: str) -> bool:
        """Ask the cluster's owner to stop it; True once its registry file is gone."""
        entry = self._entry(cluster_id)
        if entry.connected:
            raise NotOwnedError(
                "no process on this machine started this cluster, and others may use it: "
                "the sidebar does not stop it (%cluster stop in a notebook disconnects it)")
        try:
            probe = self._probe(entry)
        except KeyError:
            raise UnknownClusterError(f"this server cannot stop a {entry.backend!r} "
                                      f"cluster") from None
        await probe.stop()
        if not probe.owner_unregisters:  # the owner is alive, its cluster gone: we tidy up
            entry.path.unlink(missing_ok=True)
        deadline = time.monotonic() + STOP_WAIT
        while entry.path.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._refresh()
        return not entry.path.exists()

    async def start(self, *, n_workers: int | None, threads_per_worker: int,
                    memory_limit, name: str | None) -> str:
        """Start a cluster owned by this server; returns its registry id."""
        from ..engine.cluster.local import LocalCluster

        self._started += 1
        name = name or f"Shared cluster {self._started}"
        # Starting blocks for a moment (spawning workers): not on the server's loop.
        cluster = await asyncio.to_thread(LocalCluster, n_workers=n_workers,
                                          threads_per_worker=threads_per_worker,
                                          memory_limit=memory_limit, name=name)
        if cluster.registry_entry is None:
            await asyncio.to_thread(cluster.close)
            raise OSError("the cluster started but could not be registered; see the server log")
        self.owned[cluster.registry_entry.id] = cluster
        return cluster.registry_entry.id

    def close(self) -> None:
        """Drop the connections and stop the clusters this server started."""
        for probe in self.probes.values():
            probe.close()
        self.probes.clear()
        for cluster in self.owned.values():
            cluster.close()
        self.owned.clear()


def grouped(entries: list[discovery.Entry]) -> list[tuple[discovery.Entry, list]]:
    """``[(primary, connections)]`` per scheduler address, oldest first: the primary is
    the cluster's owner, or (a cluster only connections know) its oldest connection."""
    by_address: dict[str, list[discovery.Entry]] = {}
    for entry in entries:
        by_address.setdefault(entry.scheduler_address, []).append(entry)
    groups = []
    for group in by_address.values():
        owners = [e for e in group if not e.connected]
        primary = owners[0] if owners else group[0]
        groups.append((primary, [e for e in group if e.connected]))
    return groups


def _dask_probe(entry: discovery.Entry):
    from .dask_probe import (
        DaskProbe,  # imports distributed only once a Dask cluster exists
    )

    return DaskProbe(entry)


PROBES = {"embedded": EmbeddedProbe, "dask": _dask_probe}  # backend -> how to talk to it


def probe_for(entry: discovery.Entry):
    """A probe for ``entry``'s backend; ``KeyError`` for a backend the server cannot read."""
    return PROBES[entry.backend](entry)
