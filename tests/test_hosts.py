"""Several hosts: a Dask scheduler and nanny'd workers, each in a network namespace.

Each "host" is a network namespace this test makes, with its own address on a bridge in
a private range (10.213.N.0/24, N from the test's pid) and its own 64 MiB ``/dev/shm``
(a private mount namespace: ``unshare -m``); the notebook's kernel (here an IPython shell)
stays in the root namespace and reaches them through the bridge. Only addresses inside
the namespaces this test made are used. Namespaces, veths and the bridge go in a
``finally``, and leftovers of a killed run (their pid is gone) at the start.

Root only (``ip netns`` needs CAP_SYS_ADMIN): skipped elsewhere; CI runs as root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

import psutil
import pytest

distributed = pytest.importorskip("distributed")

from scatter_magics.notebook.widget import FuturesWidget  # noqa: E402
from tests.conftest import wait_for  # noqa: E402
from tests.dask_support import DASK, ENV, ROOT  # noqa: E402
from tests.test_magics import ip, run  # noqa: E402,F401 (ip: fixture)

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"),
                       reason="network namespaces need root, iproute2 and unshare"),
]

PREFIX = "smh"  # every namespace and link this test makes: smh<pid>... (IFNAMSIZ: 15)
SHM_SIZE = 64 * 2**20


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def clear_leftovers() -> None:
    """Namespaces and links of runs whose process is gone (a killed run)."""
    alive = lambda pid: psutil.pid_exists(int(pid))  # noqa: E731
    for name in sh("ip", "netns", "list").split():
        match = re.fullmatch(rf"{PREFIX}(\d+)n\d", name)
        if match and not alive(match.group(1)):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    for name in re.findall(rf"^\d+: ({PREFIX}\d+[bv]\d*)[@:]", sh("ip", "-o", "link"), re.M):
        pid = re.match(rf"{PREFIX}(\d+)", name).group(1)
        if not alive(pid):
            subprocess.run(["ip", "link", "del", name], capture_output=True)


class Hosts:
    """A bridge in the root namespace and ``n`` namespaces plugged into it."""

    def __init__(self, n: int):
        pid = os.getpid()
        self.subnet = f"10.213.{pid % 200 + 20}"
        self.bridge = f"{PREFIX}{pid}b"
        self.names = [f"{PREFIX}{pid}n{i}" for i in range(n)]
        self.veths = [f"{PREFIX}{pid}v{i}" for i in range(n)]
        self.processes: list[subprocess.Popen] = []

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 2}"

    def create(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, (name, veth) in enumerate(zip(self.names, self.veths, strict=True)):
            sh("ip", "netns", "add", name)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
            sh("ip", "link", "set", f"{veth}p", "netns", name)
            sh("ip", "link", "set", veth, "master", self.bridge)
            sh("ip", "link", "set", veth, "up")
            inside = ("ip", "netns", "exec", name, "ip")
            sh(*inside, "addr", "add", f"{self.address(i)}/24", "dev", f"{veth}p")
            sh(*inside, "link", "set", f"{veth}p", "up")
            sh(*inside, "link", "set", "lo", "up")

    def run(self, i: int, args: list[str], log_path) -> subprocess.Popen:
        """``args`` on host ``i``, with a private 64 MiB ``/dev/shm``."""
        script = f'mount -t tmpfs -o size={SHM_SIZE} tmpfs /dev/shm && exec "$@"'
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.names[i], "unshare", "-m", "--propagation",
                 "private", "sh", "-c", script, "sh", *args], stdout=log,
                stderr=subprocess.STDOUT, cwd=ROOT, env=ENV)
        self.processes.append(process)
        return process

    def destroy(self) -> None:
        for process in self.processes:
            _kill_tree(process)
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        for link in (*self.veths, self.bridge):
            subprocess.run(["ip", "link", "del", link], capture_output=True)


def _kill_tree(process: subprocess.Popen) -> None:
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait(10)
    psutil.wait_procs(family, timeout=10)


@pytest.fixture
def hosts(tmp_path):
    clear_leftovers()
    made = Hosts(3)  # the scheduler's host and two workers'
    try:
        made.create()
        scheduler = f"tcp://{made.address(0)}:8786"
        made.run(0, [DASK, "scheduler", "--host", made.address(0), "--port", "8786",
                     "--no-dashboard"], tmp_path / "scheduler.log")
        for i in (1, 2):
            made.run(i, [DASK, "worker", scheduler, "--host", made.address(i), "--nanny",
                         "--name", f"worker-{i - 1}", "--nthreads", "1", "--memory-limit",
                         "512MiB", "--no-dashboard"], tmp_path / f"worker-{i}.log")
        made.scheduler = scheduler
        yield made
    finally:
        made.destroy()
    assert not [n for n in sh("ip", "netns", "list").split() if n in made.names]


def test_a_notebook_drives_workers_on_other_hosts(ip, hosts):
    with distributed.Client(hosts.scheduler, timeout=60) as observer:
        observer.wait_for_workers(2, timeout=60)
        workers = observer.scheduler_info()["workers"]
        assert {a.split("://")[1].rsplit(":", 1)[0] for a in workers} == {
            hosts.address(1), hosts.address(2)}  # only the namespaces' addresses
        shm = observer.run(lambda: os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize)
        assert set(shm.values()) == {SHM_SIZE}  # each host its own /dev/shm

        run(ip, f"%cluster connect {hosts.scheduler}")
        client = ip.user_ns["client"]
        fut = run(ip, "import numpy as np\nx = np.arange(2_000_000)\n%scatter x --broadcast")
        widget = FuturesWidget(client, {"x": fut})
        wait_for(lambda: widget.rows and set(widget.rows[0]["workers"]) == set(workers),
                 timeout=10, what="the live widget to show the broadcast on both hosts")
        assert (run(ip, "%gather x") == ip.user_ns["x"]).all()

        by_name = {w["name"]: a for a, w in workers.items()}
        observer.restart_workers([by_name["worker-0"]], timeout=60)  # through its nanny
        wait_for(lambda: len(client.who_has(fut)[fut.key]) == 2
                 and by_name["worker-0"] not in client.who_has(fut)[fut.key], timeout=30,
                 what="the broadcast to be restored on the restarted worker")
        restarted = set(client.who_has(fut)[fut.key])
        wait_for(lambda: set(widget.rows[0]["workers"]) == restarted, timeout=10,
                 what="the widget to follow the restart")
        widget.close()

        run(ip, "%cluster stop")
        assert len(observer.nthreads()) == 2  # the cluster keeps running
