"""Values a scatter sent without waiting, kept until their worker says it stored them.

A small unrestricted scatter through the scheduler returns before the workers'
acknowledgements (``ScatterOps._scatter_without_waiting``). Keeping each value until its
ack means a worker that dies or freezes on the way costs a resend, not the data: its
keys that nobody else holds go to another allowed worker *before* the scheduler's state
removes the worker, so no future ever turns ``lost`` in between.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from ...errors import (
    CommClosedError,
    NoWorkersError,
    UnknownWorkerError,
    WorkerUnresponsiveError,
)

logger = logging.getLogger(__name__)


class PendingAcks:
    """``worker → {key: (value, the scatter's workers=)}`` for one :class:`Scheduler`."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.by_worker: dict[str, dict[str, tuple]] = {}

    def expect(self, address: str, values: dict, reply: asyncio.Future, workers: dict) -> None:
        """Keep ``values`` until ``reply`` says ``address`` stored them; ``workers``: each
        key's ``workers=`` restriction, for a resend."""
        self.by_worker.setdefault(address, {}).update(
            (key, (value, workers[key])) for key, value in values.items())
        reply.add_done_callback(functools.partial(self._replied, address, list(values)))

    def worker_removed(self, address: str, why: str) -> None:
        """Resend what ``address`` never stored; call before the state forgets it."""
        self.resend(address, list(self.by_worker.get(address, ())), why)
        self.by_worker.pop(address, None)

    def _replied(self, address: str, keys: list, reply: asyncio.Future) -> None:
        error = CommClosedError("cancelled") if reply.cancelled() else reply.exception()
        if error is None:
            pending = self.by_worker.get(address, {})
            for key in keys:
                pending.pop(key, None)
        elif isinstance(error, WorkerUnresponsiveError) or not isinstance(error, CommClosedError):
            # Frozen or refused (a closed connection is worker_removed's to resend).
            logger.warning("worker %s did not store %d key(s): %r", address, len(keys), error)
            why = f"worker {address} did not store it: {error!r}"
            self.resend(address, keys, why)
            scheduler = self.scheduler
            scheduler.apply(scheduler.state.drop_replicas(address, keys, why))
            scheduler.discard_unrecorded({address: keys})  # if it wakes up and stores them

    def resend(self, address: str, keys: list, why: str) -> None:
        """Send values ``address`` never acknowledged to other workers.

        A key no other allowed worker can take stays with ``address`` and is lost with
        it, the loss naming ``why``.
        """
        state, pending = self.scheduler.state, self.by_worker.get(address, {})
        by_target: dict[str, dict] = {}
        restrictions: dict = {}
        for key in keys:
            value, workers = pending.pop(key, (None, None))
            ks = state.keys.get(key)
            if value is None or ks is None or ks.who_has - {address}:
                continue  # acknowledged, forgotten, or held elsewhere too
            try:
                [[target]] = state.choose_workers(1, workers, exclude=[address])
            except (NoWorkersError, UnknownWorkerError):
                logger.warning("scattered key %r: its worker %s %s, no other may hold it",
                               key, address, why)
                continue
            by_target.setdefault(target, {})[key] = value
            restrictions[key] = workers
        for target, values in by_target.items():
            self._send(target, values, restrictions)

    def _send(self, target: str, values: dict, restrictions: dict) -> None:
        scheduler, state = self.scheduler, self.scheduler.state
        reply = scheduler.worker_channels[target].send_request({"op": "put-data", "data": values})
        scheduler.apply(state.add_data(None, {k: [target] for k in values},
                                       {k: state.keys[k].nbytes for k in values},
                                       {k: state.keys[k].type for k in values}))
        self.expect(target, values, reply, restrictions)
