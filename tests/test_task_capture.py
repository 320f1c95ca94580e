"""What tasks print, captured on a worker: routed by the thread's task, bounded, whole lines.

The capture alone (``scatter_magics/task_capture.py``), as both engines' workers use it;
the path to the notebook is tested in a real kernel (tests/test_cell_output.py).
"""

from __future__ import annotations

import io
import sys
import threading
import time

import pytest

from scatter_magics.task_capture import TaskCapture

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def running():
    """``running.key``: the task the calling thread runs, as a worker sets it."""
    return threading.local()


def test_each_threads_writes_go_to_its_own_task_and_others_to_the_stream(running):
    stream = io.StringIO()
    capture = TaskCapture(lambda: getattr(running, "key", None), tee=False)
    saved = sys.stdout
    sys.stdout = stream  # the worker's own stream
    capture.install()
    try:
        def task(key):
            running.key = key
            for i in range(200):
                print(key, "line", i)  # four writes a line, threads interleaved
            running.key = None

        threads = [threading.Thread(target=task, args=(f"t-{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        print("not a task's")
        for thread in threads:
            thread.join()
    finally:
        capture.uninstall()
        sys.stdout = saved
    assert stream.getvalue() == "not a task's\n"  # ours only: tasks' output left it
    for n in range(4):
        records = capture.take(f"t-{n}")
        text = "".join(r["text"] for r in records)
        assert text == "".join(f"t-{n} line {i}\n" for i in range(200))
        assert {r["stream"] for r in records} == {"stdout"}


def test_a_tight_loop_is_bounded_in_whole_lines_and_the_rest_is_counted(running):
    running.key = "loud"
    capture = TaskCapture(lambda: getattr(running, "key", None), tee=False,
                          rate=8 * 2**10, burst=16 * 2**10, pending=32 * 2**10)
    started = time.monotonic()
    written = 0
    for i in range(20_000):
        line = f"line {i} {'x' * 40}\n"
        capture.add("loud", "stdout", line[:10])  # a line in two writes, as print does
        capture.add("loud", "stdout", line[10:])
        written += len(line)
        if i % 2000 == 0:
            records = capture.take()
            assert all(r["text"].endswith("\n") for r in records if "text" in r)
    records = capture.take("loud")
    elapsed = time.monotonic() - started
    kept = sum(len(r["text"]) for r in records if "text" in r)
    [note] = [r for r in records if "dropped" in r]
    assert note["dropped"] > 0 and note["stream"] == "stderr"
    assert kept <= 16 * 2**10 + 8 * 2**10 * elapsed  # the burst and the rate, no more
    for record in records:
        for line in record.get("text", "").splitlines():
            assert line.startswith("line ") and line.endswith("x" * 40)  # never cut


def test_a_line_left_open_goes_with_the_tasks_end(running):
    capture = TaskCapture(lambda: None, tee=False)
    capture.add("t", "stdout", "working")
    capture.add("t", "stdout", "... ")
    assert capture.take() == []  # still open: it waits
    capture.add("t", "stderr", "oops\n")
    assert capture.take() == [{"key": "t", "stream": "stderr", "text": "oops\n"}]
    assert capture.take("t") == [{"key": "t", "stream": "stdout", "text": "working... "}]
    assert capture.take("t") == []


def test_tee_keeps_the_workers_own_log(running):
    stream = io.StringIO()
    running.key = "t"
    capture = TaskCapture(lambda: getattr(running, "key", None), tee=True)
    saved = sys.stderr
    sys.stderr = stream
    capture.install()
    try:
        print("to both", file=sys.stderr)
    finally:
        capture.uninstall()
        sys.stderr = saved
    assert stream.getvalue() == "to both\n"
    assert capture.take("t") == [{"key": "t", "stream": "stderr", "text": "to both\n"}]
