"""The scheduler's scatter ops: choosing workers, carrying data to them, recording it.

Held by :class:`~scatter_magics.engine.scheduler.server.Scheduler` as ``scatters``, whose
``client_ops()`` route four ops here. A client's ``scatter``
either goes through here whole (the scheduler chooses the workers, sends the data and
records it, see :func:`~scatter_magics.engine.scheduler.placing.place`), or, with ``direct=True``,
in three ops: ``choose-workers``, then ``update-data`` (recorded) or ``unrecorded``
(taken back). A plain scatter of data the caller no longer touches does not wait for
the workers' acknowledgement (``pending_acks.py`` resends it if a worker dies first).
"""

from __future__ import annotations

from ...errors import CommClosedError, NoWorkersError
from ..shm.pool import ShmRef
from .direct_holds import DirectHolds
from .placing import place


class ScatterOps:
    """Where scattered data goes and how it gets there (client ops of the scheduler).

    Of its ``scheduler`` it uses the state, ``apply``, ``wait_for_workers``,
    ``request_worker``, ``worker_channels``, ``discard_unrecorded``, ``pending_acks``
    and the ``on_keys_recorded`` callbacks.
    """

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.state = scheduler.state
        self.direct_holds = DirectHolds(scheduler.state)  # room for direct scatters in flight

    def client_left(self, client_id: str) -> None:
        """Nothing ``client_id`` chose workers for is coming any more."""
        self.direct_holds.release_client(client_id)

    async def _ensure_workers(self, msg: dict) -> None:
        if not self.state.workers:
            if msg.get("timeout") is None:
                raise NoWorkersError("no workers are connected to the scheduler")
            await self.scheduler.wait_for_workers(1, msg["timeout"])

    async def _choose_workers(self, client_id, msg) -> list[list[str]]:
        await self._ensure_workers(msg)
        exclude = msg.get("exclude", ())
        if msg.get("nbytes") is not None:  # sizes known: only workers with room
            placement = self.state.place(msg["nbytes"], msg.get("workers"), msg.get("broadcast"),
                                         exclude=exclude)
            return list(placement.values())
        return self.state.choose_workers(msg["n"], msg.get("workers"), msg.get("broadcast"),
                                         exclude=exclude)

    async def choose_for_direct(self, client_id, msg) -> list[list[str]]:
        """Workers for a direct scatter; their room stays held until the client records
        the keys (``update-data``) or takes them back (``unrecorded``)."""
        targets = await self._choose_workers(client_id, msg)
        if msg.get("nbytes") is not None:
            self.direct_holds.hold(client_id, dict(zip(msg["nbytes"], targets)), msg["nbytes"])
        return targets

    async def scatter(self, client_id, msg) -> None:
        data, nbytes = msg["data"], msg["nbytes"]
        # A scatter restricted to some workers has fewer places to resend to if one dies
        # before storing it: it waits for their acknowledgement, and fails loudly.
        if not msg.get("confirm") and not msg.get("workers") and not _holds_callers_memory(data):
            if await self._scatter_without_waiting(client_id, msg):
                return
        # Counted against the workers' room while in flight, so concurrent scatters
        # cannot each see the same free space; released before the data is recorded.
        in_flight: list[dict] = []

        def stop_counting() -> None:
            while in_flight:
                self.state.reserve(in_flight.pop(), nbytes, -1)

        async def choose(keys, exclude):
            targets = await self._choose_workers(client_id, {
                **msg, "n": len(keys), "nbytes": {k: nbytes[k] for k in keys},
                "exclude": exclude})
            in_flight.append(dict(zip(keys, targets)))
            self.state.reserve(in_flight[-1], nbytes)
            return targets

        async def put(address, keys):
            return await self.scheduler.request_worker(address, {
                "op": "put-data", "data": {k: data[k] for k in keys}})

        async def record(placement):
            stop_counting()
            return self.record(client_id, {**msg, "placement": placement})

        async def take_back(by_worker):
            self.scheduler.discard_unrecorded(by_worker)
        try:
            await place(list(data), choose, put, record, take_back)
        finally:
            stop_counting()

    async def _scatter_without_waiting(self, client_id, msg: dict) -> bool:
        """Write the put-data messages, record the data, and return before the acks.

        Waiting for each worker's ack was half of a small scatter (the worker process
        must wake, and on a busy machine, be scheduled). Nothing is lost by not waiting:
        each worker gets its data before any later message on the same connection
        (delete-keys, get-data, compute), a worker asked by another connection waits
        for keys still on their way (``Worker._get_data``), and a worker that dies takes
        the keys it held alone with it, recorded or not. A worker that refuses the data
        loses those keys like a worker that died. A caller who gave an explicit timeout
        (``confirm``) asked to know the data arrived: that scatter waits.

        False if a chosen worker's connection was already closed: what was sent is taken
        back, and the caller scatters the waiting way, which places it elsewhere.
        """
        data = msg["data"]
        targets = await self._choose_workers(client_id, {**msg, "n": len(data)})
        placement = dict(zip(data, targets))
        by_worker: dict[str, dict] = {}
        for key, addresses in placement.items():
            for address in addresses:
                values = by_worker.get(address)  # not setdefault: no dict made per key
                if values is None:
                    values = by_worker[address] = {}
                values[key] = data[key]
        sent = {}
        try:
            for address, values in by_worker.items():
                channel = self.scheduler.worker_channels.get(address)
                if channel is None:
                    raise CommClosedError(f"worker {address} is gone")
                sent[address] = channel.send_request({"op": "put-data", "data": values})
        except CommClosedError:
            self.scheduler.discard_unrecorded(by_worker)
            return False
        # Recorded at once: no await since the workers were chosen, so all are alive
        # and nothing is in flight to reserve room for.
        self.record(client_id, {**msg, "placement": placement})
        for address, reply in sent.items():
            values = by_worker[address]
            self.scheduler.pending_acks.expect(address, values, reply,
                                               dict.fromkeys(values, msg.get("workers")))
        return True

    def record(self, client_id, msg) -> list[str]:
        """Record where scattered keys landed; return those whose every holder is gone."""
        placement, gone = msg["placement"], []
        self.direct_holds.release(client_id, placement)  # counted in nbytes from now on
        holders = {a for addresses in placement.values() for a in addresses}
        if not holders.issubset(self.state.workers):  # else no list to make per key
            placement = {k: [a for a in addresses if a in self.state.workers]
                         for k, addresses in placement.items()}
            gone = [k for k, addresses in placement.items() if not addresses]
            placement = {k: a for k, a in placement.items() if a}
        shared = [k for k in msg.get("shared", ()) if k in placement and k not in gone]
        # The payload of each shared-memory key (its refs; direct scatters send them in
        # "copies"): the scheduler puts it on another worker if every holder dies.
        payloads = msg.get("data") or msg.get("copies") or {}
        copies = {k: payloads[k] for k in shared if k in payloads} if shared else None
        self.scheduler.apply(self.state.add_data(client_id, placement,
                                                 msg["nbytes"], msg["types"], shared,
                                                 msg.get("broadcast", False), msg.get("workers"),
                                                 copies))
        if shared:
            for callback in self.scheduler.on_keys_recorded:
                callback(shared)
        return gone

    def unrecorded(self, client_id, msg) -> dict:
        for keys in msg["by_worker"].values():  # a failed direct scatter: nothing comes
            self.direct_holds.release(client_id, keys)
        return self.state.unrecorded(msg["by_worker"])


def _holds_callers_memory(data: dict) -> bool:
    """Whether a scatter's values still point into the caller's memory.

    Buffers of 64 KiB to 1 MiB travel as views of the caller's arrays; until the worker
    acknowledges them, the caller must not get control back (it could change them).
    Plain bytes and shared-memory references are the scatter's own.
    """
    return any(type(s) is not bytes and any(not isinstance(b, ShmRef) for b in s.buffers)
               for s in data.values())
