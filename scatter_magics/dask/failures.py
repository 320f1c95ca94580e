"""Dask's failures as the classes of ``errors.py``, so the magics word them as on our engine.

- A task's own exception keeps its class and gets a
  :class:`~scatter_magics.errors.RemoteTraceback` as ``__cause__``: the task's frames
  as the worker ran them (Dask's ``Future.traceback()``), without the client's.
- A future whose data was lost with its workers: Dask reports it cancelled (the
  scheduler forgets data nobody holds); the scheduler's ``remove-worker`` events (topic
  ``all``) say which keys each departure lost, so it becomes a ``FutureLostError``
  naming the worker. Any other cancelled future is a ``FutureCancelledError``.
- ``KilledWorker`` is a ``KilledWorkerError``; a closed connection to the scheduler a
  ``CommClosedError``; a closed client a ``ClientClosedError``.
- Closing a client whose scheduler is gone says nothing (:func:`quiet_reconnect`): the
  magics' one line says it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from concurrent.futures import CancelledError

import distributed
from distributed.comm import CommClosedError as DaskCommClosedError

from ..errors import (
    ClientClosedError,
    CommClosedError,
    FutureCancelledError,
    FutureLostError,
    KilledWorkerError,
    RemoteTraceback,
)

logger = logging.getLogger(__name__)


def raise_gather_error(client, exc: BaseException, futures: list):
    """Raise what ``DaskBackend.gather`` says for ``exc`` (never returns)."""
    errored = _errored_with(exc, futures)
    if errored is not None:
        raise exc from task_traceback(exc, errored)
    if isinstance(exc, CancelledError):
        raise cancelled_or_lost(client, exc, futures) from exc
    if isinstance(exc, distributed.KilledWorker):
        raise KilledWorkerError(str(exc)) from exc
    raise connection_error(client, exc) or exc


def connection_error(client, exc: BaseException) -> BaseException | None:
    """Our class for a connection that closed under a call (None: not that)."""
    if client.status in ("closing", "closed"):
        return _chained(ClientClosedError(f"the Dask client was closed ({exc!r})"), exc)
    # A bare OSError is how distributed says a connection attempt failed; its subclass
    # TimeoutError is a timeout, which the caller words itself.
    if isinstance(exc, (DaskCommClosedError, ConnectionError)) or type(exc) is OSError:
        return _chained(CommClosedError(f"the connection to the scheduler at "
                                        f"{client.scheduler.address} closed: {exc}"), exc)
    return None


def _chained(new: BaseException, cause: BaseException) -> BaseException:
    new.__cause__ = cause
    return new


def _errored_with(exc: BaseException, futures: list):
    """The future whose task raised ``exc``, if one did."""
    for future in futures:
        if future.status == "error":
            try:
                if future.exception(timeout=1) is exc:
                    return future
            except Exception:  # its client went meanwhile: not a task's exception then
                return None
    return None


def task_traceback(exc: BaseException, future) -> RemoteTraceback:
    """The frames the worker ran, as Dask rebuilt them (``Future.traceback()``)."""
    tb = future.traceback(timeout=1)
    frames = [(f.filename, f.lineno, f.name, f.line or "") for f in traceback.extract_tb(tb)]
    text = "".join(traceback.format_exception(type(exc), exc, tb, chain=False))
    return RemoteTraceback(text, frames, key=future.key)


def cancelled_or_lost(client, exc: BaseException, futures: list) -> BaseException:
    cancelled = [f for f in futures if f.status in ("cancelled", "lost")]
    departures = _departures(client, {f.key for f in cancelled})
    for future in cancelled:
        why = departures.get(future.key)
        if why is not None:
            return FutureLostError(f"key {future.key!r} was lost: its only holder {why}, and "
                                   f"it was scattered data with no other replica")
    key = cancelled[0].key if cancelled else getattr(exc, "key", None)
    reason = getattr(exc, "reason", None)
    error = FutureCancelledError(f"key {key!r} was cancelled"
                                 + (f" ({reason})" if reason and reason != "unknown" else ""))
    error.reason = reason
    return error


def _departures(client, keys: set) -> dict:
    """``{key: "tcp://… lost its connection …"}`` for ``keys`` a worker's departure lost."""
    if not keys:
        return {}
    try:
        events = client.get_events("all")
    except Exception:  # the scheduler went too: nothing more to say
        logger.debug("could not read the scheduler's events", exc_info=True)
        return {}
    found = {}
    for _, event in events:
        if not isinstance(event, dict) or event.get("action") != "remove-worker":
            continue
        how = ("was retired" if event.get("expected") else
               "lost its connection to the scheduler (it died or was killed)")
        for key in event.get("lost-scattered-tasks") or ():
            if key in keys:
                found[key] = f"{event.get('worker')} {how}"
    return found


# ------------------------------------------------------------ a gone scheduler ---

@contextlib.contextmanager
def quiet_reconnect(client):
    """While closing ``client`` after its scheduler went away: Dask is reconnecting, and
    the close cancels that, which Dask logs as an ERROR with two tracebacks (~30 lines
    in the cell above the magics' one line saying the cluster is gone)."""
    if client.status == "running":
        yield
        return
    loggers = [logging.getLogger(name) for name in ("distributed.client", "distributed.utils")]
    for each in loggers:
        each.addFilter(_not_a_cancelled_reconnect)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(_not_a_cancelled_reconnect)


def _not_a_cancelled_reconnect(record: logging.LogRecord) -> bool:
    kind = record.exc_info[0] if record.exc_info else None
    return not (kind is not None and issubclass(kind, asyncio.CancelledError))
