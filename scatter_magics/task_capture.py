"""What tasks print, on the worker: captured per task, sent in bounded batches.

A worker runs several tasks at once, one per thread, and they all share ``sys.stdout``
and ``sys.stderr``. :meth:`TaskCapture.install` puts a :class:`TaskStream` in their
place: a write from a thread running a task (``current()`` names its key) is added to
that task's output; any other write goes to the stream as before. ``print()`` writes
there, and so do ``warnings`` (``showwarning`` writes to ``sys.stderr``) and the
``logging`` records a task emits through a handler that writes to ``sys.stderr`` as it
is now (Python's last-resort handler, which shows WARNING and above when nothing is
configured, as in a notebook), so a task's output reads as the same code's would in a
cell. With ``tee`` (a Dask worker, which is not ours) the stream still gets everything.

Output waits in the capture until the worker sends it: :meth:`take` hands over what is
pending, as records ``{"key", "stream", "text"}`` and ``{"key", "stream", "dropped"}``.
The worker takes a task's output just before it reports the task done, on the same
connection, so the output reaches the client before the result does; and the rest
every :data:`INTERVAL` while tasks print (``wake`` is called, from the task's thread,
when output starts to wait). Memory and rate are bounded: a task keeps at most
:data:`PENDING` bytes waiting, and the worker sends at most :data:`RATE` bytes a second
(:data:`BURST` at once); the rest is dropped and counted, and the count is sent (once a
second at most, and when the task ends).

This module imports only the standard library: a Dask client ships it by value to
workers that do not have scatter_magics (``dask/task_output.py``).

>>> capture = TaskCapture(current=lambda: "f-1", tee=False)
>>> capture.add("f-1", "stdout", "hello\\n")
>>> capture.take("f-1")
[{'key': 'f-1', 'stream': 'stdout', 'text': 'hello\\n'}]
"""

from __future__ import annotations

import sys
import threading
import time

INTERVAL = 0.1  # s between batches while tasks print
PENDING = 256 * 2**10  # bytes one task may have waiting to be sent; more is dropped
RATE = 128 * 2**10  # bytes a second a worker sends, on average ...
BURST = 512 * 2**10  # ... and at most at once


class SendBudget:
    """Bytes that may be sent: ``rate`` a second on average, ``burst`` at most at once
    (a token bucket). Not thread-safe: its owner's lock guards it."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)  # bytes that may still be sent now
        self._refilled = time.monotonic()

    def spend(self, n: int) -> bool:
        """Take ``n`` bytes from the budget if it holds them now; else take nothing."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if n > self._tokens:
            return False
        self._tokens -= n
        return True


class TaskStream:
    """``sys.stdout`` or ``sys.stderr`` while a capture is installed (see the module)."""

    def __init__(self, stream_name: str, stream, capture: "TaskCapture"):
        self.stream_name = stream_name  # "stdout" or "stderr"
        self.stream = stream  # the stream it stands in for
        self._capture = capture

    def write(self, text) -> int:
        key = self._capture.current()
        if key is None or not isinstance(text, str):
            return self.stream.write(text)
        if self._capture.tee:
            self.stream.write(text)
        self._capture.add(key, self.stream_name, text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.stream.flush()

    # What code asks of a text stream besides writing: the stream's own answers.
    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")

    @property
    def errors(self):
        return getattr(self.stream, "errors", "strict")

    @property
    def buffer(self):  # bytes written here bypass the capture, as they would a cell
        return self.stream.buffer

    @property
    def closed(self) -> bool:
        return getattr(self.stream, "closed", False)

    def set_parent(self, parent) -> None:
        """ipykernel tells ``sys.stdout`` which cell runs (its ``OutStream``): pass it on."""
        set_parent = getattr(self.stream, "set_parent", None)
        if set_parent is not None:
            set_parent(parent)


class _Pending:
    __slots__ = ("chunks", "nbytes", "dropped", "partial", "noted")

    def __init__(self):
        self.chunks: list[list] = []  # [stream, [texts]] in the order written
        self.nbytes = 0
        self.dropped = 0
        self.partial: dict[str, list[str]] = {}  # stream -> the start of its line
        self.noted = 0.0  # when the count of dropped bytes was last sent


class TaskCapture:
    """The output of the tasks a worker runs, waiting to be sent (see the module).

    ``current()`` names the task the calling thread runs (None: none); ``wake()`` is
    called when output becomes ready to send and nothing else was ready.

    Output is kept or dropped a whole line at a time (``print`` writes a line in
    pieces; a line cut in two by a drop would read as another), when the line ends:
    the bounds are checked then, and the pieces of a line still open wait. A line that
    never ends (``end=""``, a ``\\r`` progress line counts as an end) goes with the
    task's last output, or once it is :data:`LONG_LINE` long.
    """

    def __init__(self, current, *, tee: bool, wake=None, rate: float = RATE,
                 burst: float = BURST, pending: int = PENDING):
        self.current, self.tee, self.wake = current, tee, wake
        self.budget, self.limit = SendBudget(rate, burst), pending
        self._lock = threading.Lock()
        self._pending: dict = {}  # key -> _Pending, in the order output began
        self._ready = False  # some complete line waits to be sent
        self._installed: list[TaskStream] = []

    def install(self) -> None:
        """Stand in for ``sys.stdout`` and ``sys.stderr`` (once)."""
        if self._installed:
            return
        for name in ("stdout", "stderr"):
            stream = TaskStream(name, getattr(sys, name), self)
            setattr(sys, name, stream)
            self._installed.append(stream)

    def uninstall(self) -> None:
        """Put the streams back, where nobody replaced ours meanwhile."""
        for stream in self._installed:
            if getattr(sys, stream.stream_name) is stream:
                setattr(sys, stream.stream_name, stream.stream)
        self._installed = []

    def add(self, key, stream: str, text: str) -> None:
        """Add what task ``key`` wrote to ``stream`` (the task's thread).

        ``print`` writes a line in pieces; the pieces of a line still open are only
        appended (one thread writes a task's output, and ``take`` leaves open lines
        where they are): the lock is taken once a line, when it ends.
        """
        pending = self._pending.get(key)
        if pending is None:
            with self._lock:
                pending = self._pending.setdefault(key, _Pending())
        parts = pending.partial.get(stream)
        if parts is None:
            parts = pending.partial[stream] = []
        if "\n" not in text and "\r" not in text:
            parts.append(text)
            if len(parts) < 64 or sum(map(len, parts)) < LONG_LINE:
                return  # the line is still open
            end = len(text)
        else:
            end = max(text.rfind("\n"), text.rfind("\r")) + 1
            parts.append(text[:end])
        with self._lock:
            woke = self._line(pending, stream, "".join(parts))
            parts.clear()
            if end < len(text):
                parts.append(text[end:])
        if woke and self.wake is not None:
            self.wake()

    def _line(self, pending: _Pending, stream: str, text: str) -> bool:
        """Keep (or drop) ended lines ``text``; True if output became ready to send."""
        if pending.nbytes + len(text) > self.limit or not self.budget.spend(len(text)):
            pending.dropped += len(text)
            return False
        pending.nbytes += len(text)
        chunks = pending.chunks
        if chunks and chunks[-1][0] == stream:  # one record per run of a stream
            chunks[-1][1].append(text)
        else:
            chunks.append([stream, [text]])
        first, self._ready = not self._ready, True
        return first

    @property
    def waiting(self) -> bool:
        return self._ready

    def take(self, key=None) -> list[dict]:
        """The records ready to send: task ``key``'s, with its open lines (it ended), or
        every task's complete lines (None; open lines wait)."""
        if key is not None and key not in self._pending:
            return []  # most tasks print nothing: no lock for them
        with self._lock:
            if key is not None:
                pending = self._pending.pop(key)
                for stream, parts in pending.partial.items():
                    if any(parts):
                        self._line(pending, stream, "".join(parts))
                return _records(key, pending, note=True)
            self._ready = False
            records, now = [], time.monotonic()
            for task, pending in self._pending.items():
                note = now - pending.noted >= NOTE_EVERY
                records += _records(task, pending, note)
                pending.chunks, pending.nbytes = [], 0
                if note and pending.dropped:
                    pending.dropped, pending.noted = 0, now
            return records


LONG_LINE = 4 * 2**10  # bytes of a line still open sent anyway
NOTE_EVERY = 1.0  # s between two counts of a task's dropped bytes (and one at its end)


def _records(key, pending: _Pending, note: bool) -> list[dict]:
    records = [{"key": key, "stream": stream, "text": "".join(texts)}
               for stream, texts in pending.chunks]
    if note and pending.dropped:
        records.append({"key": key, "stream": "stderr", "dropped": pending.dropped})
    return records
