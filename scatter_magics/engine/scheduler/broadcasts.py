"""Standing broadcasts: keys scattered with ``broadcast=True`` keep a copy on every allowed worker.

A standing key (``KeyInfo.standing``; the allowed workers' names in ``broadcast_names``,
``None`` for every worker) stays so for its whole life: a worker that joins, or wakes up,
is asked to ``acquire`` the standing keys it lacks, and a replacement inherits its
predecessor's place among the allowed. See ``docs/internals.md``, "Standing broadcast".

>>> from scatter_magics.engine.scheduler.records import KeyInfo, WorkerInfo
>>> workers = {"tcp://a:1": WorkerInfo("tcp://a:1", "worker-0", 1, memory_limit=100),
...            "tcp://b:1": WorkerInfo("tcp://b:1", "worker-1", 1, memory_limit=100)}
>>> keys = {"x": KeyInfo("x", "memory", who_has={"tcp://a:1"})}
>>> broadcasts = StandingBroadcasts(workers, keys)
>>> broadcasts.make_standing(keys["x"], None)
>>> broadcasts.top_up(workers["tcp://b:1"])
[(('worker', 'tcp://b:1'), {'op': 'acquire', 'who_has': {'x': ['tcp://a:1']}})]
>>> broadcasts.top_up(workers["tcp://b:1"])  # already on its way
[]
"""

from __future__ import annotations

from .records import KeyInfo, Outgoing, WorkerInfo


class StandingBroadcasts:
    """The standing keys, and the copies of them each worker is fetching."""

    def __init__(self, workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo]):
        self.workers = workers
        self.keys = keys
        self.standing: set[str] = set()  # keys broadcast for their whole life

    def make_standing(self, ks: KeyInfo, names: set[str] | None) -> None:
        """``ks`` keeps a copy on the workers named ``names`` (``None``: on every worker)."""
        if ks.standing and (ks.broadcast_names is None or names is None):
            names = None  # broadcast to everyone once: it stays so
        elif ks.standing:
            names = names | ks.broadcast_names
        else:
            names = None if names is None else set(names)  # each key's own: inherit() adds
        ks.standing, ks.broadcast_names = True, names
        self.standing.add(ks.key)

    def stop(self, ks: KeyInfo) -> None:
        """``ks`` is no longer kept everywhere (``replicate(n=...)`` asked for fewer)."""
        if ks.standing:
            ks.standing, ks.broadcast_names = False, None
            self.standing.discard(ks.key)

    def forget(self, key: str) -> None:
        self.standing.discard(key)

    def inherit(self, ws: WorkerInfo) -> None:
        """A replacement is allowed whatever the worker it replaces was allowed."""
        for key in self.standing:
            names = self.keys[key].broadcast_names
            if names is not None and ws.replaces in names:
                names.add(ws.name)

    def top_up(self, ws: WorkerInfo, keys=None) -> Outgoing:
        """Ask ``ws`` to fetch the standing broadcasts (of ``keys``) it lacks."""
        if ws.status != "running":
            return []
        who_has = {}
        for key in self.standing if keys is None else keys:
            ks = self.keys[key]
            if (ks.state == "memory" and ks.who_has and key not in ws.keys
                    and key not in ws.acquiring
                    and (ks.broadcast_names is None or ws.name in ks.broadcast_names)):
                who_has[key] = sorted(ks.who_has)
        if not who_has:
            return []
        ws.acquiring.update(who_has)
        return [(("worker", ws.address), {"op": "acquire", "who_has": who_has})]

    def acquired(self, address: str, fetched: dict, failed: list) -> None:
        """``address`` is no longer fetching ``fetched`` (now held) nor ``failed``."""
        ws = self.workers.get(address)
        if ws is not None:
            ws.acquiring.difference_update(fetched)
            ws.acquiring.difference_update(failed)
