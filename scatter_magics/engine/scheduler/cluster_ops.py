"""The scheduler's cluster-wide ops: retries, functions run here, files for every worker,
versions, restarting, moving data between workers (rebalance, retiring workers), and
published datasets (they belong to the cluster, not to a client).

Composed into :class:`~scatter_magics.engine.scheduler.server.Scheduler` as ``cluster``;
each op is ``method(client_id, msg)`` in :meth:`ClusterOps.ops`.

>>> ops = ClusterOps(scheduler)                                         # doctest: +SKIP
>>> await ops.run_on_scheduler("client-1", {"call": serialize((len, ("abc",), {}))})  # doctest: +SKIP
3
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Callable

from ...errors import CommClosedError
from ...versions import get_versions
from ..wire.serialize import deserialize
from .balance import rebalance_moves, retire_moves

logger = logging.getLogger(__name__)

GONE_CHECK_INTERVAL = 0.01  # s between looks at whether closing workers have left


class ClusterOps:
    """Cluster-wide ops of one scheduler, and the uploaded files every worker gets."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.state = scheduler.state
        self.uploads: dict[str, dict] = {}  # filename -> the upload-file message, in order
        # The owner that can replace every worker (a LocalCluster): restart(timeout).
        self.on_restart_requested: list[Callable[[float], None]] = []

    def ops(self) -> dict[str, Callable]:
        return {"retry": self.retry, "processing": self.processing,
                "worker-addresses": self.worker_addresses,
                "fire-and-forget": self.fire_and_forget,
                "run-on-scheduler": self.run_on_scheduler, "versions": self.versions,
                "upload-file": self.upload_file, "restart": self.restart,
                "rebalance": self.rebalance, **self._dataset_ops()}

    def _dataset_ops(self) -> dict[str, Callable]:
        datasets, apply = self.state.datasets, self.scheduler.apply
        return {"publish-datasets": lambda c, m: apply(datasets.publish(
                    m["datasets"], m.get("override", False))),
                "unpublish-datasets": lambda c, m: apply(datasets.unpublish(m["names"])),
                "get-datasets": lambda c, m: datasets.get(c, m["names"]),
                "list-datasets": lambda c, m: datasets.names()}

    # ------------------------------------------------------------ tasks ---
    def retry(self, client_id, msg) -> None:
        self.scheduler.apply(self.state.retry(msg["keys"]))

    def processing(self, client_id, msg) -> dict:
        return self.state.processing(msg.get("workers"))

    def worker_addresses(self, client_id, msg) -> list:
        return self.state.resolve_workers(msg.get("workers"))

    def fire_and_forget(self, client_id, msg) -> None:
        self.scheduler.apply(self.state.fire_and_forget(msg["keys"]))

    # ------------------------------------------------------------ functions, files ---
    async def run_on_scheduler(self, client_id, msg):
        """``Client.run_on_scheduler``: the function, given ``dask_scheduler=`` if it asks."""
        function, args, kwargs = deserialize(msg["call"])
        if _takes(function, "dask_scheduler"):
            kwargs = {**kwargs, "dask_scheduler": self.scheduler}
        result = function(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    def versions(self, client_id, msg) -> dict:
        return get_versions(msg.get("packages") or ())

    async def upload_file(self, client_id, msg) -> None:
        """Send a file to every worker now (their errors are the caller's) and keep it
        for the workers that join later (:meth:`for_new_worker`)."""
        upload = {"op": "upload-file", "filename": msg["filename"], "data": msg["data"],
                  "load": msg.get("load", True)}
        self.uploads.pop(upload["filename"], None)
        self.uploads[upload["filename"]] = upload  # the newest version last
        addresses = list(self.scheduler.worker_channels)
        results = await asyncio.gather(
            *(self.scheduler.request_worker(a, dict(upload)) for a in addresses),
            return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, CommClosedError):
                del self.uploads[upload["filename"]]  # joining workers would fail on it too
                raise result

    def for_new_worker(self) -> list[dict]:
        """The upload-file messages a worker that just joined gets before anything else."""
        return [dict(upload) for upload in self.uploads.values()]

    async def restart(self, client_id, msg) -> None:
        """Every key forgotten (each client's futures cancelled), then every worker
        replaced by a fresh one, by the cluster that owns this scheduler."""
        if not self.on_restart_requested:
            raise RuntimeError("this scheduler's workers cannot be restarted from here: "
                               "it belongs to no LocalCluster of its process")
        self.scheduler.apply(self.state.cancel_everything())
        timeout, wait = msg.get("timeout"), msg.get("wait_for_workers", True)
        for restart in self.on_restart_requested:  # blocking: spawning, killing, waiting
            await asyncio.to_thread(restart, timeout, wait)

    # ------------------------------------------------------------ moving data ---
    async def rebalance(self, client_id, msg) -> None:
        """Even out the bytes the allowed workers hold (see ``balance.py``)."""
        allowed = self.state.worker_book.responsive(self.state.resolve_workers(msg.get("workers")))
        keys = msg.get("keys")
        moves = rebalance_moves(self.state.workers, self.state.keys, allowed,
                                None if keys is None else set(keys))
        await self.move({key: (sender, recipient) for key, sender, recipient in moves},
                        keep_source=False)

    async def retire(self, addresses: list) -> None:
        """Copy what only ``addresses`` hold to the other workers, before they leave."""
        staying = [a for a in self.state.worker_book.responsive(self.state.workers)
                   if a not in addresses]
        moves = retire_moves(self.state.workers, self.state.keys, addresses, staying)
        await self.move({key: (None, recipient) for key, recipient in moves.items()},
                        keep_source=True)

    async def close_workers(self, addresses: list) -> None:
        """Ask ``addresses`` to close, and wait until they are gone."""
        for address in addresses:
            channel = self.scheduler.worker_channels.get(address)
            if channel is not None:
                try:
                    channel.send({"op": "close"})
                except CommClosedError:
                    pass
        await self.wait_gone(addresses)

    async def wait_gone(self, addresses: list) -> None:
        """Until none of ``addresses`` is a worker of this scheduler (their connections
        closed); the caller bounds the wait."""
        while any(a in self.state.workers for a in addresses):
            await asyncio.sleep(GONE_CHECK_INTERVAL)

    async def move(self, moves: dict, keep_source: bool) -> None:
        """``{key: (sender, recipient)}``: each recipient fetches its keys from their
        holders (the sender, or any holder if None); unless ``keep_source``, the sender's
        copy is deleted once the recipient has one."""
        by_recipient: dict[str, dict] = {}
        for key, (sender, recipient) in moves.items():
            ks = self.state.keys.get(key)
            if ks is not None and ks.state == "memory":
                holders = [sender] if sender else sorted(ks.who_has)
                by_recipient.setdefault(recipient, {})[key] = holders
        results = await asyncio.gather(
            *(self.scheduler.request_worker(r, {"op": "fetch", "who_has": w})
              for r, w in by_recipient.items()), return_exceptions=True)
        for recipient, fetched in zip(by_recipient, results):
            if isinstance(fetched, BaseException):
                logger.warning("moving data to %s failed: %r", recipient, fetched)
                continue
            out = self.state.add_replicas(recipient, fetched)
            if not keep_source:
                for key in fetched:
                    out += self.state.drop_copy(key, moves[key][0])
            self.scheduler.apply(out)


def _takes(function, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
