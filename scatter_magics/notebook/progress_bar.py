"""Progress of a long ``%scatter`` or ``%gather``: bytes done, rate and time left.

A :class:`ProgressBar` is the ``progress(stage, done, total)`` callback of the backend
interface (``progress.Progress``) and a context manager around the operation. Nothing
shows for work that ends within ``delay`` seconds (0.5 by default); after that a bar
appears — an ipywidgets bar in a kernel, a line of text on stderr in a terminal — and
is redrawn ten times a second by one shared drawing thread, even while no report
arrives (one large transfer reports only at its end). When the work ends the bar
settles on one line saying what happened; on Ctrl-C it says where it stopped.

>>> import io
>>> out = io.StringIO()
>>> with ProgressBar("%scatter x", view=TextView(out), delay=0) as progress:
...     progress("hash", 2**20, 2**20)
>>> out.getvalue().splitlines()[-1].strip()             # doctest: +ELLIPSIS
'%scatter x: done in ... s, 1 MiB hashed'
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
from typing import TextIO

from ..keys import random_token
from ..progress_callback import reports_progress
from ..sizes import format_bytes

logger = logging.getLogger(__name__)

DELAY = 0.5  # seconds of work before a bar appears: shorter work shows nothing
INTERVAL = 0.1  # seconds between redraws
TICK = 0.05  # seconds between the drawing thread's looks at the bars
# Seconds the drawing thread waits for another bar before it ends. Starting it again
# took ~65 us here, against ~4 us for a bar while it runs: magics a few seconds apart
# (every %scatter and %gather on Dask has a bar) find it running.
IDLE_EXIT = 5.0
# Bytes of data that cannot make a scatter last DELAY: 64 KiB is hashed in ~10 us and
# crosses even a 1 MB/s link in 65 ms, so such a %scatter gets no bar at all.
SMALL = 64 * 2**10

# What each stage of progress.Progress is called on screen, and its past tense.
STAGES = {
    "hash": ("hashing", "hashed"),
    "serialize": ("serializing", "serialized"),
    "copy": ("copying into shared memory", "copied"),
    "transfer": ("transferring", "transferred"),
    "wait": ("waiting for tasks", "waited for"),
    "start": ("starting the cluster", "started"),
    # the whole operation, for an engine that cannot tell its stages apart (Dask)
    "scatter": ("scattering", "scattered"),
    "gather": ("gathering", "gathered"),
}


class ProgressBar:
    """The ``progress`` callback for one scatter or gather, and what draws it.

    ``view`` draws (:class:`WidgetView` or :class:`TextView`, as :func:`view_for` picks),
    or ``make_view()`` makes it when the bar first shows (most calls end before ``delay``;
    a widget view is three ipywidgets and their comms). Reports may come from any thread
    and only record; the shared drawing thread (:class:`_Ticker`) shows and redraws the
    bar, and the context's exit settles it.
    """

    reports = True  # it hears reports (NoProgress does not)

    def __init__(self, what: str, view=None, *, make_view=None, delay: float = DELAY,
                 interval: float = INTERVAL):
        if (view is None) == (make_view is None):
            raise TypeError("ProgressBar takes a view or make_view, one of them")
        self.what, self._view, self._make_view = what, view, make_view
        self.delay, self.interval = delay, interval
        self._lock = threading.Lock()  # the reported state
        self._draw_lock = threading.Lock()  # the view: drawn by the ticker, settled by exit
        # stage -> [done, total, when it began]; stages may overlap (a large value is
        # copied into shared memory while it is hashed), the bar shows the newest.
        self._stages: dict[str, list] = {}
        self._stage: str | None = None
        self._started = self._next_draw = 0.0  # set by __enter__
        self._context: contextvars.Context | None = None
        self._settled = False
        self._ended: tuple[type | None, float] | None = None  # how and after how long
        self._quiet = False  # nothing more will be reported: do not start showing now
        self.shown = False

    @property
    def view(self):  # made by make_view when first drawn
        if self._view is None:
            self._view = self._make_view()
        return self._view

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        with self._lock:
            entry = self._stages.get(stage)
            if entry is None:
                self._stages[stage] = [done, total, time.monotonic()]
                self._stage = stage
            else:
                entry[0], entry[1] = done, total

    def __enter__(self) -> "ProgressBar":
        self._started = time.monotonic()
        self._next_draw = self._started + self.delay
        # The bar is drawn in a copy of this context: in ipykernel 7 the cell's parent
        # header lives in a ContextVar, so the bar shows in this cell.
        self._context = contextvars.copy_context()
        _TICKER.add(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _TICKER.remove(self)
        with self._draw_lock:
            self._settled = True
            elapsed = time.monotonic() - self._started
            self._ended = (exc_type, elapsed)
            if not (self.shown or self._quiet) and elapsed >= self.delay \
                    and self._stage != "start":
                # The ticker had no turn: show it now, to settle it.
                self.view.show(*self.line())
                self.shown = True
            if self.shown:
                self.view.settle(self.outcome, ok=exc_type is None)

    @property
    def outcome(self) -> str | None:
        """The settled line, once the context exited (worded only when asked: most
        work ends unseen, and then nobody reads it)."""
        if self._ended is None:
            return None
        exc_type, elapsed = self._ended
        if exc_type is None:
            return f"{self.what}: done in {elapsed:.1f} s{self._summary()}"
        if issubclass(exc_type, KeyboardInterrupt):
            return f"{self.what}: interrupted after {elapsed:.1f} s{self._where()}"
        return f"{self.what}: failed after {elapsed:.1f} s{self._where()}"

    def restart_clock(self) -> None:
        """Count ``delay`` from now: what came before (starting a cluster) was not the
        data's work, and a quick scatter on a fresh cluster shows no bar."""
        with self._draw_lock:
            if not self.shown:
                self._started = time.monotonic()
                self._next_draw = self._started + self.delay

    def quiet(self) -> None:
        """Nothing more will be reported (the engine cannot): a bar not shown yet stays
        hidden rather than stand still; one already shown stays and settles."""
        with self._draw_lock:
            self._quiet = not self.shown

    def tick(self) -> None:
        """Show the bar once ``delay`` has passed, then redraw it every ``interval``.

        Not while a cluster starts: that is not the data's work (see restart_clock)."""
        now = time.monotonic()
        if now < self._next_draw or not self.shown and (self._quiet or self._stage == "start"):
            return
        with self._draw_lock:
            if self._settled:
                return
            self._context.run(self._draw, *self.line())
            self._next_draw = now + self.interval

    def _draw(self, line: str, fraction: float | None) -> None:
        if self.shown:
            self.view.update(line, fraction)
        else:
            self.view.show(line, fraction)
            self.shown = True

    def line(self) -> tuple[str, float | None]:
        """What the bar says now, and how full it is (None: unknown)."""
        with self._lock:
            stage = self._stage
            done, total, since = self._stages[stage] if stage else (0, None, 0.0)
        if stage is None:
            return f"{self.what}: starting", None
        doing = STAGES.get(stage, (stage, stage))[0]
        elapsed = max(time.monotonic() - since, 1e-6)
        if done is None:  # the engine cannot count: the total, if known, and the time
            amount = f" {format_bytes(total)}" if total else ""
            return f"{self.what}: {doing}{amount} · {elapsed:.0f} s so far", None
        if stage == "wait":
            amount = f"{done} / {total} futures" if total else f"{done} futures"
            rate = ""
        else:
            amount = format_bytes(done) + (f" / {format_bytes(total)}" if total else "")
            rate = f" · {format_bytes(int(done / elapsed))}/s" if done else ""
        if total and done:
            left = f" · {max(0.0, (total - done) * elapsed / done):.0f} s left"
        else:  # nothing measured yet (one large message reports only at its end)
            left = f" · {elapsed:.0f} s so far"
        fraction = min(1.0, done / total) if total else None
        return f"{self.what}: {doing} {amount}{rate}{left}", fraction

    def _summary(self) -> str:
        with self._lock:
            finished = {stage: entry[0] for stage, entry in self._stages.items()}
        parts = [f"{format_bytes(n)} {STAGES.get(stage, (stage, stage))[1]}"
                 for stage, n in finished.items()
                 if stage in ("hash", "copy", "transfer", "scatter", "gather") and n]
        if finished.get("wait"):
            parts.insert(0, f"{finished['wait']} futures waited for")
        if "start" in finished:
            parts.insert(0, "cluster started")
        return ", " + ", ".join(parts) if parts else ""

    def _where(self) -> str:
        with self._lock:
            stage = self._stage
        return f" while {STAGES.get(stage, (stage,))[0]}" if stage else ""


class NoProgress:
    """Stands in for a :class:`ProgressBar` where no bar could ever show: it hears no
    reports, draws nothing and starts no thread. Use the one :data:`NO_PROGRESS`."""

    reports = False
    shown = False
    outcome = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        pass

    def __enter__(self) -> "NoProgress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        pass

    def restart_clock(self) -> None:
        pass

    def quiet(self) -> None:
        pass


NO_PROGRESS = NoProgress()


class _Ticker:
    """The one thread that draws every bar in progress.

    A thread per ``%scatter`` cost about 250 us to start and join here, as much as a
    whole small scatter; this one starts with the first bar and ends by itself after
    :data:`IDLE_EXIT` seconds without one, so nothing is left running.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bars: list[ProgressBar] = []
        self._thread: threading.Thread | None = None

    def add(self, bar: ProgressBar) -> None:
        with self._lock:
            self._bars.append(bar)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="scatter-magics-progress")
                self._thread.start()

    def remove(self, bar: ProgressBar) -> None:
        with self._lock:
            if bar in self._bars:
                self._bars.remove(bar)

    def _run(self) -> None:
        idle_since = None
        while True:
            with self._lock:
                bars, now = list(self._bars), time.monotonic()
                if bars:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= IDLE_EXIT:
                    self._thread = None
                    return
            for bar in bars:
                try:
                    bar.tick()
                except Exception:  # a broken front end must not stop every other bar
                    logger.exception("could not draw the progress of %s", bar.what)
            time.sleep(TICK)


_TICKER = _Ticker()


class TextView:
    """One line of text on a terminal, redrawn in place (``\\r``); a newline when settled."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._last = 0

    def _bar(self, fraction: float | None) -> str:
        if fraction is None:
            return ""
        filled = round(fraction * self.width)
        return "[" + "#" * filled + "." * (self.width - filled) + "] "

    def _write(self, text: str, end: str = "") -> None:
        pad = " " * max(0, self._last - len(text))
        self.stream.write("\r" + text + pad + end)
        self.stream.flush()
        self._last = len(text)

    def show(self, line: str, fraction: float | None) -> None:
        self._write(self._bar(fraction) + line)

    update = show

    def settle(self, line: str, ok: bool) -> None:
        self._write(line, end="\n")


class WidgetView:
    """An ipywidgets progress bar with a label, displayed in the running cell.

    Its output also carries the line as ``text/plain``, updated when it settles, so a
    saved notebook seen without widgets (nbconvert, GitHub) still says what happened.
    ``publish(bundle, display_id, update)`` shows or replaces the output (IPython's
    ``display``/``update_display`` by default).
    """

    def __init__(self, publish=None):
        import ipywidgets

        self._publish = publish or _publish
        self._display_id: str | None = None
        self.bar = ipywidgets.FloatProgress(value=0.0, min=0.0, max=1.0,
                                            layout=ipywidgets.Layout(width="240px"))
        self.label = ipywidgets.Label(value="")
        self.box = ipywidgets.HBox([self.bar, self.label])
        self.box.add_class("sm-progress")

    def _bundle(self, line: str) -> dict:
        data = self.box._repr_mimebundle_()
        data["text/plain"] = line
        return data

    def show(self, line: str, fraction: float | None) -> None:
        self.update(line, fraction)
        self._display_id = random_token()
        self._publish(self._bundle(line), self._display_id, False)

    def update(self, line: str, fraction: float | None) -> None:
        with self.box.hold_sync():
            self.label.value = line
            # An unknown total shows as a striped, half-full bar: work, but no measure.
            self.bar.bar_style = "info" if fraction is None else ""
            self.bar.value = 0.5 if fraction is None else fraction

    def settle(self, line: str, ok: bool) -> None:
        """Fill the bar (green) or stop it (red) and say what happened; the output's
        ``text/plain`` becomes that line, for pages shown without widgets."""
        with self.box.hold_sync():
            self.label.value = line
            self.bar.value = 1.0 if ok else self.bar.value
            self.bar.bar_style = "success" if ok else "danger"
        if self._display_id is not None:
            self._publish(self._bundle(line), self._display_id, True)


def _publish(bundle: dict, display_id: str, update: bool) -> None:
    from IPython.display import display, update_display

    (update_display if update else display)(bundle, raw=True, display_id=display_id)


def estimate_nbytes(values) -> int | None:
    """The bytes hashing ``values`` will read, if every one says (arrays, bytes); else None."""
    total = 0
    for value in values:
        n = getattr(value, "nbytes", None)
        if n is None and isinstance(value, (bytes, bytearray)):
            n = len(value)
        if not isinstance(n, int):
            return None
        total += n
    return total


def known_small(values) -> bool:
    """Whether ``values`` are known to hold less than :data:`SMALL` bytes in all: numbers,
    ``None``, short text and bytes, and arrays whose ``nbytes`` counts every byte (not
    an array of Python objects, whose ``nbytes`` counts only pointers). Anything else
    (a list, a DataFrame) is not known, so it is not small.

    >>> known_small([1, 2.5, "abc", None]), known_small([list(range(10))])
    (True, False)
    """
    total = 0
    for value in values:
        if value is None or isinstance(value, (float, complex)):
            total += 32
        elif isinstance(value, int):
            total += 32 + value.bit_length() // 8
        elif isinstance(value, (bytes, bytearray)):
            total += len(value)
        elif isinstance(value, str):
            total += 4 * len(value)  # at most 4 bytes a character, as UTF-8
        else:
            n, dtype = getattr(value, "nbytes", None), getattr(value, "dtype", None)
            if not isinstance(n, int) or dtype is not None and getattr(dtype, "hasobject", True):
                return False
            total += n
        if total >= SMALL:
            return False
    return True


def view_for(shell):
    """A widget bar in a kernel (it has a widget front end), text on stderr elsewhere."""
    if getattr(shell, "kernel", None) is not None:
        return WidgetView()
    return TextView()


def scatter_bar(what: str, running, values: dict, hash: bool, *, make_view, delay: float):
    """A bar for a %scatter that may take long enough to show one; else ``NO_PROGRESS``.

    On an engine whose small calls are quick (``quick_small_calls``: ours, ~0.1 ms),
    data known to be small (:func:`known_small`) is hashed and sent in far less than the
    bar's delay, and a bar (~4 µs, ~65 µs more when its drawing thread must start) would
    be a visible share of the call; so would one nothing can report to. Elsewhere (Dask:
    ~3 ms a round trip, seconds for a list of a few MiB) every %scatter gets one, shown
    by time: it appears after ``delay``, whatever the size. ``running`` is None when the
    scatter will start a cluster, which always gets one. ``make_view()`` makes its view,
    if it shows.
    """
    if running is not None and getattr(running, "quick_small_calls", False) and (
            known_small(values.values()) or not (hash or reports_progress(running.scatter))):
        return NO_PROGRESS
    return ProgressBar(what, make_view=make_view, delay=delay)


def gather_bar(what: str, backend, *, make_view, delay: float):
    """A bar for a %gather, if its engine reports progress (a gather of small data may
    still wait long for its tasks, so its size does not decide)."""
    if not reports_progress(backend.gather):
        return NO_PROGRESS
    return ProgressBar(what, make_view=make_view, delay=delay)
