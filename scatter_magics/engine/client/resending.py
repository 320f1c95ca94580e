"""Scattered data sent again when the scheduler asks: every replica of it died.

The scheduler re-places data whose bytes are in the cluster's shared memory itself.
For the rest it asks the clients that hold the key (a ``resend`` report) before it
calls the key lost; each answers with what it has:

- a small value this client scattered: the pickle its ``FutureState`` keeps
  (``send_ahead.LOCAL_COPY_LIMIT``), exactly what the worker held;
- a key with a source (``Client.resend_from``, the magics' variable): the value read
  again, which the source gives only if it is still what was scattered;
- neither: a refusal, so the scheduler need not wait for this client.

Values go back in a ``resend-data`` request: the scheduler places them as the key was
placed (its ``workers=``, its broadcast), and the futures stay ``finished`` throughout.
A source that refuses gives a ``FutureLostError`` naming the variable, which the key
is then lost with.

>>> resending = Resending(link, refs.get, pool, True, loop)         # doctest: +SKIP
>>> resending.keep({"b-1f2e": source})                              # doctest: +SKIP
>>> resending.requested(["b-1f2e"])    # on the loop, from the report  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from ...errors import FutureLostError
from ..wire.serialize import for_message
from .scatter_copy import serialize_for_scatter

logger = logging.getLogger(__name__)


class Resending:
    """One client's answers to ``resend`` reports, and the sources it was given.

    ``link`` reaches the scheduler, ``state_of(key)`` gives a key's ``FutureState`` (or
    None), ``pool`` is the cluster's shared memory (None when remote), ``local`` says the
    workers run on this machine.
    """

    def __init__(self, link, state_of: Callable, pool, local: bool):
        self.link, self.state_of, self.pool, self.local = link, state_of, pool, local
        self.sources: dict = {}  # key -> Source, while a Future of this client holds it
        self._tasks: set[asyncio.Task] = set()

    def keep(self, sources: dict) -> None:
        """Read these keys (``{key: Source}``) again if the scheduler asks for them."""
        self.sources.update(sources)

    def forget(self, keys) -> None:
        """No Future holds ``keys`` any more (on the loop, as they are released)."""
        if self.sources:
            for key in keys:
                self.sources.pop(key, None)

    def requested(self, keys: list) -> None:
        """The scheduler's ``resend`` report (on the loop): answer it in the background."""
        task = asyncio.ensure_future(self._answer(keys))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, keys: list) -> None:
        refused: dict = {}
        try:
            kept, types = self._kept(keys)
            values, refused = await self._read_sources([k for k in keys if k not in kept])
            await self._send(kept, types, values)
        except Exception as exc:  # the link closed, a value would not pickle…
            logger.warning("could not scatter %d lost key(s) again: %r", len(keys), exc)
            error = FutureLostError(f"scattering it again failed: {exc!r}")
            refused.update((k, error) for k in keys if k not in refused)
        if refused and not self.link.closed:
            self.link.send({"op": "resend-refused", "errors": refused})

    def _kept(self, keys: list) -> tuple[dict, dict]:
        """The pickles this client keeps of ``keys`` (small values it scattered)."""
        kept, types = {}, {}
        for key in keys:
            state = self.state_of(key)
            # (A payload in shared memory is the scheduler's to send again: it has it.)
            if state is not None and type(state.local) is bytes:
                kept[key], types[key] = state.local, state.type
        return kept, types

    async def _read_sources(self, keys: list) -> tuple[dict, dict]:
        """``({key: value}, {key: FutureLostError or None})``: None, no source here."""
        by_source: dict = {}
        refused: dict = {}
        for key in keys:
            source = self.sources.get(key)
            if source is None:
                refused[key] = None  # the scheduler's own message says what happened
            else:
                by_source.setdefault(source, []).append(key)
        values = {}
        for source, source_keys in by_source.items():
            # Off the loop: a source hashes the value again (a large one takes a while),
            # and the loop runs the scheduler too.
            for key, value in (await asyncio.to_thread(source.values, source_keys)).items():
                if isinstance(value, FutureLostError):
                    refused[key] = value
                else:
                    values[key] = value
        return values, refused

    async def _send(self, kept: dict, types: dict, values: dict) -> None:
        if not kept and not values:
            return
        payload, pinned = await asyncio.to_thread(serialize_for_scatter, values, self.pool,
                                                  self.local)
        try:
            data, nbytes, shared = for_message(payload)
            types = {**types, **{k: type(v).__name__ for k, v in values.items()}}
            data.update(kept)
            nbytes.update((k, len(pickle)) for k, pickle in kept.items())
            await self.link.request({"op": "resend-data", "data": data, "nbytes": nbytes,
                                     "types": types, "shared": shared})
        finally:
            if pinned:
                self.pool.unpin(pinned)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.sources.clear()
