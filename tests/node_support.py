"""Running the front ends' JavaScript in node, from pytest.

The JavaScript tests skip on a machine without node, but never under CI (``CI`` set):
there a missing node is a broken set-up, and a skip would hide it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest


def skip_or_fail(why: str) -> None:
    """Skip the test for ``why``; under CI, fail it instead."""
    if os.environ.get("CI"):
        pytest.fail(f"this test must run under CI: {why}")
    pytest.skip(why)


def node() -> str:
    """The path of ``node``, or skip (under CI, fail) the test."""
    path = shutil.which("node")
    if path is None:
        skip_or_fail("node is not on PATH")
    return path


def run_module(script: str, payload) -> object:
    """Run ``script`` as an ES module with ``payload`` as JSON on stdin; its stdout, parsed.

    The script reads its input with ``JSON.parse(readFileSync(0, "utf8"))`` and writes
    its answer with ``console.log(JSON.stringify(...))``.
    """
    done = subprocess.run([node(), "--input-type=module", "-e", script],
                          input=json.dumps(payload), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
