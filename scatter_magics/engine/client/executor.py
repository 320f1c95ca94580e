"""``Client.get_executor()``: the cluster as a ``concurrent.futures.Executor``, as Dask's.

Code written for a thread or process pool runs on the cluster unchanged:

>>> with client.get_executor() as executor:                       # doctest: +SKIP
...     list(executor.map(abs, [-1, -2]))
[1, 2]

Each call returns a ``concurrent.futures.Future`` that settles when the task does;
cancelling it cancels the task.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import weakref

from .task_options import parse_timedelta

ALLOWED = frozenset({"pure", "workers", "resources", "allow_other_workers", "retries"})


class ClientExecutor(cf.Executor):
    """Submits each call to ``client`` with the given ``submit`` keywords (``pure``,
    ``workers``, ``resources``, ``allow_other_workers``, ``retries``)."""

    def __init__(self, client, **kwargs):
        unknown = set(kwargs) - ALLOWED
        if unknown:
            raise TypeError(f"unsupported arguments to ClientExecutor: {sorted(unknown)}")
        self._client = client
        self._futures: weakref.WeakSet = weakref.WeakSet()
        self._returned: weakref.WeakSet = weakref.WeakSet()  # what submit gave back
        self._shutdown = False
        self._kwargs = kwargs

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        """Run ``fn(*args, **kwargs)`` on the cluster; a ``concurrent.futures.Future``."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future = self._client.submit(fn, *args, **{**self._kwargs, **kwargs})
        self._futures.add(future)
        wrapped = _wrap(future)
        self._returned.add(wrapped)
        return wrapped

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Results of ``fn`` over the iterables, in order; the calls may run in any order.

        ``timeout`` (s, or text: ``"5s"``) bounds the whole iteration
        (``concurrent.futures.TimeoutError``); the calls not yet read are cancelled when
        the iterator is dropped.
        """
        deadline = None if timeout is None else time.monotonic() + parse_timedelta(timeout)
        futures = iter(self._client.map(fn, *iterables, **self._kwargs))

        def results():
            try:
                for future in futures:
                    self._futures.add(future)
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    try:
                        yield future.result(left)
                    except TimeoutError:
                        raise cf.TimeoutError from None
            finally:
                remaining = list(futures)
                self._futures.update(remaining)
                if remaining:
                    self._client.cancel(remaining)
        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits; wait for what was submitted, or (``wait=False``) cancel it."""
        if self._shutdown:
            return
        self._shutdown = True
        futures = list(self._futures)
        if wait and not cancel_futures:
            for future in futures:
                future._state.wait()
            # Each returned future settles on the client's callback thread, after the
            # task: wait for that too, so none is left pending after the with block.
            cf.wait(list(self._returned))
        elif futures:
            self._client.cancel(futures)


def _wrap(future) -> cf.Future:
    """A ``concurrent.futures.Future`` that settles as ``future`` does; cancelling it
    cancels ``future``."""
    out = cf.Future()
    out.add_done_callback(lambda f: f.cancelled() and not future.done() and future.cancel())
    future.add_done_callback(lambda f: _settle(f, out))
    return out


def _settle(future, out: cf.Future) -> None:
    """On the client's callback thread: copy ``future``'s outcome to ``out``."""
    if out.done():
        return
    if future.status == "finished":
        try:
            out.set_result(future.result())
        except BaseException as exc:  # lost between finishing and reading
            out.set_exception(exc)
    elif future.status == "cancelled":
        out.cancel()
        out.set_running_or_notify_cancel()
    else:
        out.set_exception(future.exception())
