"""In a real kernel, on both engines: what tasks print reaches the cells, errors read as
sentences, and a slow scatter on Dask shows its bar (issue 17, items 5-7).

One notebook per engine is run once (nbclient, a fresh kernel) and each test reads the
outputs of its cells. The Dask one connects to a cluster of its own (a worker is killed
in it) with ``%cluster connect --scheduler-file``; the embedded one starts its cluster.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import time

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_notebooks import KERNEL, ROOT

pytestmark = pytest.mark.timeout(240)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

CHATTY = """\
import logging, os, signal, time, warnings
def chatty(x):
    print('hello from the task', x)
    warnings.warn('careful with ' + str(x))
    logging.getLogger('chatty').warning('logged %s', x)
    return x + 1
fut = client.submit(chatty, 1)
%gather fut"""

LATE = """\
def late(x):
    time.sleep(1)
    print('late output', x)
    return x
later = client.submit(late, 7)"""

WAIT_FOR_LATER = """\
deadline = time.time() + 60
while not later.done() and time.time() < deadline:
    time.sleep(0.05)
later.status"""

IDLE_LATE = "idle_late = client.submit(late, 8)"
NEXT_CELL = "print('the next cell runs')"  # run once idle_late is done, the kernel idle till then

BROKEN = """\
def broken(x):
    y = x * 2
    return y / 0
bad = client.submit(broken, 1)
%gather bad"""

# No copy of it anywhere, so its holder's death loses it: ~0.5 MB of pickle (the client
# keeps small ones), no buffers (shared memory outlives workers), --no-hash (the magics
# send an unchanged variable again); --timeout waits until worker-0 stored it.
SCATTER_ON_WORKER_0 = """\
big = list(range(100_000))
big_future = %scatter big -w worker-0 --no-hash --timeout 60"""

KILL_WORKER_0 = {
    "embedded": "victim = {w['name']: w['pid'] for w in "
                "client.scheduler_info()['workers'].values()}['worker-0']",
    "dask": "names = {a: w['name'] for a, w in client.scheduler_info()['workers'].items()}\n"
            "victim = next(pid for a, pid in client.run(os.getpid).items() "
            "if names[a] == 'worker-0')",
}
WAIT_FOR_LOSS = """\
os.kill(victim, signal.SIGKILL)
deadline = time.time() + 60
while big_future.status == 'finished' and time.time() < deadline:
    time.sleep(0.05)
big_future.status"""

SLOW_SCATTER = """\
class SlowToPickle:  # pickles in 1 s, as a list of a few MiB does on Dask
    def __reduce__(self):
        time.sleep(1)
        return (int, (7,))
slow = SlowToPickle()
%scatter slow --no-hash"""


def notebook(setup: str) -> nbformat.NotebookNode:
    cells = [setup, CHATTY, LATE, WAIT_FOR_LATER, IDLE_LATE, NEXT_CELL, BROKEN,
             SCATTER_ON_WORKER_0,
             KILL_WORKER_0["dask" if "connect" in setup else "embedded"], WAIT_FOR_LOSS,
             "%gather big", SLOW_SCATTER, "%cluster stop"]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])


_runs: dict[str, nbformat.NotebookNode] = {}


@pytest.fixture(scope="module")
def dask_cli(tmp_path_factory):
    """A Dask cluster of this module's own: its worker-0 is killed."""
    pytest.importorskip("distributed")
    from tests.dask_support import DaskCLI

    cli = DaskCLI(tmp_path_factory.mktemp("dask-cells"))
    try:
        for name in ("worker-0", "worker-1"):
            cli.start_worker(name)
        yield cli
    finally:
        cli.stop()


@pytest.fixture(params=["embedded", "dask"])
def cells(request, tmp_path_factory):
    """The executed notebook of one engine: ``cells(containing)`` finds a cell's outputs."""
    engine = request.param
    if engine not in _runs:
        if engine == "dask":
            cli = request.getfixturevalue("dask_cli")
            setup = (f"%load_ext scatter_magics\n%cluster connect --scheduler-file "
                     f"{cli.scheduler_file}")
        else:
            setup = "%load_ext scatter_magics\n%cluster start -n 2"
        nb = notebook(setup)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        client = NotebookClient(nb, timeout=120, startup_timeout=60, kernel_name=KERNEL,
                                allow_errors=True)

        async def before(cell, **_):  # leave the kernel idle until idle_late is done
            if cell.source == NEXT_CELL:
                await kernel_says_true(client, "idle_late.done()")
        client.on_cell_execute = before
        try:
            client.execute(env=env)
        finally:
            nbformat.write(nb, tmp_path_factory.mktemp("cells") / f"{engine}.ipynb")
        _runs[engine] = nb

    def outputs(containing: str) -> list[dict]:
        return next(c.outputs for c in _runs[engine].cells if containing in c.source)
    outputs.engine = engine
    return outputs


async def kernel_says_true(client: NotebookClient, expression: str, timeout: float = 60) -> None:
    """Ask the idle kernel until ``expression`` is True, with silent requests: they run
    no cell (IPython triggers no pre/post_run_cell for them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg_id = client.kc.execute("", silent=True, store_history=False,
                                   user_expressions={"answer": expression})
        reply = await client.async_wait_for_reply(msg_id)
        if reply["content"]["user_expressions"]["answer"]["data"]["text/plain"] == "True":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the kernel never said {expression} within {timeout} s")


def streamed(outputs: list[dict], name: str) -> str:
    return "".join(o["text"] for o in outputs
                   if o["output_type"] == "stream" and o["name"] == name)


def result_of(outputs: list[dict]) -> str:
    [result] = [o for o in outputs if o["output_type"] == "execute_result"]
    return result["data"]["text/plain"]


def error_of(outputs: list[dict]) -> dict:
    [error] = [o for o in outputs if o["output_type"] == "error"]
    return {**error, "traceback": [ANSI.sub("", line) for line in error["traceback"]]}


# ------------------------------------------------------------ item 5: task output ---

def test_what_a_task_prints_warns_and_logs_shows_in_the_cell_waiting_for_it(cells):
    outputs = cells("fut = client.submit(chatty, 1)")
    stdout, stderr = streamed(outputs, "stdout"), streamed(outputs, "stderr")
    assert re.search(r"^\[chatty-[0-9a-f]{8} on worker-\d\]\nhello from the task 1\n",
                     stdout, re.M), stdout
    assert "careful with 1" in stderr and "UserWarning" in stderr, stderr
    assert "logged 1" in stderr, stderr
    assert not [o for o in outputs if o["output_type"] == "error"]


def test_output_arriving_after_its_cell_ended_shows_in_the_cell_running_then(cells):
    assert "late output" not in streamed(cells("later = client.submit(late, 7)"), "stdout")
    stdout = streamed(cells("while not later.done()"), "stdout")
    assert re.search(r"^\[late-[0-9a-f]{8} on worker-\d\]\nlate output 7\n", stdout, re.M), \
        stdout


def test_output_that_came_while_no_cell_ran_shows_first_in_the_next_cell(cells):
    assert re.fullmatch(r"\[late-[0-9a-f]{8} on worker-\d\]\nlate output 8\nthe next cell runs\n",
                        streamed(cells(NEXT_CELL), "stdout"))


def test_a_scripts_tasks_print_on_its_stderr_line_by_line_and_leave_stdout_alone():
    script = textwrap.dedent("""
        from scatter_magics import Client
        def chatty(x):
            print("hello from", x)
            print("and again")
            return x
        with Client(n_workers=1) as client:
            print("result:", client.submit(chatty, "a script").result())
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "result: a script\n"
    marked = re.findall(r"^\[chatty-[0-9a-f]{8} worker-0\] (.*)$", run.stderr, re.M)
    assert marked == ["hello from a script", "and again"], run.stderr


# ------------------------------------------------------------ item 6: errors ---

def test_a_tasks_exception_shows_the_tasks_own_frames(cells):
    error = error_of(cells("bad = client.submit(broken, 1)"))
    lines = error["traceback"]
    assert error["ename"] == "ZeroDivisionError"
    assert re.fullmatch(r"Traceback of task broken-[0-9a-f]{8} \(bad\), most recent call last:",
                        lines[0]), lines
    assert re.fullmatch(r"  Cell In\[\d+\], line 3, in broken", lines[1]), lines
    assert lines[2:] == ["    return y / 0", "ZeroDivisionError: division by zero"]


def test_a_lost_future_is_two_lines_naming_the_variable(cells):
    # Dask forgets data nobody holds: its futures go from "lost" to "cancelled"
    assert result_of(cells("os.kill(victim")) in ("'lost'", "'cancelled'")
    error = error_of(cells("%gather big"))
    assert error["ename"] == "FutureLostError"  # its own class: `except` still catches it
    first, hint = error["traceback"]  # two lines, nothing else
    assert first.startswith("%gather big: big was lost: its only holder "), first
    assert ("worker-0" if cells.engine == "embedded" else "tcp://127.0.0.1:") in first
    assert hint == "Scatter it again (%scatter big); --broadcast keeps a copy on every worker."


# ------------------------------------------------------------ item 7: the bar ---

def test_a_slow_scatter_shows_its_bar(cells):
    bars = [o for o in cells("slow = SlowToPickle()")
            if o["output_type"] == "display_data" and WIDGET_VIEW in o["data"]]
    assert len(bars) == 1, cells("slow = SlowToPickle()")
    assert bars[0]["data"]["text/plain"].startswith("%scatter slow: done in ")
