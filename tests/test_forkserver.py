"""Workers forked from the fork server: what they inherit, and that nothing outlives its owner."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import psutil
import pytest

from scatter_magics import Client
from scatter_magics.engine.cluster import forkserver, template_spawn
from tests.conftest import exited, wait_for, worker_pids

pytestmark = pytest.mark.skipif(not forkserver.available(), reason="the fork server: Linux")


def test_workers_are_forked_from_one_template_and_show_as_workers(make_client):
    client = make_client(n_workers=2)
    pids = worker_pids(client).values()
    [parent] = {psutil.Process(pid).ppid() for pid in pids}
    assert parent == forkserver.shared().process.pid  # this process's one fork server
    for name, proc in client.cluster.processes.items():
        cmdline = psutil.Process(proc.pid).cmdline()  # what `ps` shows: the worker's command
        assert cmdline[cmdline.index("-m") + 1] == "scatter_magics.engine.worker"
        assert cmdline[cmdline.index("--name") + 1] == name
        assert "--owner-pid" in cmdline and client.cluster.secret not in " ".join(cmdline)
    assert client.gather(client.map(abs, [-1, -2])) == [1, 2]


def test_a_forked_worker_gets_the_owners_cwd_environment_and_path_of_now(tmp_path, monkeypatch):
    forkserver.shared()  # already running before the change, as in a notebook
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "helper_module_in_cwd.py").write_text("VALUE = 42\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helper_module_on_path.py").write_text("VALUE = 43\n")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("SCATTER_MAGICS_TEST_VAR", "set after the fork server started")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path / "lib"), *filter(None, [os.environ.get("PYTHONPATH")])]))

    def read_cwd_env_and_modules():  # made here: pickled by value, not by module name
        import helper_module_in_cwd  # found through sys.path[0], the owner's cwd
        import helper_module_on_path  # through PYTHONPATH, as the owner has it now

        return (os.getcwd(), os.environ.get("SCATTER_MAGICS_TEST_VAR"),
                helper_module_in_cwd.VALUE, helper_module_on_path.VALUE)

    with Client(n_workers=1) as client:
        future = client.submit(read_cwd_env_and_modules, pure=False)
        assert future.result(timeout=30) == (str(tmp_path / "cwd"),
                                             "set after the fork server started", 42, 43)


def test_a_killed_fork_server_takes_its_workers_and_both_are_replaced(make_client):
    client = make_client(n_workers=2)
    kept = client.scatter(np.ones(1 << 20))  # 8 MiB: a shared-memory segment of the owner's
    old_workers = set(worker_pids(client).values())
    template = forkserver.shared().process
    template.kill()  # its workers get SIGTERM (PR_SET_PDEATHSIG), the owner lives on
    wait_for(lambda: all(exited(p) for p in old_workers), timeout=15,
             what="the dead fork server's workers to exit")
    wait_for(lambda: len(worker_pids(client)) == 2
             and not set(worker_pids(client).values()) & old_workers,
             timeout=30, what="two replacement workers")
    assert forkserver.shared().process.pid != template.pid  # a new one forked them
    assert client.scheduler_info()["supervision"]["restarts"] == 2
    assert client.submit(lambda: "alive", pure=False).result(timeout=30) == "alive"
    # The workers that died with it saw the owner alive: its segments stay.
    prefix = client.cluster.shm_pool.prefix
    assert any(name.startswith(prefix) for name in os.listdir("/dev/shm"))
    del kept


def test_a_descriptor_the_owner_left_inheritable_is_not_held_by_the_fork_server(make_client):
    # A library's pipe, left inheritable: its reader must see end-of-file once the owner
    # closes its end, not wait as long as the (long-lived) fork server holds a copy.
    forkserver.stop()
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        client = make_client(n_workers=1)  # a new template, spawned with the end inheritable
        assert client.submit(abs, -1).result(timeout=30) == 1  # it ran: its start is done
        template = forkserver.shared().process.pid
        os.close(write_end)
        write_end = None
        readable, _, _ = select.select([read_end], [], [], 10)
        assert readable and os.read(read_end, 1) == b"", \
            f"a process holds the pipe's write end: {holders_of(read_end, template)}"
    finally:
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)


def test_a_fork_server_started_from_a_thread_that_ends_outlives_that_thread(make_client):
    # The template asks for SIGTERM when its parent thread ends (PR_SET_PDEATHSIG, once
    # it has started): that must be the fork server's own thread, not the caller's.
    forkserver.stop()
    may_end = threading.Event()
    starter = threading.Thread(target=lambda: (template_spawn.prestart(), may_end.wait(60)))
    starter.start()
    client = make_client(n_workers=1)
    assert client.submit(abs, -3).result(timeout=30) == 3  # the template has started
    template = forkserver.shared().process
    may_end.set()
    starter.join()
    client.cluster.scale(2)  # a second worker, forked after the starter ended
    assert {psutil.Process(pid).ppid() for pid in worker_pids(client).values()} == {template.pid}
    assert forkserver.shared().process is template and template.poll() is None


def holders_of(read_end: int, *pids: int) -> list[int]:
    pipe = os.readlink(f"/proc/self/fd/{read_end}")
    held = []
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if pipe in links:
            held.append(pid)
    return held


OWNER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from scatter_magics import Client
    from scatter_magics.engine.cluster import forkserver, template_spawn

    client = Client(n_workers=2)
    kept = client.scatter(np.ones(1 << 20))  # 8 MiB: a shared-memory segment
    pids = [w["pid"] for w in client.scheduler_info()["workers"].values()]
    print(forkserver.shared().process.pid, client.cluster.shm_pool.prefix, *pids, flush=True)
    if sys.argv[1] == "kill-me":
        time.sleep(600)
    sys.stdin.readline()  # the test has seen them all alive
    if sys.argv[1] == "close":
        client.close()
        forkserver.stop()
        print("closed", flush=True)
        time.sleep(600)
    # "exit": the interpreter's exit ends the cluster and the fork server (atexit)
""")


def start_owner(tmp_path, how: str):
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    owner = subprocess.Popen([sys.executable, str(script), how], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    template, prefix, *pids = owner.stdout.readline().split()
    pids = [int(template), *map(int, pids)]
    assert len(pids) == 3 and not any(exited(p) for p in pids)
    return owner, prefix, pids


@pytest.mark.parametrize("how", ["kill-me", "close", "exit"])
def test_no_fork_server_or_worker_outlives_its_owner(tmp_path, how):
    owner, prefix, pids = start_owner(tmp_path, how)
    try:
        if how == "kill-me":
            owner.kill()  # SIGKILL: no atexit, no close
            owner.wait(timeout=60)
        elif how == "close":  # the owner lives on
            owner.stdin.write("go on\n")
            owner.stdin.flush()
            assert owner.stdout.readline().strip() == "closed"
            assert exited(pids[0])  # stop() waited for the fork server
        else:
            owner.stdin.write("go on\n")
            owner.stdin.flush()
            assert owner.wait(timeout=60) == 0
        wait_for(lambda: all(exited(p) for p in pids), timeout=15,
                 what="the fork server and the workers to exit")
        wait_for(lambda: not any(n.startswith(prefix) for n in os.listdir("/dev/shm")),
                 timeout=10, what="the owner's shared memory to be unlinked")
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
        owner.stdin.close()
        for pid in pids:
            if not exited(pid):
                os.kill(pid, signal.SIGKILL)


def test_spawn_is_still_there_and_says_what_it_accepts():
    with Client(n_workers=1) as forked:
        assert all(isinstance(p, forkserver.ForkedProcess)
                   for p in forked.cluster.processes.values())
    from scatter_magics import LocalCluster

    with LocalCluster(n_workers=1, start_method="spawn") as cluster:
        assert all(isinstance(p, subprocess.Popen) for p in cluster.processes.values())
        with Client(cluster) as client:
            assert client.gather(client.scatter(7)) == 7
    with pytest.raises(ValueError, match="start_method must be one of"):
        LocalCluster(n_workers=1, start_method="fork")
