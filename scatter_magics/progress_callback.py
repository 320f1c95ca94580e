"""The progress callback: how an engine tells whoever watches how far a scatter or gather got.

An engine's ``scatter`` and ``gather`` may take ``progress=``, a :data:`Progress`; the
magics pass a ``ProgressBar`` (``notebook/progress_bar.py``), code that nobody watches
passes nothing.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

Progress = Callable[[str, int, "int | None"], None]
"""``progress(stage, done, total)``: how far a scatter or gather has got, for progress bars.

Stages, in order: ``"hash"`` (content hashing for ``hash=True`` keys), ``"serialize"``,
``"copy"`` (into shared memory), ``"transfer"`` (to or from workers), all counted in bytes;
``"wait"`` (a gather waiting for tasks) counts futures. An engine that cannot tell these
apart reports the whole operation as one stage, ``"scatter"`` or ``"gather"``, in bytes.
``done`` only grows within a stage, and is None while the engine cannot count how far it
got (the bar then shows the total, if known, and the time so far); ``total`` is None when
not known in advance. Called on any thread, so it must be quick and thread-safe; an
engine reports the stages it has, as often as it can afford.
"""


def no_progress(stage: str, done: int, total: int | None) -> None:
    """A :data:`Progress` that reports nowhere (nobody watches)."""


def counter(report: Progress, stage: str, total: int | None = None):
    """``add(n)``: count ``n`` more done in ``stage`` and report the running total."""
    done = 0

    def add(n: int) -> None:
        nonlocal done
        done += n
        report(stage, done, total)
    return add


def progress_option(method: Callable, progress: Progress | None) -> dict:
    """``{"progress": progress}`` if ``method`` (an adapter's scatter or gather) takes it.

    The hook is optional for adapters: one that has no way to report (or predates the
    hook) leaves ``progress`` out of its signature, and callers then get no reports
    rather than a TypeError.

    >>> progress_option(lambda items, *, progress=None: None, print)
    {'progress': <built-in function print>}
    >>> progress_option(lambda items, *, timeout: None, print)
    {}
    """
    if progress is None or not reports_progress(method):
        return {}
    return {"progress": progress}


def reports_progress(method: Callable) -> bool:
    """Whether ``method`` takes ``progress=`` (by name, or through ``**kwargs``).

    Read once per function: ``inspect.signature`` took ~15 µs, paid twice by every
    ``%scatter``/``%gather`` pair, and a function's signature does not change.
    """
    function = getattr(method, "__func__", method)  # a bound method: its function
    try:
        return _takes_progress(function)
    except TypeError:  # not hashable: read it every time
        return _takes_progress.__wrapped__(function)


@functools.lru_cache(maxsize=64)
def _takes_progress(function: Callable) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature to read: do not guess
        return False
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    return "progress" in parameters or takes_any
