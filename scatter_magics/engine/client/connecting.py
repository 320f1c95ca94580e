"""How a ``Client`` reaches its scheduler: a cluster it starts, one in this process, or
one elsewhere over TCP (with the cluster's secret).

>>> opened = open_connection(None, {"n_workers": 1}, None, 30.0, print, print)  # doctest: +SKIP
>>> opened.owns_cluster, type(opened.link).__name__                              # doctest: +SKIP
(True, 'LocalSchedulerLink')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from ..cluster.local import LocalCluster, find_local_cluster
from ..wire.loop import LoopThread
from .link import LocalSchedulerLink, RemoteSchedulerLink
from .scatter_input import full_address

SECRET_ENV = "SCATTER_MAGICS_SECRET"


@dataclass
class Connection:
    """What a client is connected through, and which of it the client owns (ends)."""

    cluster: LocalCluster | None  # the scheduler's cluster, when it runs in this process
    loop: LoopThread
    secret: str
    link: object  # LocalSchedulerLink or RemoteSchedulerLink
    owns_cluster: bool = False
    owns_loop: bool = False

    def end_owned(self) -> None:
        """End what the client started: its cluster, or its loop thread."""
        if self.owns_cluster and self.cluster is not None:
            self.cluster.close()
        elif self.owns_loop:
            self.loop.stop()


def open_connection(address, cluster_options: dict, secret: str | None, timeout: float,
                    on_report: Callable[[dict], None],
                    on_lost: Callable[[str], None]) -> Connection:
    """Connect to ``address`` (None: a new ``LocalCluster(**cluster_options)``; a
    ``LocalCluster``; or a scheduler's address). Reports from the scheduler go to
    ``on_report``; ``on_lost(reason)`` when a remote scheduler's connection is lost. What
    was started here is ended again if connecting fails."""
    cluster = address if isinstance(address, LocalCluster) else None
    if address is None:
        cluster = LocalCluster(**cluster_options)
    elif isinstance(address, str):
        cluster = find_local_cluster(full_address(address))
    try:
        if cluster is not None:
            link = cluster.loop.sync(_open_local(cluster.scheduler, on_report))
            return Connection(cluster, cluster.loop, cluster.secret, link,
                              owns_cluster=address is None)
    except BaseException:
        if address is None:
            cluster.close()
        raise
    return _open_remote(address, secret, timeout, on_report, on_lost)


def _open_remote(address: str, secret: str | None, timeout: float,
                 on_report: Callable[[dict], None], on_lost: Callable[[str], None]) -> Connection:
    secret = secret or os.environ.get(SECRET_ENV)
    if not secret:
        raise ValueError(f"connecting to {address!r} needs the cluster's secret: "
                         f"pass secret= or set ${SECRET_ENV}")
    loop = LoopThread("scatter-magics-client")
    try:
        link = loop.sync(RemoteSchedulerLink.open(full_address(address), secret, on_report,
                                                  timeout, on_lost=on_lost))
    except BaseException:
        loop.stop()
        raise
    return Connection(None, loop, secret, link, owns_loop=True)


async def _open_local(scheduler, on_report: Callable[[dict], None]) -> LocalSchedulerLink:
    return LocalSchedulerLink(scheduler, on_report)
