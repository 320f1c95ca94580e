"""Published datasets: named data that belongs to the cluster, not to a client.

Dask's ``publish_dataset`` on our scheduler. A dataset is the pickle a client made of
its data (futures in it as references to their keys; the scheduler never unpickles it)
and the keys it refers to, which the dataset holds as ``("published", name)`` in each
key's ``wanted_by``: so they outlive the client that published them (a restarted
kernel) and go only when the name is unpublished (and nobody else holds them) or the
cluster ends. The same calling convention as
:class:`~scatter_magics.engine.scheduler.state.SchedulerState`.

>>> from scatter_magics.engine.scheduler.state import SchedulerState
>>> state = SchedulerState()
>>> _ = state.add_worker("tcp://a:1", "worker-0", 1, memory_limit=100)
>>> _ = state.add_data("client-1", {"x": ["tcp://a:1"]}, {"x": 8}, {"x": "int"})
>>> state.datasets.publish({"df": {"data": b"...", "keys": ["x"]}}, override=False)
[]
>>> state.forget_client("client-1")  # the dataset holds x now: nothing is deleted
[]
>>> state.datasets.names(), state.datasets.summaries()[0]["workers"]
(['df'], ['worker-0'])
>>> state.datasets.unpublish(["df"])[0]
(('worker', 'tcp://a:1'), {'op': 'delete-keys', 'keys': ['x']})
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .records import PUBLIC_STATUS, KeyInfo, Outgoing, WorkerInfo

if TYPE_CHECKING:
    from .tasks import TaskMachine


def holder(name) -> tuple:
    """Who holds a dataset's keys in ``KeyInfo.wanted_by`` (client ids are text)."""
    return ("published", name)


class DatasetBook:
    """``{name: {"data", "keys"}}`` and the keys each name holds."""

    def __init__(self, keys: dict[str, KeyInfo], workers: dict[str, WorkerInfo],
                 tasks: TaskMachine):
        self.keys, self.workers = keys, workers
        self.tasks = tasks  # releasing the keys of an unpublished name
        self.datasets: dict = {}

    def publish(self, datasets: dict, override: bool) -> Outgoing:
        """Store ``{name: {"data", "keys"}}``; a name taken raises ``KeyError`` (as Dask's)
        unless ``override``, which releases the old dataset's keys."""
        if not override:
            for name in datasets:
                if name in self.datasets:
                    raise KeyError(f"Dataset {name} already exists")
        out: Outgoing = []
        for name, dataset in datasets.items():
            for key in dataset["keys"]:  # held before the old ones go: they may be shared
                ks = self.keys.get(key)
                if ks is not None:
                    ks.wanted_by.add(holder(name))
            old = self.datasets.get(name)
            if old is not None:
                kept = set(dataset["keys"])
                out += self.tasks.release(holder(name), [k for k in old["keys"] if k not in kept])
            self.datasets[name] = {"data": dataset["data"], "keys": list(dataset["keys"])}
        return out

    def unpublish(self, names) -> Outgoing:
        """Forget ``names`` (unknown ones are no error, as in Dask); their keys go once
        nobody else holds them."""
        out: Outgoing = []
        for name in names:
            dataset = self.datasets.pop(name, None)
            if dataset is not None:
                out += self.tasks.release(holder(name), dataset["keys"])
        return out

    def get(self, client: str, names) -> list:
        """For each of ``names``: None, or ``{"data", "keys", "states"}`` (each key's status
        now, as a ``key-update`` says it). ``client`` holds the keys from now on, as the
        futures it makes for them will."""
        out = []
        for name in names:
            dataset = self.datasets.get(name)
            if dataset is None:
                out.append(None)
                continue
            states = {}
            for key in dataset["keys"]:
                ks = self.keys.get(key)
                if ks is None:  # released before it was published: Dask says cancelled
                    states[key] = {"status": "cancelled", "type": None, "exception": None,
                                   "traceback": None}
                    continue
                ks.wanted_by.add(client)
                states[key] = {"status": PUBLIC_STATUS[ks.state], "type": ks.type,
                               "exception": ks.exception, "traceback": ks.traceback}
            out.append({**dataset, "states": states})
        return out

    def names(self) -> list:
        """The published names, sorted as Dask sorts them (by their text)."""
        return sorted(self.datasets, key=str)

    def summaries(self) -> list[dict]:
        """``[{"name", "nbytes", "keys", "workers"}]`` for ``%cluster`` and the sidebar:
        the bytes of its keys, and the names of the workers holding them."""
        out = []
        for name in self.names():
            held = [self.keys[k] for k in self.datasets[name]["keys"] if k in self.keys]
            holders = {self.workers[a].name for ks in held for a in ks.who_has
                       if a in self.workers}
            out.append({"name": name if isinstance(name, str) else repr(name),
                        "nbytes": sum(ks.nbytes or 0 for ks in held), "keys": len(held),
                        "workers": sorted(holders, key=_natural)})
        return out


def _natural(name: str) -> list:
    """``worker-2`` before ``worker-10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
