"""What the scheduler sends: one message to a peer that may have left, and delete-keys
merged before they go (``Scheduler.apply``)."""

from __future__ import annotations

import logging

from ...errors import CommClosedError

logger = logging.getLogger(__name__)


def send_one(link, msg: dict) -> None:
    """Send to a worker or client that may have left meanwhile (then there is no one to tell)."""
    if link is None:
        return
    try:
        # One-way: it may go at the end of this turn of the loop with the others
        # (Channel.send_soon), so a burst of compute messages to a worker, or of
        # key-updates to a remote client, is one message and one write. (An in-process
        # client's link takes it at once.)
        getattr(link, "send_soon", link.send)(msg)
    except CommClosedError:
        logger.debug("peer left before %r", msg["op"])


def merge_deletes(outgoing: list) -> list:
    """``outgoing`` with each destination's adjacent delete-keys merged into one message.

    Releasing a 10,000-element list made 10,000 delete-keys, a socket write each (~0.1 s
    of the loop). Only the order of messages to one destination matters: a merge never
    moves a delete past another message to the same worker.
    """
    merged: list = []
    open_delete: dict = {}  # destination → its delete-keys still accepting keys
    for destination, msg in outgoing:
        if msg["op"] != "delete-keys":
            open_delete.pop(destination, None)
        elif destination in open_delete:
            open_delete[destination]["keys"].extend(msg["keys"])
            continue
        else:
            msg = open_delete[destination] = {"op": "delete-keys", "keys": list(msg["keys"])}
        merged.append((destination, msg))
    return merged
