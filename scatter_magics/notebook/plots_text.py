"""The same pictures as text, for ``%cluster`` in a terminal: a sparkline per worker and
the task stream as one line of cells per worker thread.

>>> sparkline([0, 10, 20, 40, None, 80])
'▁▂▃▅ █'
>>> print(task_stream_text([{"key": "f-1", "name": "f", "worker": "tcp://a", "thread": 0,
...     "start": 40.0, "stop": 50.0, "status": "finished", "transfers": []}], now=60.0,
...     names={"tcp://a": "worker-0"}, width=12))
worker-0 #0  ·ffffff·····
             f: 1 task
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .plots_html import shown_span, task_lanes

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int | None], width: int = 30) -> str:
    """The last ``width`` samples as block characters, scaled to their maximum; a gap for
    a sample where the worker was not there."""
    values = list(values)[-width:]
    top = max((v for v in values if v is not None), default=0) or 1
    return "".join(" " if v is None else BLOCKS[min(len(BLOCKS) - 1, int(v / top * (len(BLOCKS) - 1) + 0.5))]
                   for v in values)


def task_stream_text(tasks: Sequence[Mapping[str, Any]], now: float,
                     names: Mapping[str, str], span: float = 60.0, width: int = 60) -> str:
    """A line per worker thread over up to the last ``span`` s (``shown_span``): the first
    letter of the function that ran there, ``!`` for an error, ``·`` for idle; then
    how many tasks each function ran."""
    lanes = task_lanes(tasks, names)
    if not lanes:
        return "no task ran in the last minute"
    span = shown_span(tasks, now, span)
    cells = {lane: ["·"] * width for lane in lanes}
    for t in tasks:
        first = int((t["start"] - (now - span)) / span * width)
        last = int((t["stop"] - (now - span)) / span * width)
        mark = "!" if t.get("status") == "error" else (t.get("name") or t["key"])[:1] or "?"
        for i in range(max(0, first), min(width - 1, last) + 1):
            cells[(t["worker"], t.get("thread"))][i] = mark
    threads: dict[str, list] = {}
    for worker, thread in lanes:
        threads.setdefault(worker, []).append(thread)
    labels = {lane: f"{names.get(lane[0], lane[0])} #{threads[lane[0]].index(lane[1])}"
              for lane in lanes}
    pad = max(len(label) for label in labels.values()) + 2
    lines = [labels[lane].ljust(pad) + "".join(cells[lane]) for lane in lanes]
    counts = Counter(t.get("name") or t["key"] for t in tasks)
    errors = sum(t.get("status") == "error" for t in tasks)
    legend = ", ".join(f"{name}: {n:,} task{'' if n == 1 else 's'}"
                       for name, n in counts.most_common())
    lines.append(" " * pad + legend + (f"; {errors:,} failed (!)" if errors else ""))
    return "\n".join(lines)
