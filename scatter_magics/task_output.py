"""What tasks print, shown where a person looks: the notebook cell, or stderr.

Engines pass each batch of a worker's task output (``task_capture.py``'s records:
``{"key", "stream", "text"}``, ``{"key", "stream", "dropped"}``) to :func:`show`, from
their event-loop thread.

- **In a Jupyter kernel** the text goes to the kernel's stdout or stderr, in the cell
  running when it arrives. That is the cell waiting for the task, since a worker sends a
  task's output before its result; or, for output that comes after its cell ended, the
  cell running then. Output that arrives while no cell runs waits (bounded) for the
  next one: a finished cell's output area no longer takes output in JupyterLab. A line
  ``[f-1a2b3c4d on worker-0]`` names the task and its worker whenever a cell shows
  output of another task than just before (ipyparallel marks engines' output alike).
- **Elsewhere** (IPython in a terminal, a script) it goes to stderr, each line marked
  ``[f-1a2b3c4d worker-0]``: stdout may be the program's data.

The kernel is protected as the workers are (``task_capture.py``): at most :data:`RATE`
bytes a second are shown (:data:`BURST` at once) and :data:`HELD` bytes kept for the
next cell; the rest is dropped, and a line says how much, once a second at most.

>>> import io
>>> router = OutputRouter(terminal=io.StringIO())
>>> router.show("worker-0", [{"key": "f-4b4d31504aa145c187b63818", "stream": "stdout",
...                           "text": "hello\\n"}])
>>> router.terminal.getvalue()
'[f-4b4d3150 worker-0] hello\\n'
"""

from __future__ import annotations

import contextvars
import sys
import threading
import time
from collections import Counter

from .keys import key_text, short_key
from .sizes import format_bytes
from .task_capture import RATE as RATE_OF_WORKERS
from .task_capture import SendBudget

RATE = 512 * 2**10  # bytes a second shown in the kernel, on average ...
BURST = 2 * 2**20  # ... and at most at once (Jupyter drops IOPub beyond ~1 MB/s)
HELD = 256 * 2**10  # bytes kept while no cell runs, for the next one
NOTE_EVERY = 1.0  # s between two lines saying output was dropped


class OutputRouter:
    """Where task output goes in this process (one: :data:`ROUTER`); thread-safe.

    ``terminal`` is the stream for output outside a kernel (``sys.stderr`` as it is
    when output comes, by default).
    """

    def __init__(self, terminal=None, rate: float = RATE, burst: float = BURST):
        self.terminal = terminal
        self.budget = SendBudget(rate, burst)  # what may be shown now
        self._lock = threading.RLock()
        self._last: tuple | None = None  # (cell, key, stream) of the last text shown
        self._ends_line: dict[str, bool] = {}  # stream -> its last text ended a line
        self._open_lines: set[tuple] = set()  # terminal: (key, worker, stream) mid-line
        self._dropped: Counter = Counter()  # (key text, worker) -> bytes not shown here
        self._noted = 0.0
        self._held: list[tuple[str, dict]] = []  # (worker, record) for the next cell
        self._held_bytes = 0
        self._cells = _CellWatch()

    def watch(self, shell) -> None:
        """Follow which cell of ``shell`` runs (``%load_ext``, itself run in a cell)."""
        self._cells.watch(shell, self._flush_held)

    def unwatch(self, shell) -> None:
        self._cells.unwatch(shell)

    def show(self, worker: str, records: list[dict]) -> None:
        """Show a batch of ``worker``'s task output (any thread)."""
        kernel = _kernel_streams()
        with self._lock:
            if kernel is None:
                for record in records:
                    self._to_terminal(worker, record)
            elif not self._cells.running(self._flush_held):
                self._hold(worker, records)
            else:
                for record in records:
                    self._to_cell(kernel, worker, record)
            self._note_dropped(kernel)

    # ------------------------------------------------------------ in a kernel ---
    def _to_cell(self, streams: dict, worker: str, record: dict) -> None:
        key, name = key_text(record["key"]), record["stream"]
        stream = streams[name]
        gap = "" if self._ends_line.get(name, True) else "\n"
        if "dropped" in record:  # the worker counts once a second: say it now
            _write(stream, gap + _dropped_line(key, worker, record["dropped"], f"a worker "
                                               f"sends at most {format_bytes(RATE_OF_WORKERS)}/s"))
            self._ends_line[name] = True
            return
        text = record["text"]
        if not self.budget.spend(len(text)):
            self._dropped[(key, worker)] += len(text)
            return
        cell = _cell_of(stream)
        if (cell, key, name) != self._last:
            _write(stream, f"{gap}[{short_key(key)} on {_worker(worker)}]\n")
        _write(stream, text)
        self._last = (cell, key, name)
        self._ends_line[name] = text.endswith("\n")

    def _hold(self, worker: str, records: list[dict]) -> None:
        for record in records:
            size = len(record.get("text", ""))
            if self._held_bytes + size > HELD:
                self._dropped[(key_text(record["key"]), worker)] += size
            else:
                self._held.append((worker, record))
                self._held_bytes += size

    def _flush_held(self) -> None:
        """A cell started (its thread, its context): show what waited for one."""
        kernel = _kernel_streams()
        with self._lock:
            held, self._held, self._held_bytes = self._held, [], 0
            self._last = None  # a new cell: name the task again
            if kernel is not None:
                for worker, record in held:
                    self._to_cell(kernel, worker, record)
                self._note_dropped(kernel)

    # ------------------------------------------------------------ a terminal ---
    def _to_terminal(self, worker: str, record: dict) -> None:
        key = key_text(record["key"])
        stream = self.terminal if self.terminal is not None else sys.stderr
        if "dropped" in record:
            stream.write(_dropped_line(key, worker, record["dropped"], f"a worker sends at "
                                       f"most {format_bytes(RATE_OF_WORKERS)}/s"))
            return
        mark = f"[{short_key(key)} {_worker(worker).replace(' ', '-')}] "
        where = (key, worker, record["stream"])
        out = []
        for line in record["text"].splitlines(keepends=True):
            out.append(line if where in self._open_lines else mark + line)
            if line.endswith("\n"):
                self._open_lines.discard(where)
            else:
                self._open_lines.add(where)
        # On a terminal, a progress bar may hold the line (it redraws with "\r"):
        # clear it, the output goes above and the bar draws again below.
        clear = "\r\x1b[K" if _isatty(stream) else ""
        stream.write(clear + "".join(out))
        stream.flush()

    # ------------------------------------------------------------ limits ---
    def _note_dropped(self, kernel: dict | None) -> None:
        """Say what the kernel's own bound dropped (once a second at most; with the
        next batch after that)."""
        now = time.monotonic()
        if not self._dropped or now - self._noted < NOTE_EVERY or kernel is None:
            return
        self._noted = now
        dropped, self._dropped = self._dropped, Counter()
        for (key, worker), n in dropped.items():
            _write(kernel["stderr"], _dropped_line(
                key, worker, n, f"a notebook shows at most {format_bytes(self.budget.rate)}/s"))
        self._ends_line["stderr"] = True


class _CellWatch:
    """Whether a cell of this kernel runs now, from IPython's ``pre_run_cell`` and
    ``post_run_cell`` events (followed from ``watch``, or the first time it is asked)."""

    def __init__(self):
        self._shell = None
        self._running = False
        self._on_start = None

    def watch(self, shell, on_start) -> None:
        if shell is self._shell:
            return
        if self._shell is not None:
            self._forget(self._shell)
        self._shell, self._on_start, self._running = shell, on_start, True
        shell.events.register("pre_run_cell", self._started)
        shell.events.register("post_run_cell", self._ended)

    def unwatch(self, shell) -> None:
        if shell is self._shell:
            self._forget(shell)
            self._shell = None

    def _forget(self, shell) -> None:
        for event, callback in (("pre_run_cell", self._started),
                                ("post_run_cell", self._ended)):
            try:
                shell.events.unregister(event, callback)
            except ValueError:
                pass

    def running(self, on_start) -> bool:
        shell = _shell()
        if shell is None:
            return True  # no shell to ask: show it now
        if shell is not self._shell:
            self.watch(shell, on_start)  # not known yet: show it, rather than hold it
        return self._running

    def _started(self, info=None) -> None:
        self._running = True
        self._on_start()

    def _ended(self, result=None) -> None:
        self._running = False


def _dropped_line(key: str, worker: str, n: int, limit: str) -> str:
    return (f"[{short_key(key)} on {_worker(worker)}: {format_bytes(n)} of output dropped; "
            f"{limit}]\n")


def _worker(name: str) -> str:
    """``worker-0`` as it is; a bare number (Dask's default names) as ``worker 0``."""
    return f"worker {name}" if str(name).isdigit() else str(name)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _shell():
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _kernel_streams() -> dict | None:
    """``{"stdout": ..., "stderr": ...}`` if this process is a Jupyter kernel, else None."""
    shell = _shell()
    if getattr(shell, "kernel", None) is None:
        return None
    return {"stdout": sys.stdout, "stderr": sys.stderr}


def _cell_of(stream) -> str | None:
    """The message id of the cell a write to ``stream`` goes to now (ipykernel's
    ``OutStream`` falls back to its latest parent in an empty context)."""
    header = contextvars.Context().run(getattr, stream, "parent_header", None)
    return header.get("msg_id") if isinstance(header, dict) else None


def _write(stream, text: str) -> None:
    # In an empty context: ipykernel 7 keeps a cell's parent header in a ContextVar, and
    # this thread's context may carry an old cell's (docs: jupyter-toolchain.md §6).
    contextvars.Context().run(stream.write, text)


ROUTER = OutputRouter()
show = ROUTER.show
