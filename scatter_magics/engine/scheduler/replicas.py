"""Fewer replicas than there are: ``replicate(n=...)`` reducing, and data a worker refused.

A mixin of :class:`~scatter_magics.engine.scheduler.state.SchedulerState`, with its
calling convention: plain synchronous methods that return the messages to send.
"""

from __future__ import annotations

from .records import KeyInfo, Outgoing


class Replicas:
    """Dropping replicas, over ``self.keys`` and ``self.workers``."""

    def reduce_replicas(self, keys, n: int, workers=None) -> Outgoing:
        """Keep at most ``n`` replicas of each key among ``workers``; delete the rest.

        Dask's ``replicate(n=...)`` reduces too. The fullest workers give theirs up first;
        a replica that a task running there reads stays. A broadcast asked to keep ``n``
        replicas stops standing (it would be topped up again otherwise).
        """
        allowed = self.resolve_workers(workers)
        out: Outgoing = []
        for key in keys:
            ks = self._known(key)
            held = [a for a in allowed if a in ks.who_has]
            if ks.state != "memory" or len(held) <= n:
                continue
            if ks.standing:
                ks.standing, ks.broadcast_names = False, None
                self.standing.discard(key)
            held.sort(key=lambda a: self.workers[a].nbytes, reverse=True)
            for address in [a for a in held if not self._read_there(ks, a)][:len(held) - n]:
                out += self._drop_replica(ks, address)
            self._emit_key(ks)
        return out

    def drop_replicas(self, address: str, keys, why: str) -> Outgoing:
        """``address`` does not hold ``keys`` after all; a key left with no replica is lost."""
        out: Outgoing = []
        for key in keys:
            ks = self.keys.get(key)
            if ks is None or address not in ks.who_has:
                continue
            out += self._drop_replica(ks, address, delete=False)
            if not ks.who_has and ks.state == "memory":
                out += self._lose(ks, why)
            else:
                self._emit_key(ks)
        return out

    def _read_there(self, ks: KeyInfo, address: str) -> bool:
        return any(self.keys[d].processing_on == address for d in ks.dependents if d in self.keys)

    def _drop_replica(self, ks: KeyInfo, address: str, delete: bool = True) -> Outgoing:
        ws = self.workers.get(address)
        if ws is not None and ks.key in ws.keys:
            ws.keys.discard(ks.key)
            ws.nbytes -= ks.nbytes or 0
        ks.who_has.discard(address)
        return [(("worker", address), {"op": "delete-keys", "keys": [ks.key]})] if delete else []
