"""``progress(futures)``: how many of some futures are done, as Dask's ``progress``.

In a notebook it returns at once and leaves a live bar in the cell (our progress bar
widget, one per kind of task with ``multi=True``: ``inc``, ``add``, ...); in a terminal it
draws one line on stderr and returns when every future is done. A future that fails
turns its bar red. Works with the futures of any engine (it only counts them done).

>>> import io
>>> progress([], notebook=False, stream=io.StringIO())
"""

from __future__ import annotations

import threading

from ..keys import key_text
from ..structure import futures_of
from .progress_bar import ProgressBar, TextView, WidgetView

INTERVAL = 0.1  # s between redraws, as the %scatter bar


def progress(*futures, notebook: bool | None = None, multi: bool = True,
             complete: bool = True, group_by="prefix", stream=None, **kwargs) -> None:
    """Show how many of ``futures`` (nested containers too) are done.

    ``notebook``: draw widgets (default: when running in a kernel) or a line of text on
    ``stream`` (stderr). ``multi``: one bar per task name (the key's prefix), in a
    notebook. ``complete=False`` counts only the futures not done yet. ``group_by`` is
    Dask's: ``"prefix"`` (the default) or a function of a key.
    """
    found = futures_of(list(futures))
    if not complete:
        found = [f for f in found if not f.done()]
    if group_by not in ("prefix", "spans") and not callable(group_by):
        raise ValueError("`group_by` should be 'spans', 'prefix', or a Callable")
    if notebook is None:
        notebook = _in_kernel()
    if not notebook:
        bar = FuturesBar("progress", found, TextView(stream))
        bar.wait()
        return None
    name_of = group_by if callable(group_by) else key_prefix
    groups: dict[str, list] = {}
    for future in found:
        groups.setdefault(name_of(future.key) if multi else "progress", []).append(future)
    for name, group in groups.items():
        FuturesBar(name, group, WidgetView())
    return None


class FuturesBar:
    """One bar counting ``futures`` done, drawn by ``view``; it settles with the last."""

    def __init__(self, what: str, futures: list, view):
        self._lock = threading.Lock()
        self._left = len(futures)
        self._failed: type | None = None
        self._settled = False
        self._all_done = threading.Event()  # set once the bar shows how it ended
        self._total = len(futures)
        self._bar = ProgressBar(what, view, delay=0, interval=INTERVAL)
        self._bar.__enter__()
        self._bar("wait", 0, self._total)
        if not futures:
            self._settle()
        for future in futures:
            future.add_done_callback(self._one_done)

    def _one_done(self, future) -> None:
        failed = future.status in ("error", "lost", "cancelled")
        with self._lock:
            self._left -= 1
            left = self._left
            if failed and self._failed is None:
                self._failed = RuntimeError
        self._bar("wait", self._total - left, self._total)
        if left == 0:
            self._settle()

    def _settle(self, how: type | None = None) -> None:
        with self._lock:
            if self._settled:
                return  # settled already (interrupted, then the last one came)
            self._settled = True
        self._bar.__exit__(how or self._failed, None, None)
        self._all_done.set()  # after: wait() returns with the bar drawn as it ends

    def wait(self) -> None:
        """Until every future is done; Ctrl-C stops waiting and says where it stopped."""
        try:
            while not self._all_done.wait(INTERVAL):
                pass
        except KeyboardInterrupt:
            self._settle(KeyboardInterrupt)
            raise


def key_prefix(key) -> str:
    """``"inc"`` for ``"inc-5d41…"``, ``("x", 0)``'s ``"x"``: what kind of task it is."""
    text = key[0] if isinstance(key, tuple) and key else key
    text = key_text(text)
    head, sep, tail = text.rpartition("-")
    return head if sep and len(tail) >= 8 else text


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return getattr(shell, "kernel", None) is not None

