"""Dask's own futures notebooks run on scatter_magics with only the import line changed.

tests/dask_notebooks/ holds dask-examples' ``futures.ipynb`` and dask-tutorial's
``05_futures.ipynb`` as published, but for ``from dask.distributed import ...`` read as
``from scatter_magics import ...`` (README.md there says where they come from). Each
runs in a fresh kernel on both clients, every cell to the end: what passes on Dask must
pass here (issue 19, "Done when"). For the suite's time budget the run shrinks their
sizes (``SMALLER``: fewer tasks, shorter sleeps, fewer workers), never what a cell
calls, and closes the client at the end so nothing outlives the kernel.
"""

from __future__ import annotations

import os
import pathlib
import uuid

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import wait_for
from tests.test_notebooks import KERNEL, MARKER, ROOT, processes_marked

pytest.importorskip("dask")
pytest.importorskip("distributed")

HERE = ROOT / "tests" / "dask_notebooks"
NOTEBOOKS = sorted(HERE.glob("*.ipynb"))
IMPORT = "from scatter_magics import"
DASK_IMPORT = "from dask.distributed import"

# (notebook, text in a cell, the same cell made smaller): sizes only, never what it calls.
SMALLER = [
    ("futures.ipynb", "time.sleep(random.random())", "time.sleep(random.random() / 20)"),
    ("futures.ipynb", "for i in range(256):", "for i in range(32):"),
    ("futures.ipynb", "client.cluster.scale(10)", "client.cluster.scale(3)"),
    ("05_futures.ipynb", "sleep(1)", "sleep(0.05)"),
    ("05_futures.ipynb", "sleep(2)", "sleep(0.1)"),
    ("05_futures.ipynb", "Client(n_workers=4)", "Client(n_workers=2)"),
]
# Cells of the run's own after the notebook's: its last result is the right one (a cell
# can pass with wrong values: an as_completed loop adds up failed futures without a
# word), then the cluster ends before the kernel.
CHECKS = {
    "futures.ipynb": "assert next(seq).result() == sum(3 * (i + 1) + 1 for i in range(len(zs)))",
    "05_futures.ipynb": "assert future_z.result() == sum(range(1, 11))",
}
CLOSE = "client.close()"
# The tutorial's flaky_inc calls ``random`` imported from the random module: a method of
# the module's Random object, which pickles by value, so every task of a map unpickles
# the kernel's random state and draws the same number, and a retry draws it again. One
# run in five the first draw is < 0.2 and a cell with retries=5 fails on Dask as here.
# Seeded before that cell, the draws are the same every run: seed 0's first ten are all
# >= 0.2 (the kernel's own draws in between move it along that list).
SEEDS = {"05_futures.ipynb": ("def flaky_inc", "import random\nrandom.seed(0)")}


def prepared(path: pathlib.Path, backend: str) -> nbformat.NotebookNode:
    """The notebook as the run executes it on ``backend`` (``scatter_magics`` or ``dask``)."""
    nb = nbformat.read(path, as_version=4)
    if path.name in SEEDS:
        before, source = SEEDS[path.name]
        at = next(i for i, c in enumerate(nb.cells) if before in c.source)
        nb.cells.insert(at, new_cell(source))
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for name, old, new in SMALLER:
            if name == path.name:
                cell.source = cell.source.replace(old, new)
        if backend == "dask":
            cell.source = cell.source.replace(IMPORT, DASK_IMPORT)
    nb.cells += [new_cell(CHECKS[path.name]), new_cell(CLOSE)]
    return nb


def new_cell(source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    del cell["id"]  # the copies are nbformat 4.4, whose cells have no id
    return cell


def failures(nb: nbformat.NotebookNode) -> dict[int, str]:
    """``{code cell number: "Type: message"}`` of the cells that raised."""
    failed = {}
    code = [c for c in nb.cells if c.cell_type == "code"]
    for number, cell in enumerate(code):
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                failed[number] = f"{output['ename']}: {output['evalue']}\n{cell.source}"
    return failed


def run(nb: nbformat.NotebookNode, out: pathlib.Path) -> str:
    """Execute ``nb`` in a fresh kernel, every cell even after an error; its run id."""
    run_id = uuid.uuid4().hex
    env = dict(os.environ, **{MARKER: run_id})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    client = NotebookClient(nb, timeout=120, startup_timeout=60, kernel_name=KERNEL,
                            allow_errors=True, resources={"metadata": {"path": str(HERE)}})
    try:
        client.execute(env=env)
    finally:
        nbformat.write(nb, out)  # the outputs, for a failing run
    return run_id


def test_the_copies_differ_from_dask_only_in_the_import_line():
    for path in NOTEBOOKS:
        code = [c.source for c in nbformat.read(path, as_version=4).cells
                if c.cell_type == "code"]
        assert any(IMPORT in s for s in code) and not any(DASK_IMPORT in s for s in code)
    assert {p.name for p in NOTEBOOKS} == {"futures.ipynb", "05_futures.ipynb"}
    for name, old, _ in SMALLER:  # each change still finds its text
        assert any(old in c.source for c in nbformat.read(HERE / name, as_version=4).cells), old


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["scatter_magics", "dask"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_of_dasks_futures_notebooks_runs(path, backend, tmp_path):
    nb = prepared(path, backend)
    run_id = run(nb, tmp_path / path.name)
    failed = failures(nb)
    assert not failed, f"{path.name} on {backend}: cells that raised:\n" + "\n\n".join(
        f"[{n}] {text}" for n, text in failed.items())
    wait_for(lambda: not processes_marked(run_id), timeout=30,
             what=f"the kernel and workers of {path.name} on {backend} to exit")
