"""What clients ask to show a cluster: ``scheduler_info()``, ``nthreads()``, the views'
summary, a page of keys, memory over time, the task stream, the published datasets.

Held by :class:`~scatter_magics.engine.scheduler.server.Scheduler` as ``views``; every
answer is read from the state (``reports.py``, ``history.py``, ``task_stream.py``,
``datasets.py``) and changes nothing.

>>> scheduler.views.overview(client_id, {})["datasets"]   # doctest: +SKIP
[{'name': 'df', 'nbytes': 8000000, 'keys': [...], 'workers': ['worker-0']}]
"""

from __future__ import annotations

import time


class ViewOps:
    """Of its ``scheduler`` it uses the state, ``address`` and ``info_extras``."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.state = scheduler.state

    def ops(self) -> dict:
        return {"scheduler-info": self.info, "nthreads": self.nthreads,
                "overview": self.overview,
                "key-list": self.key_list, "memory-history": self.memory_history,
                "task-stream": self.task_stream, "datasets": self.datasets}

    def info(self, client_id, msg) -> dict:
        info = self.state.info()
        info["address"] = self.scheduler.address
        info["datasets"] = self.state.datasets.summaries()
        for name, describe in self.scheduler.info_extras.items():
            info[name] = describe()
        return info

    def nthreads(self, client_id, msg) -> dict:
        """Threads per worker of ``msg["workers"]`` (all by default); one not there is
        left out, as Dask's ``ncores`` does."""
        addresses = self.state.worker_book.resolve_workers(msg.get("workers"), strict=False)
        return {a: self.state.workers[a].nthreads for a in addresses}

    def overview(self, client_id, msg) -> dict:
        overview = self.state.overview()
        overview["address"] = self.scheduler.address
        overview["datasets"] = self.state.datasets.summaries()
        return overview

    def key_list(self, client_id, msg) -> dict:
        return self.state.key_list(msg.get("offset", 0), msg.get("limit", 100),
                                   msg.get("status") or None, msg.get("name") or None,
                                   msg.get("sort") or None, bool(msg.get("descending")))

    def memory_history(self, client_id, msg) -> dict:
        return self.state.history.as_dict(step=max(1, int(msg.get("step") or 1)))

    def task_stream(self, client_id, msg) -> dict:
        return self.state.task_stream.since(int(msg.get("since") or 0), time.time())

    def datasets(self, client_id, msg) -> list:
        return self.state.datasets.summaries()
