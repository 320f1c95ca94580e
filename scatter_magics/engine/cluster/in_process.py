"""Workers as threads of this process: ``LocalCluster(processes=False)``, Dask's too.

Each worker runs on the cluster's event loop, beside the scheduler, with its own task
threads; they reach each other and the scheduler at ``inproc://`` addresses, and values
travel as the objects themselves (nothing pickled: ``wire/inproc.py``). For debugging
(a breakpoint in a task stops this process) and for small data; a task holding the GIL
holds up the notebook too, and a worker that crashes takes the process with it.

>>> workers = InProcessWorkers(scheduler, "tcp://127.0.0.1:40123", secret, 2, 0, {}, "/tmp/x")  # doctest: +SKIP
>>> loop.sync(workers.scale_to(1))                                                 # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import os

from ..worker.process import Worker


class InProcessWorkers:
    """The worker threads of one cluster, named ``worker-0``, ``worker-1``, ... (never reused)."""

    def __init__(self, scheduler_address: str, client_address: str, secret: str,
                 threads_per_worker: int, memory_limit: int, resources: dict,
                 local_directory: str):
        self.scheduler_address, self.client_address = scheduler_address, client_address
        self.secret = secret
        self.threads_per_worker, self.memory_limit = threads_per_worker, memory_limit
        self.resources, self.local_directory = resources, local_directory
        self.workers: dict[str, Worker] = {}  # live ones, by name
        self._started = 0

    def alive(self) -> int:
        return len(self.workers)

    async def scale_to(self, n: int, retire=None) -> None:
        """Start workers until ``n`` run, or stop the newest beyond ``n``, after
        ``retire(addresses)`` (a coroutine) moved their data elsewhere."""
        if n > len(self.workers):
            await asyncio.gather(*(self._start_one() for _ in range(n - len(self.workers))))
            return
        leaving = list(self.workers)[n:]
        if leaving and retire is not None:
            await retire([self.workers[name].address for name in leaving])
        for name in leaving:
            await self.workers.pop(name).close()

    async def restart(self) -> None:
        """Every worker closed and as many fresh ones started (a task still running on
        an old one finishes in its thread, unreported)."""
        n = len(self.workers)
        await self.close()
        await self.scale_to(n)

    async def _start_one(self) -> None:
        name = f"worker-{self._started}"
        self._started += 1
        worker = Worker(self.scheduler_address, self.secret, name, self.threads_per_worker,
                        self.memory_limit, resources=self.resources,
                        local_directory=os.path.join(self.local_directory, name),
                        in_process=True, client_address=self.client_address)
        await worker.start()
        self.workers[name] = worker

    async def close(self) -> None:
        workers, self.workers = list(self.workers.values()), {}
        for worker in workers:
            await worker.close()
