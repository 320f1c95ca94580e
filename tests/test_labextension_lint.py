"""The labextension and the widget's shared modules pass the extension template's linters
(``jlpm lint:check`` in ``labextension/``: stylelint, prettier, eslint).

The tools come from ``labextension/node_modules``, which ``pip install -e ".[test]"``
fills (its editable build runs ``jlpm install``); ``jlpm`` is jupyter-builder's, a
dependency of jupyterlab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node_support import node, skip_or_fail

LABEXTENSION = Path(__file__).resolve().parent.parent / "labextension"

pytestmark = pytest.mark.timeout(240)


def jlpm() -> str:
    # Beside this interpreter first: pytest may run from a venv that is not activated.
    beside = Path(sys.executable).parent / "jlpm"
    found = str(beside) if beside.exists() else shutil.which("jlpm")
    if found is None:
        skip_or_fail("jlpm is not installed (it comes with jupyterlab)")
    return found


def test_lint_check_passes():
    node()  # jlpm runs yarn with node: skip (or under CI fail) without it
    if not (LABEXTENSION / "node_modules" / ".bin" / "eslint").exists():
        skip_or_fail("labextension/node_modules has no linters: run pip install -e '.[test]'"
                     " (or jlpm install in labextension/)")
    command = jlpm()
    # The scripts call jlpm again (``jlpm stylelint:check && ...``): it must be on PATH.
    path = os.pathsep.join([str(Path(command).parent), os.environ.get("PATH", "")])
    done = subprocess.run([command, "lint:check"], cwd=LABEXTENSION, capture_output=True,
                          text=True, timeout=200, env={**os.environ, "PATH": path})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
