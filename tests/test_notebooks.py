"""Every notebook under notebooks/ runs headless, top to bottom, without an error.

The kernel is the ``python3`` kernelspec resolved the way Jupyter does; it must start
this virtualenv's Python (``pip install ipykernel`` in the venv provides such a spec; if
another one shadows it, run ``python -m ipykernel install --sys-prefix``).
"""

from __future__ import annotations

import os
import pathlib
import sys
import uuid

import nbformat
import psutil
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from tests.conftest import wait_for

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "python3"
MARKER = "SCATTER_MAGICS_NOTEBOOK_RUN"  # in the kernel's env, so in its workers' too


def test_there_are_notebooks():
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)


def test_the_kernel_is_this_virtualenvs_python():
    argv0 = KernelSpecManager().get_kernel_spec(KERNEL).argv[0]
    # jupyter_client starts a spec whose argv[0] is "python" with sys.executable
    assert argv0 in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}") \
        or os.path.realpath(argv0) == os.path.realpath(sys.executable), (
        f"kernel {KERNEL!r} runs {argv0}, not {sys.executable}: "
        f"run `python -m ipykernel install --sys-prefix`")


def processes_marked(run_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER) == run_id:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def execute(path: pathlib.Path, tmp_path: pathlib.Path) -> tuple[nbformat.NotebookNode, str]:
    """Run the notebook in a fresh kernel; return it with its outputs, and the run's id."""
    nb = nbformat.read(path, as_version=4)
    run_id = uuid.uuid4().hex
    env = dict(os.environ, **{MARKER: run_id})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    client = NotebookClient(nb, timeout=120, startup_timeout=60, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(env=env)
    finally:
        nbformat.write(nb, tmp_path / path.name)  # the outputs, for a failing run
    return nb, run_id


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_leaves_no_process(path, tmp_path):
    nb, run_id = execute(path, tmp_path)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", output
    wait_for(lambda: not processes_marked(run_id), timeout=20,
             what=f"the kernel and workers of {path.name} to exit")


@pytest.mark.timeout(300)
def test_quickstart_shows_the_broadcast_future_as_a_table(tmp_path):
    nb, _ = execute(ROOT / "notebooks" / "quickstart.ipynb", tmp_path)
    scatter_cell = next(c for c in nb.cells
                        if c.cell_type == "code" and "%scatter df --broadcast" in c.source)
    html = "".join(o["data"]["text/html"] for o in scatter_cell.outputs
                   if "text/html" in o.get("data", {}))
    assert "<table" in html and "DataFrame" in html and "worker-0, worker-1" in html
    stream = "".join(o.get("text", "") for o in scatter_cell.outputs)
    assert "its client is `client`" in stream
