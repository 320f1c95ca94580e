"""Putting scattered data on workers, again elsewhere when a worker dies mid-transfer.

Both ways a scatter travels use :func:`place`: through the scheduler (``scheduler.py``)
and client → workers (``direct=True``, ``client.py``). Each passes four coroutines:

- ``choose(keys, exclude)``: the workers for each key (``[[address, ...], ...]``),
  never one in ``exclude`` (workers that just died, which the scheduler may not know yet);
- ``put(address, keys)``: send those keys' data to one worker;
- ``record(placement)``: tell the scheduler who holds what; returns the keys whose
  every holder is gone meanwhile;
- ``take_back({address: keys})``: delete what a failed scatter left, unrecorded.

A worker that dies while receiving (its connection closes), or stops answering (the
scheduler fails what waits on it with ``WorkerUnresponsiveError``), costs a retry on the
others; when none is left, the error names the keys and the workers' addresses.
"""

from __future__ import annotations

import asyncio

from ...errors import (
    CommClosedError,
    NoWorkersError,
    UnknownWorkerError,
    WorkerDiedError,
)

ATTEMPTS = 3  # rounds of placement: each one loses at least one more worker


async def place(keys: list, choose, put, record, take_back) -> None:
    """Put ``keys`` on workers with the callables above; see the module docstring."""
    sent: dict[str, list] = {}
    died: dict[str, str] = {}  # address → what happened to it
    remaining = list(keys)
    try:
        for _ in range(ATTEMPTS):
            placement = dict(zip(remaining, await _choose(choose, remaining, died)))
            by_worker: dict[str, list] = {}
            for key, addresses in placement.items():
                for address in addresses:
                    by_worker.setdefault(address, []).append(key)
                    sent.setdefault(address, []).append(key)
            results = await _put_all(put, by_worker)
            for address, result in zip(by_worker, results):
                if isinstance(result, CommClosedError):
                    died[address] = str(result)
                elif isinstance(result, BaseException):
                    raise result
            live = {k: [a for a in addresses if a not in died]
                    for k, addresses in placement.items()}
            remaining = [k for k, addresses in live.items() if not addresses]
            gone = await record({k: addresses for k, addresses in live.items() if addresses})
            for key in gone:  # stored, then its holder died before the scheduler recorded it
                died.update({a: "died before its copy was recorded" for a in live[key]})
            remaining += gone
            if not remaining:
                if died:  # an unresponsive one may resume and store what it was sent
                    await take_back({a: sent[a] for a in died if a in sent})
                return
        raise _died_error(remaining, died)
    except BaseException:  # failed, timed out or interrupted: take back what may have landed
        await take_back(sent)
        raise


async def _put_all(put, by_worker: dict) -> list:
    """Each worker's reply or exception; one worker (the common case) without a task."""
    if len(by_worker) == 1:
        [(address, keys)] = by_worker.items()
        try:
            return [await put(address, keys)]
        except CommClosedError as exc:
            return [exc]
    return await asyncio.gather(*(put(a, ks) for a, ks in by_worker.items()),
                                return_exceptions=True)


async def _choose(choose, keys: list, died: dict) -> list:
    try:
        return await choose(keys, sorted(died))
    except (NoWorkersError, UnknownWorkerError) as exc:
        if died:  # the only allowed workers were the ones that just died
            raise _died_error(keys, died) from exc
        raise


def _died_error(keys: list, died: dict) -> WorkerDiedError:
    shown = ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more"
                                                     if len(keys) > 3 else "")
    workers = "; ".join(f"{address} ({why})" for address, why in died.items())
    return WorkerDiedError(
        f"could not scatter {shown}: the worker(s) receiving it died or stopped answering: "
        f"{workers}; no other "
        "allowed worker could take it (scatter again once a worker is back: dead workers "
        "are replaced within seconds)")
