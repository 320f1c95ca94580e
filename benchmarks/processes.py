"""Run a benchmark child process with a deadline, and end whatever it leaves behind.

Every child gets a unique token in its environment, which its own children (cluster workers,
Ray's raylet, ipyparallel's engines) inherit. After the child exits, any process still carrying
the token is an orphan: it is reported and killed by pid. Nothing else on the machine is
touched.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN_VAR = "SCATTER_MAGICS_BENCH_TOKEN"


@dataclasses.dataclass
class ChildResult:
    records: list
    failure: str = ""  # why the child did not exit cleanly ("" when it did)
    orphans: list = dataclasses.field(default_factory=list)  # "name (pid)" killed afterwards


def compile_package():
    """Write the bytecode of scatter_magics (and the benchmarks), as pip does on install.

    An editable install in an environment with PYTHONDONTWRITEBYTECODE set (this one
    has it) would otherwise compile every module from source in every process: ~90 ms
    of CPU per cold start on the client alone (-X importtime), which no installed
    package pays, the peers' included.
    """
    import compileall

    for folder in ("scatter_magics", "benchmarks"):
        compileall.compile_dir(os.path.join(ROOT, folder), quiet=1)


IDLE_CPU = 0.15  # busy fraction of the machine's cores that counts as idle
QUIET_WAIT = 10.0  # s at most


def wait_until_quiet(window=0.2, timeout=QUIET_WAIT):
    """Wait until the machine's cores are idle for one ``window`` (at most ``timeout``).

    A system's processes may still be exiting after its run ends (ipyparallel's engines
    and controller take a second or two to go): a cold start measured meanwhile would
    time the previous system's exit too, and a short one most of all. Returns the busy
    fraction of the last window.
    """
    deadline = time.monotonic() + timeout
    while True:
        busy = psutil.cpu_percent(interval=window) / 100
        if busy < IDLE_CPU or time.monotonic() > deadline:
            return busy


def child_env(token):
    """This environment, plus the repository on PYTHONPATH (workers import
    ``benchmarks.remote``), plus Ray kept off the network, plus the token."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env[TOKEN_VAR] = token
    return env


def run_child(module, args, timeout):
    """Run ``python -m module *args --out FILE``; return the JSON records written to FILE."""
    token = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out, log_path = os.path.join(tmp, "out.jsonl"), os.path.join(tmp, "log.txt")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args, "--out", out], cwd=ROOT,
                env=child_env(token), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
            try:
                failure = _wait(proc, timeout)
            finally:
                orphans = end_orphans(token)
        if failure:
            failure += "\n" + _tail(log_path)
        return ChildResult(_read_records(out), failure, orphans)


def _wait(proc, timeout):
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        return f"timed out after {timeout:.0f} s and was stopped"
    except BaseException:  # Ctrl-C: the child is in its own session and did not see it
        _stop(proc)
        raise
    return f"exited with code {code}" if code else ""


def _stop(proc):
    """SIGTERM first, so the child can close its cluster; SIGKILL after 15 s."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _tagged(token):
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TOKEN_VAR) == token:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def end_orphans(token, grace=10.0):
    """Give the child's processes ``grace`` seconds to exit on their own, then kill them."""
    deadline = time.monotonic() + grace
    while (left := _tagged(token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = []
    for proc in left:
        try:
            orphans.append(f"{proc.name()} ({proc.pid})")
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(left, timeout=5)
    return orphans


def _read_records(path):
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a killed child may be cut short
                pass
    return records


def _tail(path, lines=15):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])
