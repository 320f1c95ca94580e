"""Which data to move where: ``Client.rebalance()`` and retiring workers (``scale(n)`` down).

Pure functions of the ``workers`` and ``keys`` records; the server carries the moves out
(the recipient fetches from the sender, then the sender's copy is deleted).

**Rebalance** evens out the bytes of data the workers hold: the biggest values first,
each from the fullest worker to the emptiest one, as long as the move narrows the gap
between them. (Dask balances process memory, only between workers beyond thresholds of
their memory limit; README, "Where we differ from Dask".) Keys with replicas on more than
one allowed worker and standing broadcasts stay where they are.

>>> from scatter_magics.engine.scheduler.records import KeyInfo, WorkerInfo
>>> workers = {a: WorkerInfo(a, a, 1, 0) for a in ("a", "b")}
>>> keys = {}
>>> for i in range(4):
...     keys[f"k{i}"] = KeyInfo(f"k{i}", "memory", who_has={"a"}, nbytes=10)
...     workers["a"].keys.add(f"k{i}"); workers["a"].nbytes += 10
>>> sorted(rebalance_moves(workers, keys, ["a", "b"], None))
[('k0', 'a', 'b'), ('k1', 'a', 'b')]
>>> retire_moves(workers, keys, ["a"], ["b"])["k0"]
'b'
"""

from __future__ import annotations

from .records import KeyInfo, WorkerInfo


def rebalance_moves(workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo], allowed: list,
                    only) -> list[tuple]:
    """``[(key, sender, recipient)]`` that even out the bytes held on ``allowed`` workers,
    moving only keys in ``only`` (None: any key in memory)."""
    held = {a: 0 for a in allowed}
    movable: dict[str, list] = {a: [] for a in allowed}
    for key, ks in keys.items():
        holders = [a for a in ks.who_has if a in held]
        if ks.state != "memory" or not holders:
            continue
        for address in holders:
            held[address] += ks.nbytes or 0
        if len(holders) == 1 and not ks.standing and (only is None or key in only):
            movable[holders[0]].append(ks)
    moves = []
    for sender in sorted(held, key=held.get, reverse=True):
        for ks in sorted(movable[sender], key=lambda k: k.nbytes or 0, reverse=True):
            recipient = min(held, key=held.get)
            size = ks.nbytes or 0
            if recipient == sender or held[sender] - held[recipient] <= size:
                continue  # moving it would not narrow the gap
            moves.append((ks.key, sender, recipient))
            held[sender] -= size
            held[recipient] += size
    return moves


def retire_moves(workers: dict[str, WorkerInfo], keys: dict[str, KeyInfo], leaving: list,
                 staying: list) -> dict:
    """``{key: recipient}`` for each key held only by ``leaving`` workers: the staying
    worker holding the fewest bytes gets it (counting what it gets here)."""
    if not staying:
        return {}
    load = {a: workers[a].nbytes for a in staying}
    gone = set(leaving)
    moves = {}
    for address in leaving:
        for key in sorted(workers[address].keys, key=lambda k: -(keys[k].nbytes or 0)
                          if k in keys else 0):
            ks = keys.get(key)
            if ks is None or key in moves or ks.state != "memory" or not ks.who_has <= gone:
                continue
            recipient = min(load, key=load.get)
            moves[key] = recipient
            load[recipient] += ks.nbytes or 0
    return moves
