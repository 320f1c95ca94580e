"""A real Dask cluster started as users start one: ``dask scheduler`` and ``dask worker``s.

Every process is a child of the test process on 127.0.0.1, killed by :meth:`DaskCLI.stop`
(SIGINT, then SIGKILL after a grace period), so a test run leaves no orphan behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from distributed.diagnostics.plugin import WorkerPlugin

from tests.conftest import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASK = os.path.join(os.path.dirname(sys.executable), "dask")
# The Active Memory Manager runs when a test says so (client.amm.run_once()), not every
# 2 s: a test watching a replicate would otherwise race the AMM trimming it back.
ENV = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ACTIVE_MEMORY_MANAGER__START": "False",
       "PYTHONPATH": ROOT}


def python_without_scatter_magics(directory) -> str:
    """A Python with this environment's packages (distributed…) but not scatter_magics.

    A fresh venv whose one ``.pth`` line adds our site-packages to its path: a ``.pth``
    file's lines only extend ``sys.path``, so the editable install's own ``.pth`` (which
    puts this checkout on the path) is not read, and ``import scatter_magics`` fails for
    real, as on a cluster where only ``distributed`` is installed."""
    import site
    import venv

    target = directory / "bare-venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(target)
    python = target / "bin" / "python"
    found = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in site.getsitepackages() if os.path.isdir(os.path.join(p, "distributed"))]
    with open(os.path.join(found, "parent.pth"), "w") as f:
        f.write("\n".join(ours) + "\n")
    return str(python)


class DaskCLI:
    """``dask scheduler --scheduler-file ... --port 0 --no-dashboard`` and its workers.

    ``python``: run both with that interpreter (``python -m distributed.cli...``) from
    ``directory``, with no ``PYTHONPATH``: e.g. one that cannot import scatter_magics.
    """

    def __init__(self, directory, preload: str | None = None, extra: tuple = (),
                 python: str | None = None, host: str = "127.0.0.1"):
        self.scheduler_file = str(directory / "scheduler.json")
        self.logs = directory
        self.workers: dict[str, subprocess.Popen] = {}
        self.python = python
        self.host = host
        args = [*self._command("scheduler"), "--scheduler-file", self.scheduler_file,
                "--port", "0", "--no-dashboard", "--host", host]
        if preload:
            args += ["--preload", preload]
        args += list(extra)
        self.scheduler = self._popen(args, "scheduler")
        wait_for(lambda: self._address() or self.scheduler.poll() is not None, timeout=60,
                 what="the dask scheduler to write its scheduler file")
        assert self.scheduler.poll() is None, self.log("scheduler")
        self.address = self._address()

    def _command(self, role: str) -> list[str]:
        if self.python is None:
            return [DASK, role]
        return [self.python, "-m", f"distributed.cli.dask_{role}"]

    def _popen(self, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        if self.python is None:
            cwd, env = ROOT, ENV
        else:  # nothing that would put this checkout on the path
            cwd, env = self.logs, {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
        with log:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)

    def _address(self) -> str | None:
        try:
            with open(self.scheduler_file) as f:
                return json.load(f)["address"]
        except (OSError, ValueError, KeyError):
            return None

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def start_worker(self, name: str, nanny: bool = False,
                     memory_limit: str = "1GiB") -> subprocess.Popen:
        """One ``dask worker`` process (without a nanny, killing it kills the worker)."""
        self.workers[name] = self._popen(
            [*self._command("worker"), "--scheduler-file", self.scheduler_file, "--name", name,
             "--nthreads", "1", "--memory-limit", memory_limit,
             "--nanny" if nanny else "--no-nanny", "--no-dashboard", "--host", self.host], name)
        return self.workers[name]

    def kill_worker(self, name: str) -> None:
        process = self.workers.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        processes = [*self.workers.values(), self.scheduler]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.workers.clear()


def make_tls_files(directory) -> dict[str, str]:
    """A throw-away CA and one certificate for 127.0.0.1 signed by it (openssl CLI)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=scatter-magics-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "node.pem", "-days", "2", "-extfile", "san.cnf")
    return {name: str(directory / file) for name, file in
            (("ca", "ca.pem"), ("cert", "node.pem"), ("key", "node.key"))}


class FromTheTests(WorkerPlugin):
    """A worker plugin pickled by reference to this module: workers without the tests
    (a cluster without scatter_magics) cannot unpickle it."""

    name = "from-the-tests"
