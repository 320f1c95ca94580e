"""Static SVG pictures for the HTML fallbacks: memory timelines and the task stream.

The live views draw the same pictures in the browser (``static/plots.js``); these are
for where no widget runs (nbconvert, GitHub), so they are self-contained SVG with inline
colours. A function's colour is :func:`name_colour`, computed as ``plots.js``'s
``nameColour`` computes it (a test checks the two agree), so a function keeps its colour
from the cell to the sidebar.

>>> name_colour("revenue") == name_colour("revenue") != name_colour("len")
True
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..sizes import format_bytes

# Mid-tone colours readable on light and dark backgrounds (Tableau 10 without its red,
# which marks transfers, as Dask's task stream marks them).
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
           "#ff9da7", "#bab0ac")
TRANSFER = "#e15759"
ERROR = "#b71c1c"
DATA_COLOUR = "#0969da"  # data held, as the memory bars draw it
PROCESS_COLOUR = "#8c959f"  # process memory: the second mark


def name_colour(name: str) -> str:
    """The colour of a function's bars: a 31-multiplier hash of its code points."""
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    return PALETTE[h % len(PALETTE)]


def _points(values: Sequence[int | None], top: float, width: float, height: float) -> str:
    n = max(1, len(values) - 1)
    return " ".join(f"{width * i / n:.1f},{height - height * (v or 0) / top:.1f}"
                    for i, v in enumerate(values) if v is not None)


def timeline_svg(memory: Sequence[int | None], nbytes: Sequence[int | None],
                 width: int = 120, height: int = 24) -> str:
    """A worker's last five minutes: data held (filled) and process memory (a line)."""
    known = [v for v in (*memory, *nbytes) if v is not None]
    if sum(v is not None for v in nbytes) < 2:  # one point is no line
        return ""
    top = max(max(known) * 1.1, 1)
    peak_data = max((v for v in nbytes if v is not None), default=0)
    peak_memory = max((v for v in memory if v is not None), default=0)
    title = (f"last {len(nbytes)} s: data held up to {format_bytes(peak_data)}, "
             f"process memory up to {format_bytes(peak_memory)}")
    data = _points(nbytes, top, width, height)
    first, last = data.split(" ", 1)[0].split(",")[0], data.rsplit(" ", 1)[-1].split(",")[0]
    return (f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
            f"role='img' aria-label='{html.escape(title)}' style='vertical-align:middle'>"
            f"<title>{html.escape(title)}</title>"
            f"<polygon points='{first},{height} {data} {last},{height}' fill='{DATA_COLOUR}' "
            f"fill-opacity='0.35' stroke='{DATA_COLOUR}' stroke-width='1'/>"
            f"<polyline points='{_points(memory, top, width, height)}' fill='none' "
            f"stroke='{PROCESS_COLOUR}' stroke-width='1' stroke-dasharray='2 1'/></svg>")


def history_by_worker(history: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """``{address: {"memory": [...], "nbytes": [...]}}`` of a history answer."""
    return {w["address"]: w for w in (history or {}).get("workers", ())}


def task_lanes(tasks: Sequence[Mapping[str, Any]],
               names: Mapping[str, str]) -> list[tuple[str, Any]]:
    """``[(worker address, thread)]``: one lane per worker thread, in worker-name order."""
    from ..summary import natural_order

    lanes = {(t["worker"], t.get("thread")) for t in tasks}
    return sorted(lanes, key=lambda lane: (natural_order(names.get(lane[0], lane[0])),
                                           str(lane[1])))


def shown_span(tasks: Sequence[Mapping[str, Any]], now: float, span: float = 60.0) -> int:
    """The seconds a task stream spans: from a little before its oldest task to now, at
    least 5 and at most ``span`` (``plots.js`` ``shownSpan``)."""
    oldest = min([now, *(t["start"] for t in tasks)])
    return int(max(5, min(span, math.ceil((now - oldest) * 1.1))))


def task_stream_svg(tasks: Sequence[Mapping[str, Any]], now: float,
                    names: Mapping[str, str], span: float = 60.0, width: int = 640) -> str:
    """Up to the last ``span`` s (:func:`shown_span`): a lane per worker thread, a bar per
    task in its function's colour, errors in red with a dark edge, transfers as thin red
    bars above."""
    span = shown_span(tasks, now, span)
    lanes = task_lanes(tasks, names)
    if not lanes:
        return "<div style='opacity:0.7'>no task ran in the last minute</div>"
    label, lane_h = 110, 14
    plot = width - label
    height = lane_h * len(lanes) + 14
    row = {lane: i for i, lane in enumerate(lanes)}
    threads: dict[str, list] = {}
    for worker, thread in lanes:
        threads.setdefault(worker, []).append(thread)
    parts = []
    for (worker, thread), i in row.items():
        n = threads[worker].index(thread)
        parts.append(f"<text x='0' y='{i * lane_h + 10}' font-size='10' fill='currentColor'>"
                     f"{html.escape(names.get(worker, worker))} #{n}</text>")
    x = lambda t: label + plot * max(0.0, min(1.0, (t - (now - span)) / span))  # noqa: E731
    for t in tasks:
        y = row[(t["worker"], t.get("thread"))] * lane_h
        for tr in t.get("transfers") or ():
            parts.append(f"<rect x='{x(tr['start']):.1f}' y='{y + 1}' "
                         f"width='{max(1.0, x(tr['stop']) - x(tr['start'])):.1f}' height='3' "
                         f"fill='{TRANSFER}'><title>transfer for {html.escape(t['key'])}"
                         f"</title></rect>")
        error = t.get("status") == "error"
        colour = ERROR if error else name_colour(t.get("name") or t["key"])
        edge = " stroke='#000' stroke-width='1'" if error else ""
        what = f"{t.get('name')}: {t['key']}, {t['stop'] - t['start']:.3f} s" + \
            (" (error)" if error else "")
        least = 4.0 if error else 1.0  # an instant failure still shows (1 px reads as a tick)
        parts.append(f"<rect x='{x(t['start']):.1f}' y='{y + 4}' "
                     f"width='{max(least, x(t['stop']) - x(t['start'])):.1f}' height='9' "
                     f"fill='{colour}'{edge}><title>{html.escape(what)}</title></rect>")
    parts.append(f"<text x='{label}' y='{height - 2}' font-size='10' fill='currentColor'>"
                 f"−{span:.0f} s</text><text x='{width}' y='{height - 2}' font-size='10' "
                 f"text-anchor='end' fill='currentColor'>now</text>")
    return (f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img' "
            f"aria-label='task stream: {len(tasks)} tasks in the last minute'>"
            + "".join(parts) + "</svg>")
