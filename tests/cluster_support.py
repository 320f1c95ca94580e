"""An embedded cluster in a process of its own, and a notebook joined to it.

:class:`ClusterProcess` runs a small script that starts a ``Client`` (so a cluster),
scatters, and waits on stdin, as another kernel or program would hold a cluster; it
registers in ``$JUPYTER_RUNTIME_DIR``, which the script inherits.

A :class:`Joined` shell and :func:`assert_recovers` are what a notebook joined to such a cluster must
see when it goes away (issue 21, item 3): every widget "not live" and why within 5 s, the
next magic one line saying the cluster is gone, nothing of the client left running, and
``%cluster start`` working in the same kernel.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap

import psutil
import pytest

from scatter_magics import discovery
from scatter_magics.errors import ClusterGoneError
from scatter_magics.notebook.widget import ClusterWidget, FuturesWidget
from tests.conftest import exited, our_threads, wait_for
from tests.test_magics import run

CLUSTER_SCRIPT = textwrap.dedent("""
    import sys
    from scatter_magics import Client
    n_workers, n_keys = int(sys.argv[1]), int(sys.argv[2])
    client = Client(n_workers=n_workers)
    futures = client.scatter(list(range(n_keys)), hash=False)
    print(client.cluster.registry_entry.id, flush=True)
    for line in sys.stdin:  # until the test closes our stdin (or the cluster is stopped)
        if line.startswith("run "):  # "run N": N tasks, the last one failing
            ran = [client.submit(abs, -i, key=f"abs-{i}") for i in range(int(line[4:]) - 1)]
            ran.append(client.submit(int, "x", key="int-bad"))
            client.gather(ran, errors="skip")
            futures += ran
            print("ran", flush=True)
            continue
        futures += client.scatter(list(range(int(line))), hash=False)  # a line: scatter more
        print("scattered", flush=True)
    client.close()
""")

GONE = ("ClusterGoneError: the cluster at {address} is gone ({reason}); start one with "
        "%cluster start, or join one with %cluster connect ADDRESS")


class ClusterProcess:
    """A cluster in a process of its own, as a kernel would run it."""

    def __init__(self, n_workers: int, n_keys: int):
        self.proc = subprocess.Popen([sys.executable, "-c", CLUSTER_SCRIPT, str(n_workers),
                                      str(n_keys)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.id = self.proc.stdout.readline().strip()
        assert self.id, "the cluster process did not start"
        self.worker_pids = [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)
                            if "scatter_magics.engine.worker" in c.cmdline()]  # not the
        # fork server they were forked from, which lives as long as the process

    def scatter(self, n_keys: int) -> None:
        """Scatter ``n_keys`` more keys in the cluster's own process."""
        self.proc.stdin.write(f"{n_keys}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "scattered"

    def stop(self) -> None:
        """Its owner closes the cluster (the script's ``client.close()``), and exits; our
        ends of its pipes are closed either way (a test may have killed it first)."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):  # (stdin of a killed process: nothing to flush)
                pipe.close()


class Joined:
    """A shell's connection to a :class:`ClusterProcess`, watched by two live widgets."""

    def __init__(self, shell, cluster: ClusterProcess):
        """``%cluster connect <id>`` in ``shell``, a scatter, and widgets following it."""
        self.threads_before = set(our_threads())
        run(shell, f"%cluster connect {cluster.id}")
        self.client = shell.user_ns["client"]
        self.address = self.client.scheduler_address
        future = run(shell, "v = [1, 2]\nw = 3\n%scatter v")
        assert future.result() == [1, 2]
        self.widgets = [FuturesWidget(self.client, {"v": future}), ClusterWidget(self.client)]
        assert all(w.live for w in self.widgets)
        assert len(connections(self.address)) == 1


def assert_recovers(shell, joined: Joined, cluster: ClusterProcess, reason: str,
                    first: str) -> None:
    """After the cluster went away: the widgets say ``not live: <reason>`` within 5 s,
    the magic ``first`` raises one line, the client left nothing running, and
    ``%cluster start`` works in the same shell."""
    wait_for(lambda: all(not w.live and w.not_live_reason for w in joined.widgets), timeout=5,
             what="every widget to say it is not live, and why")
    for widget in joined.widgets:
        assert widget.not_live_reason == reason
        assert f"not live: {reason}" in widget.to_html()
    # The sidebar no longer lists the connection, before the notebook runs anything.
    wait_for(lambda: connections(joined.address) == [], timeout=5,
             what="the kernel's connection to leave the registry")
    with pytest.raises(ClusterGoneError) as gone:
        run(shell, first)
    assert gone.value._render_traceback_() == [GONE.format(address=joined.address,
                                                           reason=reason)]
    assert joined.client.status == "closed" and "client" not in shell.user_ns
    wait_for(lambda: set(our_threads()) <= joined.threads_before, timeout=10,
             what="the client's loop thread to end")
    wait_for(lambda: all(exited(p) for p in cluster.worker_pids), timeout=10,
             what="the cluster's workers to exit")
    run(shell, "%cluster start -n 1")
    assert run(shell, "%scatter w").result() == 3
    run(shell, "%cluster stop")


def connections(address: str) -> list:
    return [e for e in discovery.live_entries() if e.connected and e.scheduler_address == address]
