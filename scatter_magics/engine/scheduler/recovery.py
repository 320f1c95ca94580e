"""What happens to keys when workers come and go: recomputing, retrying, standing broadcasts.

A mixin of :class:`~scatter_magics.engine.scheduler.state.SchedulerState`, with its
calling convention: plain synchronous methods that return the messages to send.

- A computed key whose every holder died is recomputed from its task when its inputs
  remain; scattered data has no task and is lost, with a message saying what to do.
- A task whose worker dies while running it runs elsewhere, at most ``ALLOWED_FAILURES``
  times (Dask's ``KilledWorker``).
- A key scattered with ``broadcast=True`` keeps a replica on every allowed live worker:
  workers that join or wake up are asked to ``acquire`` what they lack.
"""

from __future__ import annotations

from ...errors import KilledWorkerError
from .records import NONE, KeyInfo, Outgoing, WorkerInfo

ALLOWED_FAILURES = 3  # deaths of a worker running a task before the task fails (as Dask)


class Recovery:
    """Recompute, retry and standing broadcasts, over ``self.keys`` and ``self.workers``."""

    def _recover(self, orphaned: list, death: str) -> Outgoing:
        """Keys whose every holder died: recompute those that can be, lose the others.

        A computed key is recomputed from its task when each input is still held, or
        can itself be recomputed (the dead worker may have held both). Scattered data
        has no task: it is lost, with a message that says what to do.
        """
        out: Outgoing = []
        doomed = {ks.key for ks in orphaned}
        able = {ks.key for ks in orphaned if self._recomputable(ks, doomed, set())}
        for ks in orphaned:
            if ks.key in able:
                out += self._recompute(ks, able)
            elif ks.task is None:
                out += self._lose(ks, f"its only holder {death}, and it was "
                                  "scattered data with no other replica: scatter it again "
                                  "(broadcast=True keeps a replica on every worker)")
            else:
                out += self._lose(ks, f"its only holder {death}, and it cannot be "
                                  "recomputed: an input of its task is no longer held "
                                  "(released or lost); submit it again with its inputs")
        return out

    def _recomputable(self, ks: KeyInfo, doomed: set, seen: set) -> bool:
        if ks.task is None or ks.key in seen:
            return False
        seen.add(ks.key)
        for dep in ks.deps:
            dks = self.keys.get(dep)
            if dks is None or dks.state in ("error", "lost", "cancelled", "released"):
                return False
            if dep in doomed and not self._recomputable(dks, doomed, seen):
                return False
        return True

    def _recompute(self, ks: KeyInfo, recomputing: set) -> Outgoing:
        """Run ``ks``'s task again; its futures show ``pending`` until it finishes."""
        if ks.waiting_on is NONE:
            ks.waiting_on = set()
        ks.state = "waiting"
        ks.waiting_on.update(d for d in ks.deps if d in recomputing or
                             self.keys[d].state != "memory")
        self._emit_key(ks)
        out = self._notify(ks)
        for dep_key in list(ks.dependents):  # tasks that would read it wait for it again
            dks = self.keys.get(dep_key)
            if dks is not None and dks.state in ("waiting", "processing"):
                if dks.processing_on in self.workers:
                    self.workers[dks.processing_on].processing.discard(dep_key)
                dks.state, dks.processing_on = "waiting", None
                dks.waiting_on.add(ks.key)
        return out + (self._schedule(ks) if not ks.waiting_on else [])

    def _retry_task(self, ks: KeyInfo, death: str) -> Outgoing:
        """A task whose worker died while running it runs elsewhere, a few times at most.

        A task that kills every worker it runs on (it exhausts memory, say) would
        otherwise take the whole cluster down, one replacement after another.
        """
        ks.state, ks.processing_on = "waiting", None
        ks.deaths += 1
        if ks.deaths > ALLOWED_FAILURES:
            return self._fail(ks, KilledWorkerError(
                f"task {ks.key!r} was running on {ks.deaths} workers that died, the last "
                f"{death}: it may be what kills them (memory?); it is not retried again"), "")
        out = self._schedule(ks)
        self._emit_key(ks)  # rerun elsewhere (or waiting): no longer running
        return out

    # ------------------------------------------------------------ standing broadcasts ---
    def _make_standing(self, ks: KeyInfo, workers) -> None:
        names = None if workers is None else self._names_of(workers)
        if ks.standing and (ks.broadcast_names is None or names is None):
            names = None  # broadcast to everyone once: it stays so
        elif ks.standing:
            names |= ks.broadcast_names
        ks.standing, ks.broadcast_names = True, names
        self.standing.add(ks.key)

    def _inherit_broadcasts(self, ws: WorkerInfo) -> Outgoing:
        """A replacement is allowed whatever the worker it replaces was allowed."""
        for key in self.standing:
            names = self.keys[key].broadcast_names
            if names is not None and ws.replaces in names:
                names.add(ws.name)
        return []

    def _inherit_restrictions(self, ws: WorkerInfo) -> None:
        """Tasks restricted to the worker ``ws`` replaces may run on ``ws``.

        Replacements get a new name and address; without this a task submitted with
        ``workers=[the dead one]`` (or whose result must be recomputed there) would wait
        for an address that never comes back.
        """
        old = self.departed.get(ws.replaces) if ws.replaces else None
        if old is None:
            return
        for ks in self.keys.values():
            if ks.restrictions and old in ks.restrictions:
                ks.restrictions.add(ws.address)

    def _top_up_broadcasts(self, ws: WorkerInfo, keys=None) -> Outgoing:
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

    def acquired(self, address: str, fetched: dict, failed: list) -> Outgoing:
        """A worker fetched standing broadcasts (``{key: nbytes}``); ``failed`` it could not."""
        ws = self.workers.get(address)
        if ws is not None:
            ws.acquiring.difference_update(fetched)
            ws.acquiring.difference_update(failed)
        return self.add_replicas(address, fetched)
