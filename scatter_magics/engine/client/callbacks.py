"""The thread that runs ``Future.add_done_callback`` callbacks for one client.

Callbacks run one at a time, in the order their futures finish, on a thread of their own
(started on first use), never on the loop thread: a callback may block, or call the
client (``f.result()``), which the loop thread cannot wait for.

>>> callbacks = DoneCallbacks()
>>> callbacks.add(future, lambda f: print(f.result()))      # doctest: +SKIP
>>> callbacks.close()   # at the client's close: waits for a callback still running
"""

from __future__ import annotations

import concurrent.futures
from typing import Callable

from ...errors import ClientClosedError


class DoneCallbacks:
    """``add(future, fn)``: ``fn(future)`` once done; ``close()`` waits for those running."""

    def __init__(self):
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def add(self, future, fn: Callable) -> None:
        """Call ``fn(future)`` on the callbacks' thread once ``future`` is done."""
        client = future.client
        if client.status != "running":  # its futures exist once started: closed, then
            raise ClientClosedError(f"this Client is {client.status}; create a new Client()")
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="future-callbacks")
        executor = self._executor
        client.loop.call_soon(future._state.on_done, lambda state: executor.submit(fn, future))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
