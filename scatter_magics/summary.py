"""One summary of a cluster's state, which every view renders and none recomputes.

The futures widget, the cluster widget, ``%cluster``'s text and HTML, the REST API (so the
sidebar card and the Futures panel) all show the numbers this module computes, with the
same meaning (issue 17: a card said "18 keys, 824 MiB" of a cluster ``%cluster`` said
held 122 MiB, because one counted a lost key's bytes and the other did not):

- ``keys.count``: distinct keys (a key on three workers is one key);
  ``keys.replicas``: the copies of the keys in memory, counted apart.
- ``keys.by_status``: keys per status; they add up to ``keys.count``.
- ``keys.nbytes``: the data in memory, each key once: the bytes of every ``finished``
  key that some live worker holds. A lost key (its last holder died) has no bytes.
  ``keys.replica_nbytes``: the same, once per replica.
- per worker, ``nbytes``: the data it holds, shared-memory data it maps included (what
  counts against its ``memory_limit``), ``nkeys`` the keys it holds, ``by_status`` the
  keys held (``finished``) and computed (``running``) there; ``memory`` is its
  process's resident memory, a second and different number.
- ``datasets``, beside them in every answer that has them (the scheduler's overview, the
  Dask views, the REST API): the published datasets, ``[{name, nbytes, workers}]``
  (``workers`` by name), which belong to the cluster and outlive any kernel.

A key is given as a *record*, ``(status, workers, nbytes, running_on)``, made from a key
event (docs/internals.md, "The event stream") by :func:`record`. :class:`KeyTally` keeps
the numbers as keys change, O(1) per change, for the live widgets; :func:`summarize`
folds a whole cluster at once, for the scheduler and the server.

>>> summary = summarize(
...     [{"address": "tcp://a", "name": "worker-0", "nthreads": 1, "memory_limit": 100,
...       "memory": 40}],
...     [record({"status": "finished", "workers": ["tcp://a"], "nbytes": 10}),
...      record({"status": "lost", "workers": [], "nbytes": 80})])
>>> summary["keys"]
{'count': 2, 'by_status': {'finished': 1, 'lost': 1}, 'nbytes': 10, 'replicas': 1, 'replica_nbytes': 10}
>>> summary["workers"][0]["nbytes"], summary["workers"][0]["memory"]
(10, 40)
>>> keys_phrase(summary["keys"])
'2 keys, 10 B in memory'
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from .keys import value_name
from .sizes import format_bytes

# Every status a key event can carry, in the order views list them ("running" exists in
# events only; "released" keys are gone from a cluster but stay rows of a futures table).
STATUSES = ("pending", "running", "finished", "error", "cancelled", "lost", "released")

Record = tuple  # (status, workers: tuple of addresses, nbytes: int | None, running_on)


def record(event: Mapping[str, Any]) -> Record:
    """The part of a key event the summary counts."""
    status = event.get("status", "pending")
    running_on = event.get("processing_on") if status == "running" else None
    workers = () if status == "released" else tuple(event.get("workers") or ())
    return status, workers, event.get("nbytes"), running_on


class KeyTally:
    """Counts and bytes of a changing set of keys; :meth:`change` is O(replicas)."""

    __slots__ = ("by_status", "nbytes", "replicas", "replica_nbytes", "held", "running")

    def __init__(self) -> None:
        self.by_status: Counter[str] = Counter()
        self.nbytes = 0
        self.replicas = 0
        self.replica_nbytes = 0
        self.held: dict[str, list[int]] = {}  # address -> [keys, bytes] held there
        self.running: Counter[str] = Counter()  # address -> tasks running there

    def change(self, old: Record | None, new: Record | None) -> None:
        """A key went from ``old`` to ``new`` (None: it was not counted / is not any more)."""
        # A record with nothing held or running costs no call: a widget folds 10,000 events
        # of a batch through here (a cancel of 10,000 futures: 19 -> 15 ms on this machine).
        if old is not None:
            if old[0] == "finished" and old[1] or old[0] == "running":
                self._add(old, -1)
            else:
                self.by_status[old[0]] -= 1
        if new is not None:
            if new[0] == "finished" and new[1] or new[0] == "running":
                self._add(new, 1)
            else:
                self.by_status[new[0]] += 1

    def _add(self, rec: Record, sign: int) -> None:
        status, workers, nbytes, running_on = rec
        self.by_status[status] += sign
        if status == "finished":
            size = (nbytes or 0) * sign
            self.nbytes += size
            self.replicas += sign * len(workers)
            self.replica_nbytes += size * len(workers)
            held = self.held
            for address in workers:
                counts = held.get(address)
                if counts is None:
                    counts = held[address] = [0, 0]
                counts[0] += sign
                counts[1] += size
        elif running_on is not None:
            self.running[running_on] += sign

    def keys(self, statuses: Iterable[str] = STATUSES) -> dict[str, Any]:
        """``{"count", "by_status", "nbytes", "replicas", "replica_nbytes"}``."""
        by_status = {s: self.by_status[s] for s in statuses if self.by_status[s] > 0}
        return {"count": sum(by_status.values()), "by_status": by_status,
                "nbytes": self.nbytes, "replicas": self.replicas,
                "replica_nbytes": self.replica_nbytes}

    def worker(self, address: str) -> dict[str, Any]:
        """What one worker holds and runs: ``{"nkeys", "nbytes", "by_status"}``."""
        nkeys, nbytes = self.held.get(address, (0, 0))
        by_status = {"running": self.running[address], "finished": nkeys}
        return {"nkeys": nkeys, "nbytes": nbytes,
                "by_status": {s: n for s, n in by_status.items() if n > 0}}

    def forget_worker(self, address: str) -> None:
        """A worker left: its counts go (its keys' own events follow, or already came)."""
        self.held.pop(address, None)
        self.running.pop(address, None)


def worker_rows(workers: Iterable[Mapping[str, Any]], tally: KeyTally) -> list[dict[str, Any]]:
    """Each worker's own fields (address, name, nthreads, memory_limit, memory, ...) with
    what the tally says it holds, sorted by name (``worker-2`` before ``worker-10``)."""
    rows = [{**w, **tally.worker(w["address"])} for w in workers]
    rows.sort(key=lambda w: (natural_order(w.get("name", "")), w["address"]))
    return rows


def summary_of(workers: Iterable[Mapping[str, Any]], tally: KeyTally,
               statuses: Iterable[str] = STATUSES) -> dict[str, Any]:
    """The summary every view renders: ``{"workers": [...], "keys": {...}, "totals": {...}}``.

    ``totals`` sums the live workers: ``n_workers``, ``nthreads``, ``memory`` (processes),
    ``memory_limit``, and ``nbytes``, the data they hold (a replica on each worker that
    holds it: the sum of the workers' column).
    """
    rows = worker_rows(workers, tally)
    totals = {"n_workers": len(rows)}
    for field in ("nthreads", "memory", "memory_limit", "nbytes"):
        totals[field] = sum(w.get(field) or 0 for w in rows)
    return {"workers": rows, "keys": tally.keys(statuses), "totals": totals}


def summarize(workers: Iterable[Mapping[str, Any]], keys: Iterable[Record],
              names: Iterable | None = None) -> dict[str, Any]:
    """:func:`summary_of` a whole cluster at once: its workers and every key's record.

    Given the keys themselves (``names``), ``keys.names`` counts the values they hold by
    name (``keys.value_name``): the pieces of a split value, ``df[0/4]`` … ``df[3/4]``,
    count once, as the sidebar card says."""
    tally = KeyTally()
    for rec in keys:
        tally.change(None, rec)
    summary = summary_of(workers, tally)
    if names is not None:
        summary["keys"]["names"] = len({value_name(key) for key in names})
    return summary


# ------------------------------------------------------------ words ---

def counted(n: int, noun: str) -> str:
    """``'1 key'``, ``'10,000 keys'``: a count with its noun, singular or plural."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def keys_phrase(keys: Mapping[str, Any]) -> str:
    """``'3 keys (5 replicas), 2 MiB in memory'``: the replicas said only when they differ.

    The notebook widget and the labextension write the same words (``dom.js``
    ``keysPhrase``)."""
    replicas = keys.get("replicas", 0)
    held = keys.get("by_status", {}).get("finished", 0)
    extra = f" ({counted(replicas, 'replica')})" if replicas != held else ""
    return (f"{counted(keys.get('count', 0), 'key')}{extra}, "
            f"{format_bytes(keys.get('nbytes', 0))} in memory")


def memory_phrase(worker: Mapping[str, Any]) -> str:
    """``'data 824 MiB of 11.8 GiB · process 26.6 MiB'``: what each number is."""
    limit = worker.get("memory_limit")
    of = f" of {format_bytes(limit)}" if limit else " (no limit)"
    return (f"data {format_bytes(worker.get('nbytes') or 0)}{of} · "
            f"process {format_bytes(worker.get('memory') or 0)}")


def natural_order(name) -> list:
    """Sort key putting ``worker-2`` before ``worker-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name))]
