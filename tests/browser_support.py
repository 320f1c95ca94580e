"""A real ``jupyter lab`` on loopback and Debian's Chromium driven by Playwright, for tests.

The server runs in a private temporary Jupyter home (config, data for settings, runtime,
IPython dir); :meth:`LabServer.stop` deletes every kernel through the REST API, then
terminates the server by its PID. Chromium is Debian's ``/usr/bin/chromium``: Playwright's
own browser download (``playwright install``) cannot be used on these machines.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",  # Docker's 64 MB /dev/shm is too small for Chromium
]
# The "get notified about Jupyter news?" toast covers the notebook in screenshots.
_QUIET_NOTIFICATIONS = ("lab/user-settings/@jupyterlab/apputils-extension/"
                        "notification.jupyterlab-settings")


def missing_browser_tools() -> str | None:
    """Why browser tests cannot run here, or None if they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabServer:
    """``jupyter lab`` without token or browser, serving ``root`` on a free loopback port."""

    def __init__(self, root: Path, home: Path, log_path: Path, app: str = "lab"):
        self.root, self.home, self.log_path = root, home, log_path
        self.app = app  # "lab" (JupyterLab 4) or "notebook" (Notebook 7)
        self.python = sys.executable  # the interpreter (so, the environment) that serves
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                         ("IPYTHONDIR", "ipython")):
            env[var] = str(self.home / sub)
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        env.pop("JUPYTER_TOKEN", None)
        return env

    def start(self, timeout: float = 60) -> None:
        settings = self.home / "config" / _QUIET_NOTIFICATIONS
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        cmd = [self.python, "-m", "jupyterlab", "--no-browser", "--IdentityProvider.token=",
               "--ServerApp.password=", "--allow-root", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={self.root}"]
        if self.app == "notebook":
            cmd[2] = "notebook"
            cmd += ["--JupyterNotebookApp.expose_app_in_browser=True"]
        else:
            cmd += ["--LabApp.expose_app_in_browser=True",
                    # Notebook 7 (test extras) is served by this server too, at /notebooks/.
                    "--JupyterNotebookApp.expose_app_in_browser=True",
                    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        self._log = open(self.log_path, "wb")
        # cwd: `python -m` puts it first on sys.path; the checkout's would shadow an install.
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.root)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                self.api("GET", "status")
                return
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"jupyter lab not up after {timeout} s; see {self.log_path}")
                time.sleep(0.2)

    def api(self, method: str, path: str, timeout: float = 10):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def worker_processes(self) -> list:
        """The scatter_magics worker processes the server's kernels started."""
        import psutil

        found = []
        for proc in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if "scatter_magics.engine.worker" in " ".join(proc.cmdline()):
                    found.append(proc)
            except psutil.NoSuchProcess:
                pass
        return found

    def stop(self, timeout: float = 20) -> list[int]:
        """Shut every kernel down through the REST API, then terminate the server.

        Returns the PIDs of worker processes that outlived their kernel by ``timeout``
        seconds (they are killed).
        """
        import psutil

        if self.proc is None:
            return []
        workers = self.worker_processes()
        try:
            for kernel in self.api("GET", "kernels"):
                self.api("DELETE", f"kernels/{kernel['id']}", timeout=timeout)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # the server is already gone: its kernels went with it
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        self._log.close()
        self.proc = None
        _, leftover = psutil.wait_procs(workers, timeout=timeout)
        for proc in leftover:
            proc.kill()
        return [proc.pid for proc in leftover]


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells for the ``python3`` kernel."""
    nb = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "source": source,
                   "outputs": [], "execution_count": None} for i, source in enumerate(cells)],
    }
    path.write_text(json.dumps(nb, indent=1))


def open_notebook(page, server: LabServer, name: str, timeout_ms: int = 60_000,
                  frontend: str = "lab") -> None:
    """Open ``name`` in JupyterLab (a fresh workspace) or in Notebook 7 (``frontend=
    "notebook"``) and wait until its kernel is idle."""
    if frontend == "notebook":
        page.goto(f"{server.url}/notebooks/{name}")
    else:
        # ?reset: do not restore another test's tabs, or commands run in the wrong notebook.
        page.goto(f"{server.url}/lab/tree/{name}?reset")
    page.wait_for_function(
        """name => {
            const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            const kernel = w && w.sessionContext && w.sessionContext.session
                && w.sessionContext.session.kernel;
            return w && w.context && w.context.path === name && kernel && kernel.status === 'idle';
        }""", arg=name, timeout=timeout_ms)


def run_all_cells(page, timeout_ms: int = 60_000) -> None:
    """Run every cell of the current notebook and wait until each has an execution count."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""", timeout=timeout_ms)


def kernel_status(page) -> str:
    return page.evaluate(
        "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status")


def execute_in_background(page, code: str) -> None:
    """Send ``code`` to the notebook's kernel outside any cell (the kernel turns busy)."""
    page.evaluate(
        """code => { window.__bg = window.jupyterapp.shell.currentWidget.sessionContext
                     .session.kernel.requestExecute({code}); }""", code)


def save_artifact_dir() -> Path:
    """``$ARTIFACTS``, or ``test-artifacts/`` at the repository's root."""
    path = Path(os.environ.get("ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def copy_if_exists(src: Path, dst: Path) -> None:
    if src.exists():
        shutil.copyfile(src, dst)
