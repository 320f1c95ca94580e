"""A small scatter that returns before the loop thread has sent it.

A scatter on the calling thread hands its message to the loop thread and, the usual
way, sleeps until the loop answers: two thread wake-ups per call. On a VM whose idle
virtual CPU halts, a wake-up on the other core costs 50-100 us (an inter-processor
interrupt through the hypervisor); on the same core, a plain context switch. Measured
on this 2-core Firecracker VM, a loop of ``gather(scatter(i))`` took 85 us per call with
the notebook and loop threads pinned to one core and 280 us pinned to two; left to
the kernel it flipped between the two after a thousand calls or so, which was the
"bimodal" round trip of benchmarks/RESULTS.md.

For a few small values nothing the caller gets back depends on the loop's answer:
their futures hold the pickles (gather answers from them) and are finished. So the
message is queued for the loop and the call returns at once: the loop thread wakes
on its own, and the caller never waits for it. Order is kept: the loop runs queued
callbacks in order, and the scatter is recorded in its first step (no await
suspends it while a worker is connected), so any later request of this client —
a submit using the futures, a gather of another key, the release of these ones —
reaches the scheduler after it. If it fails there anyway (every worker left in
between, and none came back in time), the futures turn ``lost`` with that error.

Submits go ahead the same way (:meth:`SendAhead.submit`): a task's future holds nothing
the scheduler has to answer, so ``submit`` and ``map`` queue the task records and return.
The records queued before the loop's next turn travel as one ``submit`` message (one
hand-over, one scheduler call for a burst of 1,000 submits: 1,000 trivial tasks took
114 ms waiting for the loop per submit, 23-34 ms this way, RT, benchmarks/RESULTS.md),
in order with the client's scatters and other requests. If the scheduler refuses
them, each future turns ``error`` with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from typing import Awaitable, Callable

from ...errors import FutureLostError
from .link import LocalSchedulerLink

logger = logging.getLogger(__name__)

# Values per scatter sent ahead: a few small ones, whose hand-over costs more than the
# loop's work for them. A long list's work on the loop (25 ms for 10,000 values)
# dwarfs the hand-over, and running it in the background would only take the GIL from
# the caller's next statement.
SEND_AHEAD_LIMIT = 32
# A scattered value whose pickle is this small (and has no out-of-band buffers) is also
# kept by the client while a Future holds its key, and gather answers from that copy
# without a trip to the loop thread and a worker (Ray keeps small objects in the owner's
# process the same way). 16 KiB covers numbers, short strings and small containers.
LOCAL_COPY_LIMIT = 1 << 14

# Scatters sent ahead and not yet done on the loop, per client: past this many, the
# next one waits the usual way (behind all of them, the loop runs in order). Without
# it a tight loop of scatters outruns the loop thread, which gets the GIL for only
# one switch interval in two, and the queue grows without end.
MAX_AHEAD = 8


def kept_locally(serialized) -> bool:
    """The client keeps this value's pickle while a Future holds its key."""
    return not serialized.buffers and len(serialized.header) <= LOCAL_COPY_LIMIT


class SendAhead:
    """One client's scatters sent ahead (see the module's docstring).

    >>> ahead = SendAhead(loop_thread, link)                    # doctest: +SKIP
    >>> ahead.send(payload, types, states, lambda: coroutine())  # doctest: +SKIP
    True
    """

    def __init__(self, loop_thread, link):
        self.loop_thread, self.link = loop_thread, link
        # One entry per scatter queued and not done: appended by the caller's thread,
        # taken by the loop's (a deque's append and popleft are atomic; a counter's
        # += is not).
        self._queued: collections.deque = collections.deque()
        self._tasks: set[asyncio.Task] = set()  # asyncio keeps only weak references
        self._keys: dict = {}  # key → scatters sent ahead with it and not recorded yet
        self._keys_lock = threading.Lock()
        # The batch of submits still open: (task records, their states), queued for the
        # loop's next turn. A scatter sent ahead closes it, so that submits after the
        # scatter go after it, in a batch of their own.
        self._open_batch: list | None = None
        self._submits_lock = threading.Lock()

    def in_flight(self, key) -> bool:
        """A scatter sent ahead with ``key`` is not recorded yet: release it after that.

        A release timer that comes due in the loop iteration that starts the scatter's
        task can run before the task's first step (queued after it), and a scatter that
        has to wait (no worker connected, a worker's connection closed meanwhile) takes
        longer still. A release that overtook it would find no key to release, and the
        key would then stay for good (test_lifecycle's test_release_is_explicit_too
        failed once that way).
        """
        return key in self._keys

    def after_sent(self, coro: Awaitable):
        """``coro``, run once every scatter sent ahead so far is recorded (or failed).

        For any other request of the client: recording takes one step of the loop, so
        this adds nothing unless a scatter has to wait (no worker connected, a worker's
        connection closed meanwhile); then a submit using its futures would otherwise
        find their keys unknown, and fail as cancelled.
        """
        if not self._queued:
            return coro
        return self._after(coro)

    async def _after(self, coro: Awaitable):
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        return await coro

    def send(self, payload: dict, types: dict, states: list,
             send: Callable[[], Awaitable[None]]) -> bool:
        """Finish ``states`` and queue ``send()`` on the loop, if this scatter may go ahead.

        True: done, the caller returns its futures now. False: nothing was done; the
        caller scatters the waiting way. ``payload`` maps key → Serialized, ``types``
        key → type name; ``states`` are the futures' states (one per key).
        """
        if not (len(self._queued) < MAX_AHEAD and len(payload) <= SEND_AHEAD_LIMIT
                and isinstance(self.link, LocalSchedulerLink) and self.link.scheduler.state.workers
                and all(kept_locally(s) for s in payload.values())
                and all(_settles_here(state) for state in states)):
            return False
        for state in states:
            if state.status == "pending":
                state.finish(types[state.key], payload[state.key].header)
        self._count(payload, +1)
        self._queued.append(None)
        with self._submits_lock:
            # A submit after this scatter may read its keys: it must not join a batch
            # that leaves before the scatter (`x = submit(); y = scatter(1);
            # submit(add, x, y)` found y unknown, and the task cancelled).
            self._open_batch = None
            self.loop_thread.call_soon(self._start, send, list(payload), states)
        return True

    def _count(self, keys, step: int) -> None:
        with self._keys_lock:
            for key in keys:
                count = self._keys.get(key, 0) + step
                if count > 0:
                    self._keys[key] = count
                else:
                    self._keys.pop(key, None)

    def _start(self, send: Callable[[], Awaitable[None]], keys: list, states: list) -> None:
        task = asyncio.get_running_loop().create_task(self._send(send, keys, states))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, send: Callable[[], Awaitable[None]], keys: list, states: list) -> None:
        try:
            await send()
        except Exception as exc:
            logger.debug("a scatter sent ahead failed: %r", exc)
            for state in states:
                if state.status == "finished":
                    error = FutureLostError(f"key {state.key!r} was never stored: {exc!r}")
                    error.__cause__ = exc
                    state.lose(error)
        finally:
            self._count(keys, -1)
            self._queued.popleft()


    # ------------------------------------------------------------ submits ---
    def submit(self, tasks: list, states: list) -> None:
        """Queue ``tasks`` (the ``submit`` message's records) to go at the loop's next
        turn, with every other submit queued meanwhile; ``states`` are their futures'.

        For a synchronous client's submits without ``workers=`` (a restriction naming
        an unknown worker must raise in the caller).
        """
        # Released only once submitted: the tasks' keys, and the keys they read (a release
        # of `client.scatter([1, 2])`'s futures, dropped as soon as `submit(sum, ...)`
        # returns, overtook the submit waiting for the scatter: 2-4 runs in 200 failed).
        self._count(_submitted_keys(tasks), +1)
        with self._submits_lock:
            batch = self._open_batch
            if batch is None:  # one turn of the loop takes everything queued until it runs
                batch = self._open_batch = []
                self._queued.append(None)
                self.loop_thread.call_soon(self._start_submits, batch)
            batch.append((tasks, states))

    def _start_submits(self, batch: list) -> None:
        with self._submits_lock:
            if self._open_batch is batch:
                self._open_batch = None
        tasks = [task for records, _ in batch for task in records]
        states = [state for _, batch_states in batch for state in batch_states]
        # What went ahead before them goes first: a scatter still waiting for a worker
        # holds the inputs these tasks may read.
        earlier = [task for task in self._tasks if not task.done()]
        task = asyncio.get_running_loop().create_task(
            self._send_submits(tasks, states, earlier))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_submits(self, tasks: list, states: list, earlier: list) -> None:
        try:
            if earlier:
                await asyncio.wait(earlier)
            await self.link.request({"op": "submit", "tasks": tasks})
        except Exception as exc:
            logger.debug("submits sent ahead failed: %r", exc)
            for state in states:
                if state.status == "pending":
                    state.set_error(exc, f"the scheduler refused the task: {exc!r}")
        finally:
            self._count(_submitted_keys(tasks), -1)
            self._queued.popleft()


def _submitted_keys(tasks: list) -> list:
    """The keys of ``tasks`` (``submit`` records: key, task, inputs, restrictions) and of
    the inputs they read."""
    keys = [task[0] for task in tasks]
    for task in tasks:
        keys.extend(task[2])
    return keys


def _settles_here(state) -> bool:
    """Made by this scatter and seen by no other thread yet (or finished already)."""
    return state.status == "finished" or (
        state.status == "pending" and state._event is None and not state._callbacks)
