"""The pictures are drawn the same in the browser (``static/plots.js``, run in node) and in
static outputs (``notebook/plots_html.py``, ``plots_text.py``): a function keeps its colour
from a cell's HTML to the sidebar, and a task stream spans the same seconds."""

from __future__ import annotations

import json
import re

import pytest

from scatter_magics.notebook.esm import STATIC
from scatter_magics.notebook.plots_html import (
    PALETTE,
    name_colour,
    shown_span,
    task_stream_svg,
    timeline_svg,
)
from scatter_magics.notebook.plots_text import task_stream_text
from tests.node_support import run_module

pytestmark = pytest.mark.timeout(60)

# plots.js with sizes.js before it in one module (its one import resolved by pasting, as
# notebook/esm.py does), imported from a data: URL.
IN_NODE = """
import { readFileSync } from "node:fs";
const [sizes, plots] = %s.map(p => readFileSync(p, "utf8"));
const source = sizes + plots.replace(/^import[^;]*;/m, "");
const url = "data:text/javascript;base64," + Buffer.from(source).toString("base64");
const { nameColour, shownSpan, PALETTE } = await import(url);
const { names, spans } = JSON.parse(readFileSync(0, "utf8"));
console.log(JSON.stringify({colours: names.map(nameColour), palette: PALETTE,
                            spans: spans.map(([tasks, now]) => shownSpan(tasks, now))}));
""" % json.dumps([str(STATIC / "sizes.js"), str(STATIC / "plots.js")])

NAMES = ["revenue", "len", "sum", "work-0", "", "élan", "函数", "🦆 duck", "a" * 200]
SPANS = [([], 100.0), ([{"start": 99.5}], 100.0), ([{"start": 70.0}], 100.0),
         ([{"start": 0.0}], 100.0), ([{"start": 90.0}, {"start": 95.0}], 100.0)]


def test_javascript_draws_with_the_same_colours_and_spans_as_python():
    js = run_module(IN_NODE, {"names": NAMES, "spans": SPANS})
    assert js["palette"] == list(PALETTE)
    assert js["colours"] == [name_colour(n) for n in NAMES]
    assert js["spans"] == [shown_span(tasks, now) for tasks, now in SPANS] == [5, 5, 33, 60, 11]


def task(key, start, stop, worker="tcp://a", thread=0, status="finished", transfers=()):
    return {"key": key, "name": key.split("-")[0], "worker": worker, "thread": thread,
            "start": start, "stop": stop, "status": status, "transfers": list(transfers)}


def test_static_task_stream_has_a_lane_per_worker_thread_errors_and_transfers_marked():
    tasks = [task("f-1", 91, 95, thread=0), task("f-2", 92, 96, thread=1),
             task("g-1", 95, 99, worker="tcp://b", status="error",
                  transfers=[{"start": 94, "stop": 95, "from": "tcp://a", "nbytes": 10}])]
    names = {"tcp://a": "worker-0", "tcp://b": "worker-1"}
    svg = task_stream_svg(tasks, 100.0, names)
    assert re.findall(r">(worker-\d #\d)<", svg) == ["worker-0 #0", "worker-0 #1", "worker-1 #0"]
    assert svg.count("stroke='#000'") == 1  # the failed task has a dark edge
    assert "transfer for g-1" in svg and f"fill='{name_colour('f')}'" in svg
    text = task_stream_text(tasks, 100.0, names)
    assert text.splitlines()[2].startswith("worker-1 #0") and "!" in text.splitlines()[2]
    assert "f: 2 tasks, g: 1 task; 1 failed (!)" in text
    assert "no task ran" in task_stream_svg([], 100.0, names)
    # A task that failed at once (its input did not unpickle) is still seen: 4 px wide.
    instant = task_stream_svg([task("h-1", 97, 97, status="error")], 100.0, names)
    assert re.search(r"width='4\.0' height='9' fill='[^']+' stroke='#000'", instant), instant


def test_a_timeline_needs_two_samples_and_says_its_peaks():
    assert timeline_svg([10], [5]) == ""
    svg = timeline_svg([2**20, 2**21, None], [0, 2**20, None])
    assert "data held up to 1 MiB, process memory up to 2 MiB" in svg
