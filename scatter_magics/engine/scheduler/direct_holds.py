"""Room held for direct scatters between choosing their workers and recording them.

A ``direct=True`` scatter asks the scheduler where its keys go (``choose-workers``),
sends them to the workers itself, then reports where they landed (``update-data``), or
takes them back on failure (``unrecorded``). Between the first and the last step the
scheduler counts the keys against the chosen workers' ``memory_limit``, as it does for a
scatter it carries itself, so that two concurrent direct scatters cannot each see the
same free space and together overfill a worker.

>>> from scatter_magics.engine.scheduler.state import SchedulerState
>>> state = SchedulerState()
>>> _ = state.add_worker("tcp://a:1", "worker-0", 1, memory_limit=200)
>>> holds = DirectHolds(state)
>>> holds.hold("client-1", {"x": ["tcp://a:1"]}, {"x": 150})
>>> state.workers["tcp://a:1"].reserved
150
>>> holds.release("client-1", ["x"])
>>> state.workers["tcp://a:1"].reserved
0
"""

from __future__ import annotations


class DirectHolds:
    """Per client, per key: the workers chosen and the bytes counted against them."""

    def __init__(self, state):
        self.state = state
        self._held: dict[str, dict] = {}  # client id → {key: (addresses, nbytes)}

    def hold(self, client: str, placement: dict, nbytes: dict) -> None:
        """Count ``placement`` (key → addresses) against those workers' room."""
        held = self._held.setdefault(client, {})
        self.release(client, placement)  # a retry after a death chooses again
        self.state.reserve(placement, nbytes)
        for key, addresses in placement.items():
            held[key] = (addresses, nbytes.get(key) or 0)

    def release(self, client: str, keys) -> None:
        """Stop counting ``keys``: call before they are recorded (a recorded key is
        counted in its worker's ``nbytes`` instead)."""
        held = self._held.get(client)
        if not held:
            return
        for key in keys:
            entry = held.pop(key, None)
            if entry is not None:
                self.state.reserve({key: entry[0]}, {key: entry[1]}, -1)

    def release_client(self, client: str) -> None:
        """The client left: nothing it chose workers for is coming any more."""
        self.release(client, list(self._held.pop(client, {})))
