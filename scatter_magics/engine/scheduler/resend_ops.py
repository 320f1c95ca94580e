"""The I/O of sending lost data again (the state's part is ``resends.py``).

Held by :class:`~scatter_magics.engine.scheduler.server.Scheduler` as ``resend_ops``:

- :meth:`ResendOps.receive`: a client's ``resend-data`` (the values it kept, or read
  again from their source) is put on the workers the state names (where the key was
  allowed; waiting up to ``RESEND_WAIT`` for one to come back, a replacement say) and
  recorded: the key is ``memory`` again and what waited for it goes on;
- :meth:`ResendOps.until_resent`: a gather that meets a ``resending`` key waits for it
  (bounded by the caller's timeout) instead of failing, as the futures still say
  ``finished``.

>>> await scheduler.resend_ops.until_resent(["x"])   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging

from ...errors import FutureLostError, NoWorkersError
from .placing import place

logger = logging.getLogger(__name__)

RESEND_WAIT = 30.0  # s data sent again waits for an allowed worker (a replacement starts in ~1 s)


class ResendOps:
    """Of its ``scheduler`` it uses the state, ``apply``, ``request_worker``,
    ``wait_for_workers``, ``discard_unrecorded`` and the ``on_keys_recorded`` callbacks."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.state = scheduler.state
        self._waiters: list[tuple[list, asyncio.Future]] = []

    def ops(self) -> dict:
        return {"resend-data": self.receive, "resend-refused": self.refused}

    def refused(self, client_id, msg: dict) -> None:
        """A client has no copy of these keys (``{key: why}``): lost, unless another has."""
        self.scheduler.apply(self.state.resends.refused(client_id, msg["errors"]))

    async def receive(self, client_id, msg: dict) -> None:
        """Put a client's ``resend-data`` where its keys belong, and record it."""
        resending = self.state.resends.targets(msg["data"])  # only keys still on their way
        data = {k: v for k, v in msg["data"].items() if k in resending}
        if not data:
            return
        nbytes, types = msg["nbytes"], msg["types"]

        async def put(address, keys):
            return await self.scheduler.request_worker(address, {
                "op": "put-data", "data": {k: data[k] for k in keys}})

        async def record(placement):
            still = {k: a for k, a in placement.items()
                     if k in self.state.keys and self.state.keys[k].state == "resending"}
            self.scheduler.discard_unrecorded(_by_worker(
                {k: a for k, a in placement.items() if k not in still}))
            shared = [k for k in msg.get("shared", ()) if k in still]
            self.scheduler.apply(self.state.add_data(
                None, still, nbytes, types, shared,
                copies={k: data[k] for k in shared} if shared else None))
            if shared:
                for callback in self.scheduler.on_keys_recorded:
                    callback(shared)
            return []

        async def take_back(by_worker):
            self.scheduler.discard_unrecorded(by_worker)
        try:
            await place(list(data), self._targets, put, record, take_back)
        except Exception as exc:  # no worker came back, or every one died on the way
            logger.warning("could not place %d key(s) sent again: %r", len(data), exc)
            error = FutureLostError(f"its data was sent again but could not be placed: {exc}")
            self.scheduler.apply(self.state.resends.refused(
                client_id, dict.fromkeys(data, error)))

    async def _targets(self, keys: list, exclude) -> list[list[str]]:
        """Each key's workers; waits (up to ``RESEND_WAIT``) while a key has none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESEND_WAIT
        while True:
            targets = self.state.resends.targets(keys)
            chosen = [[a for a in targets.get(k, ()) if a not in exclude] for k in keys]
            if all(chosen) or loop.time() > deadline:
                break
            try:  # a worker joins (a replacement) or wakes up
                await self.scheduler.wait_for_workers(len(self.state.workers) + 1,
                                                      min(1.0, deadline - loop.time()))
            except TimeoutError:
                pass
        if not all(chosen):
            missing = [k for k, c in zip(keys, chosen) if not c]
            raise NoWorkersError(f"no allowed worker came back within {RESEND_WAIT:g} s to "
                                 f"hold {missing[:3]}")
        return chosen

    # ------------------------------------------------------------ waiting ---
    async def until_resent(self, keys) -> None:
        """Return once none of ``keys`` is ``resending`` (held again, or lost)."""
        if not self.state.resends.active or not self._resending(keys):
            return
        done = asyncio.get_running_loop().create_future()
        self._waiters.append((list(keys), done))
        await done

    def changed(self) -> None:
        """After a state change: wake the gathers whose keys are no longer on their way."""
        if self._waiters:
            waiting = []
            for keys, done in self._waiters:
                if done.done():
                    continue
                if self._resending(keys):
                    waiting.append((keys, done))
                else:
                    done.set_result(None)
            self._waiters = waiting

    def _resending(self, keys) -> bool:
        found = self.state.keys
        return any((ks := found.get(k)) is not None and ks.state == "resending" for k in keys)


def _by_worker(placement: dict) -> dict:
    by_worker: dict = {}
    for key, addresses in placement.items():
        for address in addresses:
            by_worker.setdefault(address, []).append(key)
    return by_worker
