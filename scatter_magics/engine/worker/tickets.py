"""``TaskTicket``: a task's place on a worker, and whether the scheduler may take it back.

The scheduler may ask for a task it sent here (work stealing: a ``steal`` op) to run it
on a worker that is idle. It gets it only while no thread has taken it: the ticket says
where the task is, under a lock shared by the event loop (which queues it and answers
the scheduler) and the task thread (which starts it).

>>> ticket = TaskTicket()
>>> ticket.queue()  # its inputs are here: it waits for a thread
True
>>> ticket.withdraw()  # the scheduler asks for it back, in time
'queued'
>>> ticket.begin()  # the thread that reaches it later leaves it alone
False
"""

from __future__ import annotations

import threading


class TaskTicket:
    """``state``: ``fetching`` its inputs, ``queued`` for a thread, ``running``, or
    ``withdrawn`` (given back to the scheduler). ``fetched``: ``{key: nbytes}`` of the
    inputs it copied from peers, which the scheduler learns with the task's end (or its
    withdrawal)."""

    __slots__ = ("state", "fetched", "_lock")

    def __init__(self):
        self.state = "fetching"
        self.fetched: dict = {}
        self._lock = threading.Lock()

    def queue(self) -> bool:
        """Its inputs arrived: it waits for a thread. False if it was withdrawn meanwhile."""
        return self._move("fetching", "queued")

    def begin(self) -> bool:
        """A thread takes it. False if it was withdrawn: the thread skips it."""
        return self._move("queued", "running")

    def withdraw(self) -> str:
        """Give it back if no thread has it; returns the state it was in (``fetching``,
        ``queued``: given back; ``running`` or ``withdrawn``: not)."""
        with self._lock:
            was = self.state
            if was in ("fetching", "queued"):
                self.state = "withdrawn"
            return was

    def _move(self, expected: str, new: str) -> bool:
        with self._lock:
            if self.state != expected:
                return False
            self.state = new
            return True


class TicketBook:
    """The tickets of the tasks sent to this worker and not yet done, by key, and the
    worker's answers to the scheduler's ``steal`` requests."""

    def __init__(self):
        self._tickets: dict[str, TaskTicket] = {}

    def __len__(self) -> int:
        return len(self._tickets)

    def issue(self, key: str) -> TaskTicket:
        """The ticket of a task just sent here (before anything awaits: a steal right
        behind it finds it)."""
        ticket = self._tickets[key] = TaskTicket()
        return ticket

    def forget(self, key: str, ticket: TaskTicket) -> None:
        if self._tickets.get(key) is ticket:
            del self._tickets[key]

    def steal(self, key: str) -> dict | None:
        """The ``steal-response`` to send now, or None: the task is fetching its inputs,
        and :meth:`give_back` answers when the fetch is over."""
        ticket = self._tickets.get(key)
        was = ticket.withdraw() if ticket is not None else None
        if was == "queued":
            return self.give_back(key, ticket)
        if was == "fetching":
            return None
        # running, done or unknown: kept where it is
        return {"op": "steal-response", "key": key, "withdrawn": False, "fetched": {}}

    def give_back(self, key: str, ticket: TaskTicket) -> dict:
        """The ``steal-response`` of a withdrawn task, with the inputs it copied here."""
        self.forget(key, ticket)
        return {"op": "steal-response", "key": key, "withdrawn": True,
                "fetched": ticket.fetched}
