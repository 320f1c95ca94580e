"""``ProcessWatch`` tells a busy process from a frozen or gone one by its ``/proc`` entry
(issue 20, item 5: busy is not dead), with real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from scatter_magics.engine.cluster.liveness import ProcessWatch
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

SPIN = "while True: pass"  # holds a CPU, as a task holding the GIL does
SLEEP = "import time; time.sleep(60)"


@pytest.fixture
def start():
    started = []

    def start(code: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", code])
        started.append(process)
        return process
    yield start
    for process in started:
        process.kill()
        process.wait()


def settled_look(watch: ProcessWatch, pid: int) -> str:
    """The answer of a look that has an earlier one to compare with."""
    watch.look(pid)
    time.sleep(0.3)
    return watch.look(pid)


def test_a_spinning_process_is_busy_and_a_sleeping_one_frozen(start):
    spinning, sleeping = start(SPIN), start(SLEEP)
    watch = ProcessWatch()
    wait_for(lambda: settled_look(watch, spinning.pid) == "busy", what="the spinner to look busy")
    time.sleep(0.5)  # past the interpreter's start, which spends CPU time
    assert settled_look(watch, sleeping.pid) == "frozen"


def test_a_stopped_process_is_frozen_and_an_exited_one_gone(start):
    spinning = start(SPIN)
    watch = ProcessWatch()
    spinning.send_signal(signal.SIGSTOP)
    wait_for(lambda: watch.look(spinning.pid) == "frozen", what="the stopped spinner to look frozen")
    spinning.send_signal(signal.SIGCONT)
    spinning.kill()
    wait_for(lambda: watch.look(spinning.pid) == "gone", what="the killed process to look gone")
    spinning.wait()
    assert watch.look(spinning.pid) == "gone"
