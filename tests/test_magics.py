"""%scatter, %gather and %cluster, driven through a real InteractiveShell.

The tests that start and stop their own cluster come first and need no other client to
be running; the rest share conftest's module-scoped two-worker ``client``, which the
magics find through ``get_client()``. Keep that order: a test that stops a cluster
after the shared client exists would leave ``get_client()`` without a default.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import sys
import threading
import time
import types
from concurrent.futures import CancelledError

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets import TraitError
from traitlets.config import Config

from scatter_magics import Client, Future, get_client
from scatter_magics.backend import backend_for, is_future
from scatter_magics.errors import ClientClosedError
from scatter_magics.notebook.display import ClusterSummary, ScatterResult
from scatter_magics.notebook.magics import ScatterMagics
from scatter_magics.tokenize import tokenize
from tests.conftest import exited, wait_for, worker_pids, workers_info

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------ fixtures ---

def make_shell(ipython_dir, config: Config | None = None) -> InteractiveShell:
    config = config or Config()
    config.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config, ipython_dir=str(ipython_dir))
    shell.run_line_magic("load_ext", "scatter_magics")
    return shell


@pytest.fixture
def ip(tmp_path):
    """A fresh shell with the extension loaded; unloading closes a cluster it started."""
    shell = make_shell(tmp_path / "ipython")
    yield shell
    shell.run_line_magic("unload_ext", "scatter_magics")
    InteractiveShell.clear_instance()


@pytest.fixture
def no_client():
    """These tests see what happens when no client is running at all."""
    try:
        current = get_client()
    except ValueError:
        return
    pytest.fail(f"{current!r} is running; this test needs none (keep test_magics.py in order)")


@pytest.fixture(scope="module", params=["embedded", "dask"])
def client(request, tmp_path_factory):
    """The shared two-worker cluster: an embedded one, or the real Dask cluster of
    conftest's ``dask_cluster`` reached through ``%cluster connect --scheduler-file``."""
    if request.param == "embedded":
        with Client(n_workers=2, threads_per_worker=1) as embedded:
            yield embedded
        return
    scheduler_file = request.getfixturevalue("dask_cluster").scheduler_file
    shell = make_shell(tmp_path_factory.mktemp("ipython"))
    run(shell, f"%cluster connect --scheduler-file {scheduler_file}")
    session = magics(shell).session
    backend, session.owned = session.owned, None  # the module's, not the shell's
    shell.run_line_magic("unload_ext", "scatter_magics")
    InteractiveShell.clear_instance()
    yield backend.client
    backend.close()


@pytest.fixture
def shared(ip, client):
    """``ip`` whose magics use the module's shared two-worker ``client``."""
    assert get_client() is client, "the shared client must be the default one"
    ip.user_ns["client"] = client
    yield ip
    assert client.status == "running", "a test closed the shared client"


def magics(shell) -> ScatterMagics:
    return shell.magics_manager.registry["ScatterMagics"]


def run(shell, cell: str):
    """Run a cell like a notebook does; return its value, re-raising what it raised."""
    result = shell.run_cell(cell)
    if result.error_before_exec or result.error_in_exec:
        raise result.error_before_exec or result.error_in_exec
    return result.result


def usage_error(shell, line: str) -> str:
    magic, _, rest = line.lstrip("%").partition(" ")
    with pytest.raises(UsageError) as info:
        shell.run_line_magic(magic, rest)
    return str(info.value)


def names_of(client, addresses) -> set[str]:
    workers = workers_info(client)
    return {workers[a]["name"] for a in addresses}


def gone(pids) -> bool:
    return all(exited(p) for p in pids)


def until_path_exists():
    """A task that runs until a file exists: a long computation the test can end."""
    def wait_for_path(path):
        import os
        import time
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "released"
    return wait_for_path


def _main_thread_waits_in_sync() -> bool:
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "sync" and code.co_filename.endswith(
                (os.path.join("scatter_magics", "engine", "wire", "loop.py"),
                 os.path.join("distributed", "utils.py"))):
            return True
        frame = frame.f_back
    return False


def press_ctrl_c_when_blocked() -> threading.Thread:
    """Send SIGINT to the main thread once it blocks in the client's ``sync()``."""
    def press():
        wait_for(_main_thread_waits_in_sync, timeout=20, what="the magic to block")
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    presser = threading.Thread(target=press, daemon=True)
    presser.start()
    return presser


# ------------------------------------------------ the magics' own cluster ---

def test_first_scatter_starts_the_configured_cluster(ip, no_client):
    run(ip, "%config ScatterMagics.n_workers = 1\n%config ScatterMagics.threads_per_worker = 2")
    with capture_output() as out:
        fut = run(ip, "x = [41, 1]\n%scatter x")
    client = ip.user_ns["client"]
    assert isinstance(client, Client) and get_client() is client
    assert "`client`" in out.stdout
    assert client.nthreads() and list(client.nthreads().values()) == [2]
    assert isinstance(fut, Future) and fut.key == f"x-{tokenize([41, 1])}"
    assert client.who_has(fut)[fut.key] == list(client.nthreads())
    assert run(ip, "%gather x") == [41, 1]

    pids = list(worker_pids(client).values())
    with capture_output() as out:
        assert run(ip, "%cluster stop") is None
    assert "Stopped the cluster and its 1 worker." in out.stdout
    assert client.status == "closed" and "client" not in ip.user_ns
    wait_for(lambda: gone(pids), what="the workers to exit")
    ip.user_ns["fut"] = fut
    with pytest.raises(ClientClosedError, match="fut belongs to a client that was closed"):
        ip.run_line_magic("gather", "fut")
    assert "nothing to gather" in usage_error(ip, "%gather x")


def test_no_cluster_is_a_usage_error(ip, no_client):
    assert "no cluster is running" in usage_error(ip, "%cluster")
    assert "%cluster start" in usage_error(ip, "%cluster")
    assert "no cluster started by %scatter" in usage_error(ip, "%cluster stop")
    run(ip, "y = 5")
    assert "nothing to gather" in usage_error(ip, "%gather y")
    assert "not defined" in usage_error(ip, "%gather nowhere")


def test_scatter_to_a_bogus_worker_with_no_cluster_starts_nothing(ip, no_client):
    ip.user_ns["df"] = [1, 2]
    message = usage_error(ip, "%scatter df -w bogus-worker")
    assert "bogus-worker" in message and "no cluster is running" in message
    assert magics(ip).session.owned is None and "client" not in ip.user_ns
    with pytest.raises(ValueError):
        get_client()


def test_cluster_start_with_options_then_stop(ip):
    summary = run(ip, "%cluster start -n 2 --threads 2 --memory-limit 300MiB")
    client = ip.user_ns["client"]
    assert isinstance(summary, ClusterSummary) and get_client() is client
    workers = client.scheduler_info()["workers"].values()
    assert sorted(w["name"] for w in workers) == ["worker-0", "worker-1"]
    assert {(w["nthreads"], w["memory_limit"]) for w in workers} == {(2, 300 * 2**20)}
    assert "2 workers, 4 threads" in repr(summary)
    assert "already running" in usage_error(ip, "%cluster start -n 1")

    pids = list(worker_pids(client).values())
    run(ip, "%cluster stop")
    assert client.status == "closed"
    wait_for(lambda: gone(pids), what="the workers to exit")


def test_unload_ext_closes_the_cluster_and_removes_the_magics(ip):
    run(ip, "%cluster start -n 1")
    client = ip.user_ns["client"]
    instance = magics(ip)
    run(ip, "%unload_ext scatter_magics")
    assert client.status == "closed"
    assert instance not in ip.configurables
    with pytest.raises(UsageError, match="not found"):
        ip.run_line_magic("scatter", "x")
    assert Future not in ip.display_formatter.formatters["text/html"].type_printers
    run(ip, "%load_ext scatter_magics")  # and it loads again
    assert "scatter" in ip.magics_manager.magics["line"]


def test_a_client_variable_of_the_user_is_not_replaced(ip):
    ip.user_ns["client"] = "mine"
    with capture_output() as out:
        run(ip, "%cluster start -n 1")
    assert ip.user_ns["client"] == "mine"
    assert "get_client()" in out.stdout
    started = magics(ip).session.owned.client
    assert get_client() is started
    run(ip, "%cluster stop")
    assert ip.user_ns["client"] == "mine" and started.status == "closed"


def test_gathering_futures_of_two_clients_at_once_is_a_usage_error(ip, make_client):
    one, two = make_client(n_workers=1), make_client(n_workers=1)
    ip.user_ns.update(a=one.scatter(1), b=two.scatter(2))
    assert "different clients" in usage_error(ip, "%gather a b")
    assert run(ip, "%gather a") == 1 and run(ip, "%gather b") == 2


def test_ctrl_c_during_scatter_interrupts_the_cell_and_the_cluster_stays_usable(
        ip, make_client):
    client = make_client(n_workers=0)  # a scatter waits for a worker to appear
    ip.user_ns["x"] = [1, 2, 3]
    presser = press_ctrl_c_when_blocked()
    result = ip.run_cell("%scatter x")
    presser.join(5)
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert client.status == "running" and client.who_has() == {}
    client.cluster.scale(1)
    fut = run(ip, "%scatter x")
    assert client.who_has(fut)[fut.key] and run(ip, "%gather x") == [1, 2, 3]


# ------------------------------------------------ configuration and parsing ---

def test_config_reaches_the_magics(ip, caplog):
    run(ip, "%config ScatterMagics.n_workers = 3")
    run(ip, "%config ScatterMagics.memory_limit = '256MiB'")
    run(ip, "%config ScatterMagics.timeout = 7.5")
    m = magics(ip)
    assert (m.n_workers, m.memory_limit, m.timeout) == (3, "256MiB", 7.5)
    with capture_output() as out:
        run(ip, "%config ScatterMagics")
    for name in ("n_workers", "threads_per_worker", "memory_limit", "timeout"):
        assert name in out.stdout
    run(ip, "%config ScatterMagics.n_workers = 0")  # %config logs the TraitError
    assert m.n_workers == 3
    assert "should not be less than 1" in caplog.text
    with pytest.raises(TraitError):
        m.n_workers = 0


def test_profile_config_reaches_the_magics(tmp_path):
    config = Config()
    config.ScatterMagics.n_workers = 4
    config.ScatterMagics.threads_per_worker = 3
    shell = make_shell(tmp_path, config)
    try:
        assert (magics(shell).n_workers, magics(shell).threads_per_worker) == (4, 3)
    finally:
        shell.run_line_magic("unload_ext", "scatter_magics")
        InteractiveShell.clear_instance()


def test_help_shows_the_full_usage(ip):
    with capture_output() as out:
        run(ip, "%scatter?")
    for option in ("--broadcast", "--workers", "--no-direct", "--no-hash", "--timeout",
                   "--split", "--split-size", "--as", "NAME_OR_EXPR"):
        assert option in out.stdout
    for magic, options in (("gather", ("--errors", "--into", "--timeout", "--pieces")),
                           ("cluster", ("--threads", "--memory-limit", "-n"))):
        doc = ip.magics_manager.magics["line"][magic].__doc__
        assert all(o in doc for o in options)


@pytest.mark.parametrize("line, message", [
    ("%scatter", "NAME_OR_EXPR"),
    ("%scatter x --timeout -1", "seconds > 0"),
    ("%scatter x --timeout soon", "seconds > 0"),
    ("%scatter x --as 1bad", "not a variable name"),
    ("%scatter undefined_name", "not defined"),
    ("%scatter x.missing", "has no attribute"),
    ("%scatter x[", "neither a variable name nor a Python expression"),
    ("%scatter x --split", "--split x: cannot cut a value of type int into pieces"),
    ("%scatter x --bogus", "unrecognized arguments"),
    ("%gather", "NAME_OR_EXPR"),
    ("%gather x --errors maybe", "invalid choice"),
    ("%gather x[0] --into", "--into rebinds names"),
    ("%cluster pause", "invalid choice"),
    ("%cluster stop -n 2", "go with %cluster start"),
    ("%cluster -n 2", "go with %cluster start"),
    ("%cluster start -n 0", "whole number >= 1"),
    ("%cluster start --threads two", "whole number >= 1"),
    ("%cluster start --memory-limit lots", "memory_limit"),
])
def test_mistakes_are_usage_errors_and_start_nothing(ip, line, message):
    ip.user_ns["x"] = 3
    assert message in usage_error(ip, line)
    assert magics(ip).session.owned is None


# ------------------------------------------------ on the shared cluster ---

def test_scatter_one_name(shared, client):
    fut = run(shared, "x = [1, 2]\n%scatter x")
    assert is_future(fut) and fut.status == "finished"
    assert fut.key == f"x-{tokenize([1, 2])}"
    assert len(client.who_has(fut)[fut.key]) == 1
    assert magics(shared).names["x"] is fut
    assert run(shared, "%gather x") == [1, 2]
    assert run(shared, "%scatter x").key == fut.key  # same content, same key


def test_scatter_output_shows_name_key_type_size_status_workers(shared, client):
    fut = run(shared, "x = list(range(1000))\n%scatter x --broadcast")
    data, _ = shared.display_formatter.format(fut)
    html = data["text/html"]
    for part in ("<table", ">x<", fut.key, ">list<", "KiB", ">finished<",
                 "worker-0, worker-1"):
        assert part in html
    assert data["text/plain"] == f"<Future x: finished, type: list, key: {fut.key}>"
    other = client.submit(len, [1, 2, 3])
    assert client.gather(other) == 3
    assert "<Future: finished, type: int" in shared.display_formatter.format(other)[0]["text/plain"]


def test_broadcast_puts_the_dataframe_on_every_worker(shared, client):
    pd = pytest.importorskip("pandas")
    shared.user_ns["df"] = pd.DataFrame({"a": range(100), "b": 1.5})
    fut = run(shared, "%scatter df --broadcast")
    assert sorted(client.who_has(fut)[fut.key]) == sorted(client.nthreads())
    summary = run(shared, "%cluster")
    assert all("df" in w["labels"] for w in summary.workers)
    assert "df" in summary._repr_html_() and "worker-1" in repr(summary)
    assert client.gather(client.submit(lambda d: int(d.a.sum()), fut)) == 4950
    pd.testing.assert_frame_equal(run(shared, "%gather df"), shared.user_ns["df"])


def test_several_names_give_a_dict_of_futures(shared, client):
    result = run(shared, "a, b, c = 1, 'two', [3]\n%scatter a b c")
    assert isinstance(result, ScatterResult) and isinstance(result, dict)
    assert list(result) == ["a", "b", "c"]
    assert all(is_future(f) and f.key.startswith(f"{n}-") for n, f in result.items())
    html = shared.display_formatter.format(result)[0]["text/html"]
    assert html.count("<tr>") == 4 and ">str<" in html
    assert "a  " in repr(result.table())
    assert run(shared, "%gather a b c") == {"a": 1, "b": "two", "c": [3]}
    shared.user_ns["r"] = result
    assert run(shared, "%gather r") == {"a": 1, "b": "two", "c": [3]}


@pytest.mark.parametrize("form", ["address", "host:port", "name"])
def test_split_to_chosen_workers(shared, client, form):
    address = sorted(client.scheduler_info()["workers"])[1]
    spelled = {"address": address, "host:port": address.split("://")[1],
               "name": names_of(client, [address]).pop()}[form]
    futs = run(shared, f"rows = list(range(10, 14))\n%scatter rows --split -w {spelled}")
    assert isinstance(futs, list) and len(futs) == 4
    assert [f.key for f in futs] == [f"rows[{i}]-{tokenize(10 + i)}" for i in range(4)]
    assert all(list(client.who_has(f)[f.key]) == [address] for f in futs)
    assert run(shared, "%gather rows") == [10, 11, 12, 13]


def test_split_over_two_named_workers_then_names(shared, client):
    futs = run(shared, "rows = list(range(6))\n%scatter --split -w worker-0 worker-1 -- rows")
    placed = {a for f in futs for a in client.who_has(f)[f.key]}
    assert names_of(client, placed) <= {"worker-0", "worker-1"}
    assert len(placed) == 2  # round robin over both


@pytest.mark.parametrize("value, kind", [
    ({"k": 1, 2: "v"}, dict), ((1, 2), tuple), ({1, 2, 3}, set), (range(3), list),
])
def test_split_keeps_the_container_type(shared, value, kind):
    shared.user_ns["v"] = value
    futs = run(shared, "%scatter v --split")
    assert type(futs) is kind and len(futs) == len(value)
    if kind is dict:
        assert list(futs) == list(value) and futs["k"].key.startswith("v['k']-")
    expected = list(value) if kind is list else value
    assert run(shared, "%gather v") == expected


def test_no_hash_gives_random_keys_with_the_name(shared):
    first = run(shared, "x = 5\n%scatter x --no-hash")
    second = run(shared, "%scatter x --no-hash")
    assert first.key != second.key
    assert first.key.startswith("x-") and second.key.startswith("x-")
    assert first.key != f"x-{tokenize(5)}"


def test_as_binds_the_result(shared):
    fut = run(shared, "model = {'w': [0.5]}\n%scatter model -o fut --timeout 10")
    assert shared.user_ns["fut"] is fut
    box = run(shared, "box = type('Box', (), {})()\n%scatter model --as box.fut")
    assert shared.user_ns["box"].fut is box


def test_a_future_scatter_lets_go_is_released_at_once(shared):
    """Scattering a name again lets go of its old future then, not at the next garbage
    collection (its data stays on the workers as long as the future lives)."""
    import gc
    import weakref

    shared.user_ns["x"] = [1, 2]
    old = weakref.ref(shared.run_line_magic("scatter", "x"))
    gc.disable()
    try:
        shared.user_ns["x"] = [3, 4]
        shared.run_line_magic("scatter", "x")
        assert old() is None
    finally:
        gc.enable()


def test_a_changed_variable_lets_go_of_its_old_future_before_scattering_again(
        shared, monkeypatch):
    """The old value is stale once the variable changed: the name lets go of it before
    the new scatter, whose memory it would otherwise compete with. A name whose value
    did not change keeps its future through the scatter (nothing moves)."""
    import weakref

    backend_type = type(magics(shared).session.running_backend())
    alive_at_scatter = []
    real_scatter = backend_type.scatter

    def scatter(self, *args, **kwargs):
        alive_at_scatter.append(old() is not None)
        return real_scatter(self, *args, **kwargs)

    shared.user_ns["x"] = [1, 2]
    old = weakref.ref(shared.run_line_magic("scatter", "x"))
    monkeypatch.setattr(backend_type, "scatter", scatter)
    old = weakref.ref(shared.run_line_magic("scatter", "x"))  # unchanged: the same key
    shared.user_ns["x"] = [3, 4]
    new = shared.run_line_magic("scatter", "x")
    monkeypatch.undo()
    assert alive_at_scatter == [True, False]
    assert shared.run_line_magic("gather", "x") == [3, 4] and new.status == "finished"


def test_a_repeated_line_is_parsed_anew_each_time_it_is_wrong(shared):
    """Lines are parsed once and remembered; a bad one still fails every time, and
    what one magic call got is its own."""
    from scatter_magics.notebook.arguments import parse_line

    for _ in range(2):
        assert "not a number of seconds" in usage_error(shared, "%scatter x -t soon")
    first = parse_line(magics(shared).scatter, "a b -w worker-0")
    first.names.append("c")
    assert parse_line(magics(shared).scatter, "a b -w worker-0").names == ["a", "b"]


@pytest.mark.parametrize("flag", ["--direct", "--no-direct"])
def test_direct_and_through_the_scheduler(shared, client, flag):
    fut = run(shared, f"x = bytes(100_000)\n%scatter x {flag}")
    assert client.who_has(fut)[fut.key]
    assert run(shared, "%gather x") == bytes(100_000)


def test_dotted_names_and_expressions(shared):
    shared.user_ns["obj"] = types.SimpleNamespace(data=[1, 2, 3])
    fut = run(shared, "%scatter obj.data")
    assert fut.key.startswith("obj.data-")
    shared.user_ns["obj"].data = None
    run(shared, "%gather obj.data --into")
    assert shared.user_ns["obj"].data == [1, 2, 3]
    fut = run(shared, "%scatter obj.data[1:]")
    assert fut.key.startswith("obj.data[1:]-")
    assert run(shared, "%gather obj.data[1:]") == [2, 3]


def test_gather_into_rebinds_and_returns_nothing(shared):
    run(shared, "x = [7]\n%scatter x")
    shared.user_ns["x"] = "changed"
    assert run(shared, "%gather x --into") is None
    assert shared.user_ns["x"] == [7]


def test_gather_any_value_holding_futures_keeps_its_shape(shared, client):
    shared.user_ns["res"] = {"a": [client.submit(abs, -1), client.submit(abs, -2)],
                             "b": (client.submit(abs, -3), "plain")}
    assert run(shared, "%gather res") == {"a": [1, 2], "b": (3, "plain")}
    out = run(shared, "%gather res['a'] res")
    assert out == {"res['a']": [1, 2], "res": {"a": [1, 2], "b": (3, "plain")}}


def test_gather_prefers_futures_the_name_now_holds(shared, client):
    run(shared, "x = 1\n%scatter x")
    shared.user_ns["x"] = client.submit(abs, -9)
    assert run(shared, "%gather x") == 9


def test_gather_errors_raise_or_skip(shared, client):
    shared.user_ns["futs"] = [client.submit(int, "1"), client.submit(int, "x")]
    with pytest.raises(ValueError, match="invalid literal"):
        run(shared, "%gather futs")
    assert run(shared, "%gather futs --errors skip") == [1]


def shown_by(shell, cell: str):
    """Run ``cell`` as a notebook does (counted in the history); what it raised, and the
    lines it showed (IPython prints a failure's lines to stdout), without colours."""
    with capture_output() as out:
        result = shell.run_cell(cell, store_history=True)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    return result.error_in_exec, text.strip().splitlines()


def test_a_tasks_exception_shows_the_tasks_frames_and_tb_the_rest(shared, client):
    shared.run_cell("def broken(x):\n    y = x * 2\n    return y / 0", store_history=True)
    error, lines = shown_by(shared, "bad = client.submit(broken, 1)\n%gather bad")
    assert isinstance(error, ZeroDivisionError)  # its own class: `except` still catches it
    assert re.fullmatch(r"Traceback of task broken-[0-9a-f]{8} \(bad\), most recent call last:",
                        lines[0]), lines
    assert re.fullmatch(r"  Cell In\[\d+\], line 3, in broken", lines[1]), lines
    assert lines[2:] == ["    return y / 0", "ZeroDivisionError: division by zero"]
    _, rest = shown_by(shared, "%tb")  # the whole chain, for those who want it
    assert any("magics.py" in line for line in rest)


def test_a_cancelled_future_is_two_lines_naming_it(shared, client, tmp_path):
    shared.user_ns["gone"] = gone = client.submit(until_path_exists(), str(tmp_path / "never"),
                                                  pure=False)
    gone.cancel()
    error, lines = shown_by(shared, "%gather gone")
    assert isinstance(error, CancelledError)  # its own class: `except` still catches it
    assert lines == ["%gather gone: gone was cancelled: a cancelled future has no value.",
                     "Submit its task (or scatter its data) again."]
    _, rest = shown_by(shared, "%tb")
    assert any("CancelledError" in line for line in rest) and len(rest) > 2


def test_gather_mistakes(shared):
    run(shared, "x = 1\n%scatter x\ny = 2")
    message = usage_error(shared, "%gather nowhere")
    assert "'nowhere' is not defined" in message and "x" in message
    assert "nothing to gather: y (of type int) holds no futures" in usage_error(shared, "%gather y")


def test_unknown_worker_lists_the_known_ones_and_the_cluster_stays_usable(shared):
    shared.user_ns["x"] = 1
    message = usage_error(shared, "%scatter -w worker-99 -- x")
    assert "worker-99" in message and "worker-0" in message and "worker-1" in message
    assert run(shared, "x = 2\n%scatter x") is not None
    assert run(shared, "%gather x") == 2


def test_unpicklable_data_is_a_usage_error(shared):
    shared.user_ns["lock"] = threading.Lock()
    message = usage_error(shared, "%scatter lock")
    assert "cannot scatter lock" in message and "lock" in message
    assert run(shared, "z = 3\n%scatter z") is not None


def test_scatter_timeout_says_what_it_waited_for(shared):
    shared.user_ns["big"] = bytes(10 * 2**20)
    with pytest.raises(TimeoutError, match=r"%scatter big did not finish within 1e-09 s"):
        run(shared, "%scatter big --timeout 1e-9")
    assert run(shared, "small = 1\n%scatter small --timeout 30") is not None


def test_gather_timeout_then_the_result(shared, client, tmp_path):
    release = tmp_path / "release"
    shared.user_ns["slow"] = client.submit(until_path_exists(), str(release), pure=False)
    try:
        with pytest.raises(TimeoutError, match="%gather slow did not finish within 0.2 s: 1 of 1"):
            run(shared, "%gather slow --timeout 0.2")
        run(shared, "%config ScatterMagics.timeout = 0.2")
        with pytest.raises(TimeoutError, match="within 0.2 s"):
            run(shared, "%gather slow")
        run(shared, "%config ScatterMagics.timeout = None")
    finally:
        release.touch()
    assert run(shared, "%gather slow --timeout 30") == "released"


def test_ctrl_c_during_gather_interrupts_the_cell_and_the_cluster_stays_usable(
        shared, client, tmp_path):
    release = tmp_path / "release"
    shared.user_ns["slow"] = client.submit(until_path_exists(), str(release), pure=False)

    presser = press_ctrl_c_when_blocked()
    try:
        started = time.monotonic()
        result = shared.run_cell("%gather slow")
        assert isinstance(result.error_in_exec, KeyboardInterrupt)
        assert time.monotonic() - started < 20
        presser.join(5)
        assert client.status == "running" and shared.user_ns["slow"].status == "pending"
        assert run(shared, "after = {'ok': True}\n%scatter after") is not None
        assert run(shared, "%gather after") == {"ok": True}
    finally:
        release.touch()
    assert run(shared, "%gather slow --timeout 30") == "released"


def test_cluster_summary_lists_workers_and_their_keys(shared, client):
    fut = run(shared, "w = 'held'\n%scatter w -w worker-0")
    summary = run(shared, "%cluster")
    assert isinstance(summary, ClusterSummary)
    assert [w["name"] for w in summary.workers] == ["worker-0", "worker-1"]
    first = summary.workers[0]
    assert fut.key in first["keys"] and "w" in first["labels"]
    assert first["nthreads"] == 1 and first["memory_limit"] > 0 and first["nbytes"] > 0
    text = repr(summary)
    assert text.startswith("Cluster tcp://127.0.0.1:") and "2 workers, 2 threads" in text
    html = summary._repr_html_()
    assert html.startswith("<table") and "<caption" in html and "worker-0" in html
    data, _ = shared.display_formatter.format(summary)
    assert data["text/plain"] == text and data["text/html"] == html


# ------------------------------------------------ progress and Ctrl-C, in words ---

def test_ctrl_c_during_gather_says_what_still_runs_in_one_line(shared, client, tmp_path):
    from scatter_magics.errors import Interrupted

    release = tmp_path / "release"
    shared.user_ns["slow"] = client.submit(until_path_exists(), str(release), pure=False)
    presser = press_ctrl_c_when_blocked()
    try:
        with capture_output() as out:
            result = shared.run_cell("%gather slow")
        presser.join(5)
        error = result.error_in_exec
        assert isinstance(error, Interrupted) and isinstance(error, KeyboardInterrupt)
        assert str(error) == ("%gather slow stopped waiting: 1 of 1 futures is still running on "
                              "the cluster (gather again later, or cancel them with "
                              "client.cancel(slow))")
        shown = out.stdout + out.stderr
        assert shown.strip() == f"KeyboardInterrupt: {error}"  # one line, no frames
        assert "loop.py" not in shown and "threading.py" not in shown
    finally:
        release.touch()
    assert run(shared, "%gather slow --timeout 30") == "released"


def test_ctrl_c_during_scatter_says_nothing_was_stored(ip, make_client):
    from scatter_magics.errors import Interrupted

    client = make_client(n_workers=0)  # the scatter waits for a worker to appear
    ip.user_ns["x"] = [1, 2, 3]
    presser = press_ctrl_c_when_blocked()
    with capture_output() as out:
        result = ip.run_cell("%scatter x")
    presser.join(5)
    assert isinstance(result.error_in_exec, Interrupted)
    assert "%scatter x stopped: nothing was stored" in out.stdout
    assert client.who_has() == {}


def test_unknown_worker_is_refused_before_anything_is_hashed(shared, monkeypatch):
    from scatter_magics.notebook import arguments

    hashed = []
    monkeypatch.setattr(arguments, "tokenize", lambda value: hashed.append(value) or "t")
    shared.user_ns["big"] = [1]
    assert "unknown worker 'nobody'" in usage_error(shared, "%scatter big -w nobody")
    assert hashed == []


def test_a_long_scatter_shows_progress_in_a_terminal(ip, make_client):
    np = pytest.importorskip("numpy")
    client = make_client(n_workers=1)  # the embedded engine: it reports every stage
    ip.user_ns["client"] = client
    run(ip, "%config ScatterMagics.progress_delay = 0")  # as if it took longer than 0.5 s
    ip.user_ns["arr"] = np.ones(8 * 2**20 // 8)
    with capture_output() as out:
        fut = run(ip, "%scatter arr")
    lines = out.stderr.replace("\r", "\n").splitlines()
    assert fut.status == "finished"
    final = lines[-1].strip()
    assert final.startswith("%scatter arr: done in ") and "8 MiB hashed" in final
    assert "8 MiB copied" in final and "transferred" in final
    ip.user_ns["slow"] = client.submit(time.sleep, 0.3, pure=False)
    with capture_output() as out:
        run(ip, "%gather slow")
    assert "%gather slow: done in" in out.stderr and "1 futures waited for" in out.stderr
    run(ip, "%config ScatterMagics.progress_delay = 0.5")
    with capture_output() as out:
        run(ip, "small = 1\n%scatter small")
    assert out.stderr == ""  # quick work shows no bar at all


def test_small_data_gets_no_bar_however_short_the_delay(shared, client):
    """On our engine, under 64 KiB nothing can take the bar's delay: no bar (or its
    thread) for it. On Dask every %scatter has a bar, shown by time: none for a quick one."""
    embedded = backend_for(client).kind == "embedded"
    run(shared, f"%config ScatterMagics.progress_delay = {0 if embedded else 0.5}")
    try:
        with capture_output() as out:
            run(shared, "small, text = 1, 'two'\n%scatter small text")
            run(shared, "%scatter small --no-hash")
        assert out.stderr == ""
    finally:
        run(shared, "%config ScatterMagics.progress_delay = 0.5")


class SlowToPickle:
    """Takes 0.6 s to pickle (as a list of a few MiB does on Dask) and unpickles as 7."""

    def __reduce__(self):
        time.sleep(0.6)
        return (int, (7,))


def test_a_slow_scatter_or_gather_shows_its_bar_by_time(shared, client):
    """Whatever the engine and the size: still running after the delay, a bar shows."""
    shared.user_ns["slow"] = SlowToPickle()
    with capture_output() as out:
        run(shared, "%scatter slow --no-hash")
    assert "%scatter slow: done in" in out.stderr
    shared.user_ns["nap"] = client.submit(time.sleep, 0.6, pure=False)
    with capture_output() as out:
        run(shared, "%gather nap")
    assert "%gather nap: done in" in out.stderr


def test_what_a_task_prints_shows_on_stderr_in_a_terminal(shared, client):
    """Outside a kernel: each line on stderr, marked with the task and its worker."""
    shared.run_cell("import logging, warnings\n"
                    "def chatty(x):\n"
                    "    print('hello from', x)\n"
                    "    warnings.warn('careful with ' + str(x))\n"
                    "    logging.getLogger('chatty').warning('logged %s', x)\n"
                    "    return len(x)")
    with capture_output() as out:
        assert run(shared, "said = client.submit(chatty, 'a task')\n%gather said") == 6
    lines = out.stderr.splitlines()
    marked = [line for line in lines if re.match(r"\[chatty-[0-9a-f]{8} worker-\d\] ", line)]
    assert any(line.endswith("] hello from a task") for line in marked), lines
    assert any("UserWarning: careful with a task" in line for line in marked), lines
    assert any(line.endswith("] logged a task") for line in marked), lines
    assert out.stdout.count("hello from") == 0  # stdout may be the program's data


def test_counts_read_as_english(ip):
    """'1 worker', not '1 workers'."""
    with capture_output() as out:
        summary = run(ip, "%cluster start -n 1")
    assert "Started a cluster with 1 worker;" in out.stdout
    assert ": 1 worker, 1 thread," in repr(summary) and "; 0 keys, 0 B in memory" in repr(summary)
    with capture_output() as out:
        run(ip, "%cluster stop")
    assert "Stopped the cluster and its 1 worker." in out.stdout


def test_unload_ext_releases_at_once_what_only_the_magics_held(shared, client):
    """The magics sit in reference cycles with the shell: without being told, what they
    remembered stayed on the workers until a garbage-collection pass (a 1 GiB --split
    frame held its shared memory past the cell that gathered it)."""
    shared.user_ns["remembered_only"] = list(range(20_000))
    run(shared, "%scatter remembered_only --no-hash\npass")  # no Out entry holds it
    key = magics(shared).names["remembered_only"].key
    assert key in client.who_has()
    gc.disable()  # the release must not wait for the collector
    try:
        run(shared, "%unload_ext scatter_magics")
        wait_for(lambda: key not in client.who_has(), what="the remembered key to be released")
    finally:
        gc.enable()
    assert client.status == "running"  # not the magics' cluster: it stays
