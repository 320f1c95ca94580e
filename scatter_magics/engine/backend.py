"""The embedded engine seen through the backend interface (``scatter_magics/backend.py``).

Our :class:`Client` already speaks the interface's language (its errors, its events),
so this adapter only forwards; it exists so the notebook layer names no client class.
"""

from __future__ import annotations

from typing import Callable

from .client.client import NO_DEFAULT, Client


class EmbeddedBackend:
    kind = "embedded"

    def __init__(self, client: Client):
        self.client = client

    @property
    def running(self) -> bool:
        return self.client.status == "running"

    @property
    def default_timeout(self) -> float | None:
        return self.client.timeout

    def scatter(self, items: dict, *, workers, broadcast, direct, hash, timeout,
                progress=None) -> dict:
        return self.client.scatter(items, workers=workers, broadcast=broadcast, direct=direct,
                                   hash=hash, timeout=NO_DEFAULT if timeout is None else timeout,
                                   progress=progress)

    def gather(self, futures, *, errors: str, timeout: float | None, progress=None):
        return self.client.gather(futures, errors=errors, timeout=timeout, progress=progress)

    def scheduler_info(self) -> dict:
        return self.client.scheduler_info()

    def has_what(self) -> dict:
        return self.client.has_what()

    def overview(self) -> dict:
        return self.client.overview()

    def memory_history(self) -> dict:
        return self.client.memory_history()

    def task_stream(self, since: int = 0) -> dict:
        return self.client.task_stream(since)

    def subscribe_events(self, callback: Callable[[list], None]):
        return self.client.subscribe_events(callback)

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
        return cls(Client(n_workers=n_workers, threads_per_worker=threads_per_worker,
                          memory_limit=memory_limit))

    @classmethod
    def connect(cls, address: str, *, secret: str | None, timeout: float) -> "EmbeddedBackend":
        """A client of the embedded-engine scheduler at ``address`` (it needs the secret)."""
        return cls(Client(address, secret=secret, timeout=timeout))
