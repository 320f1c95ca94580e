"""What happens to keys when workers die or are replaced: recomputing, retrying, restrictions.

- A computed key whose every holder died is recomputed from its task when its inputs
  remain; scattered data has no task and is lost, with a message saying what to do.
- A task whose worker dies while running it runs elsewhere, at most ``ALLOWED_FAILURES``
  times (Dask's ``KilledWorker``).
- A replacement may run the tasks restricted to the worker it replaces.

The same calling convention as :class:`~scatter_magics.engine.scheduler.state.SchedulerState`:
plain synchronous methods that return the messages to send. See ``docs/internals.md``,
"Recompute".

>>> from scatter_magics.engine.scheduler.state import SchedulerState
>>> state = SchedulerState()
>>> _ = state.add_worker("tcp://a:1", "worker-0", 1, memory_limit=100)
>>> _ = state.add_data("client-1", {"x": ["tcp://a:1"]}, {"x": 8}, {"x": "int"})
>>> _ = state.submit("client-1", "y", b"task", {"x"}, None)
>>> _ = state.task_finished("tcp://a:1", "y", 8, "int")
>>> out = state.recovery.recover([state.keys["x"], state.keys["y"]], "worker-0 died")
>>> [(msg["key"], msg["status"]) for _, msg in out]  # y's input is lost: y cannot be redone
[('x', 'lost'), ('y', 'lost')]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import KilledWorkerError
from .records import NONE, KeyInfo, Outgoing, WorkerInfo

if TYPE_CHECKING:
    from .events import EventLog
    from .tasks import TaskMachine

ALLOWED_FAILURES = 3  # deaths of a worker running a task before the task fails (as Dask)


class Recovery:
    """Recompute, retry and inherited restrictions, through the task machine."""

    def __init__(self, keys: dict[str, KeyInfo], log: EventLog, tasks: TaskMachine):
        self.keys = keys
        self.log = log
        self.tasks = tasks

    def recover(self, orphaned: list, death: str) -> Outgoing:
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
                out += self.tasks.lose(ks, f"its only holder {death}, and it was "
                                       "scattered data with no other replica: scatter it again "
                                       "(broadcast=True keeps a replica on every worker)")
            else:
                out += self.tasks.lose(ks, f"its only holder {death}, and it cannot be "
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
        self.log.emit_key(ks)
        out = self.tasks.notify(ks)
        for dep_key in list(ks.dependents):  # tasks that would read it wait for it again
            dks = self.keys.get(dep_key)
            if dks is not None and dks.state in ("waiting", "processing"):
                self.tasks.wait_again(dks, ks.key)
        return out + (self.tasks.schedule(ks) if not ks.waiting_on else [])

    def retry_running(self, ws: WorkerInfo, death: str) -> Outgoing:
        """The tasks ``ws`` was running when it died run elsewhere, a few times at most.

        A task that kills every worker it runs on (it exhausts memory, say) would
        otherwise take the whole cluster down, one replacement after another.
        """
        out: Outgoing = []
        for key in ws.processing:
            ks = self.keys.get(key)
            if ks is not None and ks.state == "processing":
                out += self._retry(ks, death)
        return out

    def _retry(self, ks: KeyInfo, death: str) -> Outgoing:
        ks.state, ks.processing_on = "waiting", None
        ks.deaths += 1
        if ks.deaths > ALLOWED_FAILURES:
            return self.tasks.fail(ks, KilledWorkerError(
                f"task {ks.key!r} was running on {ks.deaths} workers that died, the last "
                f"{death}: it may be what kills them (memory?); it is not retried again"), "")
        out = self.tasks.schedule(ks)
        self.log.emit_key(ks)  # rerun elsewhere (or waiting): no longer running
        return out

    def inherit_restrictions(self, ws: WorkerInfo, predecessor: str | None) -> None:
        """Tasks restricted to ``predecessor`` (the address ``ws`` replaces) may run on ``ws``.

        Replacements get a new name and address; without this a task submitted with
        ``workers=[the dead one]`` (or whose result must be recomputed there) would wait
        for an address that never comes back.
        """
        if predecessor is None:
            return
        for ks in self.keys.values():
            if ks.restrictions and predecessor in ks.restrictions:
                ks.restrictions.add(ws.address)
