"""binder/ builds the environment users get, and every demo notebook runs in it.

mybinder.org builds with repo2docker, which we cannot run here (no Docker, no conda
registry). Its python build pack is plain pip, though, so the build is replayed step by
step in a fresh virtual environment, reading binder/'s files as repo2docker does:

- ``runtime.txt`` (``python-3.X``) picks the interpreter;
- ``requirements.txt`` is installed with ``pip install -r binder/requirements.txt`` from
  the repository's root;
- ``postBuild`` runs from the repository's root, after the install.

A file in binder/ the replay does not know fails the test: teach the replay first.
Then every notebook runs in that environment with ``jupyter nbconvert --execute``, under
the 64 MiB ``/dev/shm`` a Binder (Docker) container gets, in a private mount namespace
(where this machine allows one: as root; elsewhere under the host's /dev/shm, and
``test_the_notebooks_ran_with_binders_64_mib_dev_shm`` skips saying why).
pip's cache is shared with the host: on 2 shared cores the replay took 70-190 s and the
notebooks 20-55 s (2026-12-01, load 9-17); each step's time is in ``Replay.log``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time
import uuid

import nbformat
import pytest

from tests.conftest import wait_for
from tests.test_notebooks import MARKER, NOTEBOOKS, ROOT, processes_marked

BINDER = ROOT / "binder"
KNOWN = {"runtime.txt", "requirements.txt", "postBuild"}
BINDER_SHM = "64m"  # what Docker (so Binder's pods) give /dev/shm by default


def repository_files() -> list[str]:
    """The files a clone of this checkout would have (tracked and new, not ignored)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"replaying binder/ copies the repository with git ls-files: {exc}")
    return [p for p in listed.decode().split("\0") if p and (ROOT / p).is_file()]


def runtime_python() -> str:
    """The interpreter binder/runtime.txt names (``python-3.11`` -> ``python3.11``)."""
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert runtime.startswith("python-3."), f"binder/runtime.txt: {runtime!r}"
    version = runtime.removeprefix("python-")
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if not found:
        pytest.skip(f"binder/runtime.txt asks for Python {version}, not installed here")
    return found


class Replay:
    """A fresh copy of the repository with binder/'s environment built next to it."""

    def __init__(self, base: pathlib.Path):
        self.repo, self.venv = base / "repo", base / "venv"
        self.jupyter_home = base / "jupyter-home"  # no user-level kernelspec or config
        self.log: list[str] = []

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(PATH=os.pathsep.join([str(self.venv / "bin"), env["PATH"]]),
                   VIRTUAL_ENV=str(self.venv),
                   JUPYTER_CONFIG_DIR=str(self.jupyter_home / "config"),
                   JUPYTER_DATA_DIR=str(self.jupyter_home / "data"),
                   IPYTHONDIR=str(self.jupyter_home / "ipython"), **extra)
        return env

    def run(self, command: list[str], timeout: float, cwd: pathlib.Path | None = None,
            **env) -> subprocess.CompletedProcess:
        started = time.monotonic()
        done = subprocess.run(command, cwd=cwd or self.repo, env=self.env(**env), text=True,
                              capture_output=True, timeout=timeout)
        self.log.append(f"$ {' '.join(command)}  ({time.monotonic() - started:.1f} s)\n"
                        f"{done.stdout}{done.stderr}")
        assert done.returncode == 0, "\n".join(self.log[-1:])
        return done

    def build(self) -> None:
        unknown = {p.name for p in BINDER.iterdir()} - KNOWN
        assert not unknown, f"binder/ has files this replay does not know: {sorted(unknown)}"
        for name in repository_files():
            (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, self.repo / name)
        subprocess.run([runtime_python(), "-m", "venv", str(self.venv)], check=True, timeout=120)
        if (BINDER / "requirements.txt").exists():
            self.run(["pip", "install", "-r", "binder/requirements.txt"], timeout=600)
        if (BINDER / "postBuild").exists():
            assert os.access(BINDER / "postBuild", os.X_OK), "binder/postBuild must be executable"
            self.run(["./binder/postBuild"], timeout=300)

    def execute_notebooks(self, out: pathlib.Path, wrap: list[str] | None = None) -> dict:
        """``jupyter nbconvert --execute`` every notebook into ``out``; nothing left running.

        Returns ``{name: executed notebook}``; fails naming every cell that raised.
        """
        run_id = uuid.uuid4().hex
        # --allow-errors: run every notebook to its end (its last cell stops its cluster)
        # and report each failure below, not just the first one.
        command = ["jupyter", "nbconvert", "--to", "notebook", "--execute", "--allow-errors",
                   "--ExecutePreprocessor.timeout=120", "--output-dir", str(out),
                   *(f"notebooks/{p.name}" for p in NOTEBOOKS)]
        try:
            self.run((wrap or []) + command, timeout=600, **{MARKER: run_id})
        finally:
            wait_for(lambda: not processes_marked(run_id), timeout=20,
                     what="the notebooks' kernels and workers to exit")
        executed = {p.name: nbformat.read(out / p.name, as_version=4) for p in NOTEBOOKS}
        failures = [f"{name}, cell {i}: {o['ename']}: {o['evalue']}"
                    for name, nb in executed.items()
                    for i, c in enumerate(nb.cells) if c.cell_type == "code"
                    for o in c.outputs if o["output_type"] == "error"]
        assert not failures, "\n".join(failures)
        return executed


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    built = Replay(tmp_path_factory.mktemp("binder"))
    built.build()
    return built


@pytest.mark.timeout(600)
def test_binder_builds_jupyterlab_4_notebook_7_and_the_package(replay):
    probe = ("import importlib.metadata as md, scatter_magics\n"
             "print(md.version('jupyterlab'), md.version('notebook'), scatter_magics.__file__)")
    lab, notebook, package = replay.run(["python", "-c", probe], timeout=60,
                                        cwd=replay.venv).stdout.split()  # not the repo's copy
    assert lab.startswith("4.") and notebook.startswith("7."), (lab, notebook)
    assert package.startswith(str(replay.venv)), "the package is installed into the environment"
    assert (replay.repo / "notebooks" / "quickstart.ipynb").exists()


def private_small_dev_shm() -> tuple[list[str], str]:
    """A command prefix giving what follows a fresh 64 MiB tmpfs on /dev/shm, or why not.

    ``([], reason)`` where this machine cannot: a mount namespace needs root (CI runs as
    root) and unshare(1).
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return [], "a private /dev/shm needs root (a mount namespace); CI runs as root"
    if not shutil.which("unshare"):
        return [], "a private /dev/shm needs unshare(1) from util-linux"
    prefix = ["unshare", "-m", "sh", "-c",
              f'mount -t tmpfs -o size={BINDER_SHM} tmpfs /dev/shm && exec "$@"', "sh"]
    probe = subprocess.run(prefix + ["df", "-k", "/dev/shm"], capture_output=True, text=True)
    if probe.returncode != 0:
        return [], f"cannot mount a private /dev/shm here: {probe.stderr.strip()}"
    return prefix, probe.stdout


@pytest.fixture(scope="module")
def binder_dev_shm() -> tuple[list[str], str]:
    return private_small_dev_shm()


@pytest.mark.timeout(600)
def test_every_notebook_runs_in_the_binder_environment(replay, binder_dev_shm, tmp_path):
    """Under the 64 MiB /dev/shm a Binder container gets, where this machine can make one."""
    wrap, _ = binder_dev_shm
    executed = replay.execute_notebooks(tmp_path, wrap=wrap)
    if not wrap:
        return  # test_the_notebooks_ran_with_binders_64_mib_dev_shm says why
    # The demos are sized to fit: what they say about shared memory holds on Binder too.
    fell_back = [name for name, nb in executed.items()
                 if "SharedMemoryWarning" in "".join(o.get("text", "") for c in nb.cells
                                                     for o in c.get("outputs", []))]
    assert not fell_back, f"these notebooks overflow a 64 MiB /dev/shm: {fell_back}"
    large = executed["large-arrays.ipynb"]
    assert any("writeable: False" in o.get("text", "") for c in large.cells
               for o in c.get("outputs", [])), "the gathered array came from shared memory"


def test_the_notebooks_ran_with_binders_64_mib_dev_shm(binder_dev_shm):
    wrap, probe = binder_dev_shm
    if not wrap:
        pytest.skip(f"the notebooks ran under this machine's /dev/shm: {probe}")
    assert " 65536 " in probe, f"df -k /dev/shm in the namespace: {probe}"
