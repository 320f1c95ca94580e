"""The embedded engine seen through the backend interface (``scatter_magics/backend.py``).

Our :class:`Client` already speaks the interface's language (its errors, its events),
so this adapter only forwards; it exists so the notebook layer names no client class.

The client's module is imported when first needed, not with this one: the first
``%scatter`` of a notebook starts a cluster through :meth:`EmbeddedBackend.start`, which
starts the fork server first, so that the workers' template imports while this process
imports the client and the scheduler (``engine/cluster/template_spawn.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .cluster import template_spawn

if TYPE_CHECKING:
    from .client.client import Client


class EmbeddedBackend:
    kind = "embedded"
    # A small scatter or gather takes ~0.1 ms: one known to be small gets no progress
    # bar at all (a bar would add a third to it; see notebook/magics.py).
    quick_small_calls = True

    def __init__(self, client: Client):
        self.client = client

    @property
    def running(self) -> bool:
        return self.client.status == "running"

    @property
    def closed_reason(self) -> str | None:
        return self.client.ending.reason

    def when_lost(self, callback: Callable[[str], None]) -> None:
        self.client.ending.on_end(callback)

    @property
    def default_timeout(self) -> float | None:
        return self.client.timeout

    def scatter(self, items: dict, *, workers, broadcast, direct, hash, timeout,
                progress=None) -> dict:
        if timeout is None:  # the client's own default (a keyword left out)
            return self.client.scatter(items, workers=workers, broadcast=broadcast,
                                       direct=direct, hash=hash, progress=progress)
        return self.client.scatter(items, workers=workers, broadcast=broadcast, direct=direct,
                                   hash=hash, timeout=timeout, progress=progress)

    def gather(self, futures, *, errors: str, timeout: float | None, progress=None):
        return self.client.gather(futures, errors=errors, timeout=timeout, progress=progress)

    def resend_from(self, sources: dict, *, workers, broadcast: bool) -> None:
        # The scheduler remembers each key's placement; the client keeps the sources.
        self.client.resend_from(sources)

    def publish(self, name, data) -> None:
        self.client.publish_dataset(data, name=name, override=True)

    def get_dataset(self, name):
        return self.client.get_dataset(name)

    def scheduler_info(self) -> dict:
        return self.client.scheduler_info()

    def has_what(self) -> dict:
        return self.client.has_what()

    def overview(self) -> dict:
        return self.client.view("overview")

    def memory_history(self) -> dict:
        return self.client.view("memory-history")

    def task_stream(self, since: int = 0) -> dict:
        return self.client.view("task-stream", since=since)

    def subscribe_events(self, callback: Callable[[list], None]):
        return self.client.subscribe_events(callback)

    def registry_fields(self) -> dict:
        """What the discovery registry needs to reach this client's scheduler."""
        return {"secret": self.client.secret}

    def n_workers(self) -> int:
        """Live workers: a process found dead counts even before the scheduler notices."""
        workers = self.client.scheduler_info()["workers"].values()
        cluster = self.client.cluster
        if cluster is None:
            return len(workers)
        exited = {p.pid for p in list(cluster.processes.values()) if p.poll() is not None}
        return sum(1 for w in workers if w["pid"] not in exited)

    def close(self) -> None:
        self.client.close()

    @classmethod
    def start(cls, *, n_workers, threads_per_worker, memory_limit) -> "EmbeddedBackend":
        template_spawn.prestart()  # first: its imports overlap the client's, just below
        from .client.client import Client

        return cls(Client(n_workers=n_workers, threads_per_worker=threads_per_worker,
                          memory_limit=memory_limit))

    @classmethod
    def connect(cls, address: str, *, secret: str | None, timeout: float) -> "EmbeddedBackend":
        """A client of the embedded-engine scheduler at ``address`` (it needs the secret)."""
        from .client.client import Client

        return cls(Client(address, secret=secret, timeout=timeout))
