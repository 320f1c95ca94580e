"""The cluster registry, kernel side: every cluster advertises itself while it runs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import psutil
import pytest
from conftest import wait_for

from scatter_magics import discovery


def entry_files() -> list[str]:
    directory = discovery.registry_dir()
    return sorted(p.name for p in directory.glob("cluster-*.json")) if directory.exists() else []


def test_a_client_registers_its_cluster_privately_until_closed(make_client):
    client = make_client(n_workers=1)
    entry = client.cluster.registry_entry
    assert entry.path.name in entry_files()
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(discovery.registry_dir().stat().st_mode) == 0o700
    fields = json.loads(entry.path.read_text())
    assert fields["scheduler_address"] == client.scheduler_address
    assert fields["secret"] == client.secret and fields["backend"] == "embedded"
    assert fields["pid"] == os.getpid() and fields["kernel_id"] is None
    assert client.secret not in repr(entry)
    assert discovery.find_entry(entry.id).scheduler_address == client.scheduler_address
    client.close()
    assert entry.path.name not in entry_files()
    assert discovery.find_entry(entry.id) is None


def test_the_magics_cluster_is_unregistered_by_cluster_stop(shell_with_magics):
    shell = shell_with_magics
    shell.run_line_magic("cluster", "start -n 1")
    entry = shell.user_ns["client"].cluster.registry_entry
    assert entry.path.exists()
    shell.run_line_magic("cluster", "stop")
    assert not entry.path.exists()


def test_a_script_that_exits_without_closing_leaves_no_entry():
    script = textwrap.dedent("""
        from scatter_magics import Client
        client = Client(n_workers=1)
        print(client.cluster.registry_entry.path, flush=True)
    """)  # no close(): interpreter exit must remove the file
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out.endswith(".json") and not os.path.exists(out)


def test_entries_of_killed_processes_are_pruned_by_the_reader():
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from scatter_magics import Client
        client = Client(n_workers=1)
        print(client.cluster.registry_entry.id, flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    cluster_id = proc.stdout.readline().strip()
    assert discovery.find_entry(cluster_id) is not None
    proc.kill()
    proc.wait()
    assert discovery.find_entry(cluster_id) is None
    assert f"cluster-{cluster_id}.json" not in entry_files()


def test_a_recycled_pid_is_not_the_registered_process():
    me = psutil.Process()
    assert discovery.process_alive(me.pid, me.create_time())
    assert not discovery.process_alive(me.pid, me.create_time() - 3600)


def test_a_stop_request_closes_the_owning_client_and_tells_its_subscribers(make_client):
    from scatter_magics.engine.wire.comm import connect

    client = make_client(n_workers=1)
    batches = []
    client.subscribe_events(batches.append)
    entry = client.cluster.registry_entry

    async def ask_to_stop():
        channel = await connect(client.scheduler_address, client.secret, {})
        await channel.request({"op": "register-client"})
        reply = await channel.request({"op": "close-cluster"})
        channel.close()
        return reply

    from scatter_magics.engine.wire.loop import LoopThread

    loop = LoopThread("scatter-magics-test")
    try:
        assert loop.sync(ask_to_stop(), 10) == {"closing": True}
    finally:
        loop.stop()
    wait_for(lambda: client.status == "closed", timeout=10, what="the client to close")
    assert [{"event": "closed", "reason": "the cluster was stopped at the request of another "
                                          "process"}] in batches
    # The client says "closed" before it closes the cluster it owns (Client._close), which
    # removes the entry: under load the check below ran in between.
    wait_for(lambda: not entry.path.exists(), timeout=10, what="the registry entry to go")


@pytest.fixture
def shell_with_magics(tmp_path):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config, ipython_dir=str(tmp_path / "ipython"))
    shell.run_line_magic("load_ext", "scatter_magics")
    yield shell
    shell.run_line_magic("unload_ext", "scatter_magics")
    InteractiveShell.clear_instance()


def test_cluster_connect_joins_a_registered_cluster_by_id_or_address(shell_with_magics):
    from IPython.core.error import UsageError

    from scatter_magics.notebook.connect import connect

    shell = shell_with_magics
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from scatter_magics import Client
        client = Client(n_workers=1)
        print(client.cluster.registry_entry.id, flush=True)
        sys.stdin.read()
        client.close()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        cluster_id = proc.stdout.readline().strip()
        address = discovery.find_entry(cluster_id).scheduler_address
        for target in (address, address.removeprefix("tcp://")):  # no secret given: the registry's
            backend = connect(target)
            assert backend.kind == "embedded" and backend.n_workers() == 1
            backend.close()
        shell.run_line_magic("cluster", f"connect {cluster_id}")
        client = shell.user_ns["client"]
        assert client.gather(client.scatter(21)) == 21
        shell.run_line_magic("cluster", "stop")  # disconnects; the cluster is not ours
        assert discovery.find_entry(cluster_id) is not None
        with pytest.raises(UsageError, match="no-such-id"):
            shell.run_line_magic("cluster", "connect no-such-id")
    finally:
        proc.stdin.close()
        proc.wait(20)


def test_a_widget_says_closed_when_its_cluster_is_stopped_from_outside(make_client):
    from scatter_magics.notebook.widget import FuturesWidget

    client = make_client(n_workers=1)
    widget = FuturesWidget(client, client.scatter([1, 2]))
    assert widget.live
    client.cluster._close_requested()  # what the scheduler's close-cluster op runs
    wait_for(lambda: not widget.live, timeout=10, what="the widget to say closed")
    # (The "closed" event goes out while close() still runs on its own thread.)
    wait_for(lambda: client.status == "closed", timeout=10, what="the client to be closed")
    assert client.status == "closed"


def test_names_say_which_kernel_or_program_runs_the_cluster_and_where(monkeypatch, tmp_path):
    assert discovery.default_name("5f0c2e1a-77b3-4c1e") == "kernel 5f0c2e1a"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path.parent))
    here = f"~/{tmp_path.name}"
    for argv, name in [(["/usr/bin/ipython3"], "IPython"),
                       (["/home/me/analysis.py"], "analysis.py"),
                       (["-c"], "python -c"),
                       (["/venv/lib/python3.11/site-packages/ipykernel_launcher.py", "-f", "x"],
                        "Jupyter kernel"),
                       (["/venv/lib/python3.11/site-packages/pytest/__main__.py"],
                        "python -m pytest")]:
        monkeypatch.setattr(sys, "argv", argv)
        assert discovery.default_name(None) == f"{name} in {here}"
    monkeypatch.setenv("HOME", "/nonexistent-home")
    assert discovery.default_name(None).endswith(f" in {tmp_path}")
