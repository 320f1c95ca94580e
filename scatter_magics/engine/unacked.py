"""Scattered data sent without waiting for the worker's ack, kept until the ack comes.

The scheduler records a small scatter as soon as its ``put-data`` is written (waiting
for the ack was half of a small scatter's time, see ``Scheduler._scatter_without_waiting``).
Until the worker acknowledges, the scheduler keeps each value here, so that when that
worker dies or stops answering first, the data is placed again on another worker instead
of being lost (issue 11, items 5 and 6).

>>> puts = UnackedPuts()
>>> puts.add("tcp://a:1", {"x": b"1"}, "client-1", {"nbytes": {"x": 1}})
>>> puts.acked("tcp://a:1", ["x"])
>>> puts.take("tcp://a:1")
[]
"""

from __future__ import annotations


class UnackedPuts:
    """``put-data`` values by worker address, until that worker acknowledges them."""

    def __init__(self):
        # address → key → (value, client id, the scatter's message: sizes, types, workers=)
        self._by_worker: dict[str, dict[str, tuple]] = {}

    def add(self, address: str, values: dict, client_id: str, msg: dict) -> None:
        held = self._by_worker.setdefault(address, {})
        for key, value in values.items():
            held[key] = (value, client_id, msg)

    def acked(self, address: str, keys) -> None:
        held = self._by_worker.get(address)
        if held is not None:
            for key in keys:
                held.pop(key, None)
            if not held:
                del self._by_worker[address]

    def take(self, address: str) -> list[tuple[str, dict, dict]]:
        """``[(client id, scatter message, {key: value})]`` never acknowledged by ``address``."""
        groups: dict[int, tuple[str, dict, dict]] = {}
        for key, (value, client_id, msg) in self._by_worker.pop(address, {}).items():
            groups.setdefault(id(msg), (client_id, msg, {}))[2][key] = value
        return list(groups.values())
