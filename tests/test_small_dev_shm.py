"""A 64 MiB ``/dev/shm`` (Docker's default, Binder's, most Kubernetes pods) never fails a scatter.

The cluster runs in a private mount namespace with its own small tmpfs on /dev/shm
(``unshare -m``, which needs root: CI runs as root; elsewhere the test is skipped).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

SCRIPT = textwrap.dedent("""
    import json, warnings
    import numpy as np
    from scatter_magics import Client
    from scatter_magics.errors import SharedMemoryWarning

    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The test suite's rule (our own warnings are errors) must not fail a fallback
        # that works: the warning is the user's line's, not the package's.
        warnings.filterwarnings("error", module="scatter_magics")
        with Client(n_workers=2) as client:
            big = np.ones(100_000_000 // 8)
            future = client.scatter(big)
            out["scatter"] = float(client.gather(future).sum())
            shared = client.scatter(np.full(100_000_000 // 8, 2.0), broadcast=True)
            out["broadcast_holders"] = len(client.who_has(shared)[shared.key])
            out["broadcast"] = float(client.submit(np.sum, shared).result())
            # Three 25 MB arrays: the first two fit in shared memory, the third does not.
            parts = [client.scatter(np.full(25_000_000 // 8, float(i))) for i in range(3)]
            out["parts"] = [float(client.gather(p)[0]) for p in parts]
            out["info"] = client.scheduler_info()["shared_memory"]
            from scatter_magics.backend import backend_for
            from scatter_magics.notebook.display import ClusterSummary
            out["headline"] = ClusterSummary.snapshot(backend_for(client), {}).headline()
            out["shm_warnings"] = [str(w.message) for w in caught
                                   if issubclass(w.category, SharedMemoryWarning)]
    print(json.dumps(out))
""")


def can_unshare() -> str | None:
    """Why a private /dev/shm cannot be mounted here, or None if it can."""
    if os.geteuid() != 0:
        return "mounting a private /dev/shm needs root (CI runs as root)"
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a private mount namespace here: {probe.stderr.strip()}"
    return None


def run_with_small_dev_shm(script: str) -> dict:
    """``script``'s last line of output (JSON), run under a private 64 MiB /dev/shm."""
    reason = can_unshare()
    if reason:
        pytest.skip(reason)
    command = f"mount -t tmpfs -o size=64m tmpfs /dev/shm && exec {sys.executable} -c \"$0\""
    run = subprocess.run(["unshare", "-m", "sh", "-c", command, script],
                         capture_output=True, text=True, timeout=110)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_scatter_broadcast_and_gather_of_100MB_with_a_64MiB_dev_shm():
    out = run_with_small_dev_shm(SCRIPT)
    assert out["scatter"] == 100_000_000 // 8
    assert out["broadcast_holders"] == 2 and out["broadcast"] == 2.0 * (100_000_000 // 8)
    assert out["parts"] == [0.0, 1.0, 2.0]
    assert out["info"]["mode"] == "socket-fallback"
    assert "large data over sockets: /dev/shm has" in out["headline"]  # what %cluster shows
    assert out["info"]["capacity"] == 64 * 2**20
    assert out["info"]["fallbacks"] >= 3  # the 100 MB scatter, the broadcast, the third part
    [warning] = out["shm_warnings"]  # once per cluster, naming what was measured
    assert "/dev/shm has" in warning and "64 MiB" in warning and "95.4 MiB" in warning


MAGICS_SCRIPT = textwrap.dedent("""
    import json, os, signal, time, warnings
    import numpy as np
    from IPython.core.interactiveshell import InteractiveShell

    warnings.simplefilter("ignore")  # the fallback's warning: the test above checks it
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "scatter_magics")
    shell.run_line_magic("cluster", "start -n 2")
    client = shell.user_ns["client"]
    shell.user_ns["big"] = np.arange(100_000_000 // 8, dtype=np.float64)
    future = shell.run_line_magic("scatter", "big --timeout 60")  # too big: the socket
    out = {"mode": client.scheduler_info()["shared_memory"]["mode"]}
    [holder] = client.who_has([future])[future.key]
    os.kill(client.scheduler_info()["workers"][holder]["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until another worker holds it
        holders = client.who_has([future]).get(future.key)
        if holders and holder not in holders:
            break
        time.sleep(0.05)
    out["status"] = future.status
    gathered = shell.run_line_magic("gather", "big")
    out["equal"] = bool(np.array_equal(gathered, shell.user_ns["big"]))
    shell.run_line_magic("cluster", "stop")
    print(json.dumps(out))
""")


def test_the_magics_send_socket_path_data_again_when_its_worker_dies():
    """With a 64 MiB /dev/shm a 100 MB array goes over the socket: no shared memory keeps
    it. Its only holder killed, the magics send it again from the unchanged variable."""
    out = run_with_small_dev_shm(MAGICS_SCRIPT)
    assert out == {"mode": "socket-fallback", "status": "finished", "equal": True}
