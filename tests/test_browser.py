"""The live widget in a real JupyterLab, in Debian's headless Chromium (Playwright).

``%scatter x --broadcast`` shows a row that reaches ``finished`` on every worker; the
test then kills the workers' processes one by one and watches the row lose a replica
while the kernel is idle, then turn ``lost`` while another cell keeps the kernel busy,
without re-running anything. Screenshots and the browser console go to ``$ARTIFACTS``.

Without /usr/bin/chromium or playwright these tests skip, except under CI (``$CI`` set),
where a missing tool is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.browser_support import (CHROMIUM, CHROMIUM_ARGS, LabServer, copy_if_exists,
                                   execute_in_background, kernel_status, missing_browser_tools,
                                   open_notebook, run_all_cells, save_artifact_dir, write_notebook)
from tests.conftest import our_worker_processes, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

ROW = ".sm-futures tbody tr"


@pytest.fixture(scope="session")
def browser_tools():
    why = missing_browser_tools()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run under CI: {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def lab_server(browser_tools, tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-root")
    log = tmp_path_factory.mktemp("lab-log") / "jupyter-lab.log"
    server = LabServer(root, tmp_path_factory.mktemp("jupyter-home"), log)
    try:
        server.start()
        yield server
    finally:
        leftover = server.stop()
        copy_if_exists(log, save_artifact_dir() / "jupyter-lab.log")
    assert not leftover, f"worker processes {leftover} outlived their kernel"


@pytest.fixture(scope="module")
def browser(browser_tools):
    # Module scope: Playwright's sync API keeps its asyncio loop marked as running on the
    # main thread until it exits, and later tests' asyncio.run() would refuse to start.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser page; its console is saved as ``<test>.console.log``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    lines: list[str] = []
    page.on("console", lambda msg: lines.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: lines.append(f"pageerror: {exc}"))
    yield page
    page.screenshot(path=str(save_artifact_dir() / f"{request.node.name}.final.png"), full_page=True)
    (save_artifact_dir() / f"{request.node.name}.console.log").write_text("\n".join(lines))
    context.close()


def widget_row(page) -> dict | None:
    """The first futures row as the browser shows it."""
    return page.evaluate(
        """sel => {
            const tr = document.querySelector(sel);
            if (!tr) return null;
            const workers = tr.querySelector('.sm-workers');
            return {status: tr.dataset.status, name: tr.querySelector('.sm-name').textContent,
                    workers: workers.textContent, replicas: Number(workers.dataset.replicas)};
        }""", ROW)


def wait_row(page, status: str, replicas: int, timeout_ms: int = 15_000) -> None:
    page.wait_for_function(
        """([sel, status, replicas]) => {
            const tr = document.querySelector(sel);
            return tr && tr.dataset.status === status
                && tr.querySelector('.sm-workers').dataset.replicas === String(replicas);
        }""", arg=[ROW, status, replicas], timeout=timeout_ms)


def screenshot(page, name: str) -> None:
    page.screenshot(path=str(save_artifact_dir() / name), full_page=True)


NOTEBOOK = [
    # %load_ext alone makes the magics' futures display as the live widget.
    "%load_ext scatter_magics\n"
    "%config ScatterMagics.n_workers = 2",
    "x = {'numbers': list(range(10_000)), 'label': 'broadcast me'}\n"
    "%scatter x --broadcast",
    "import json, pathlib\n"
    "from scatter_magics import get_client\n"
    "client = get_client()\n"
    "pids = {name: proc.pid for name, proc in client.cluster.processes.items()}\n"
    "pathlib.Path('worker_pids.json').write_text(json.dumps(pids))\n"
    "client",
]


def worker_pid(name: str) -> int:
    """The pid of the live worker process called ``name`` (started by the kernel)."""
    def find():
        for proc in our_worker_processes():
            cmd = proc.cmdline()
            if "--name" in cmd and cmd[cmd.index("--name") + 1] == name:
                return proc.pid
    return wait_for(find, timeout=15, what=f"a {name} process")


def test_broadcast_row_finishes_then_turns_lost_live(lab_server, page):
    write_notebook(lab_server.root / "live_widget.ipynb", NOTEBOOK)
    open_notebook(page, lab_server, "live_widget.ipynb")
    run_all_cells(page)
    wait_row(page, "finished", 2)
    row = widget_row(page)
    assert row["name"] == "x" and "worker-0" in row["workers"] and "worker-1" in row["workers"]
    page.wait_for_selector(".sm-cluster tbody tr[data-worker='worker-1']")
    screenshot(page, "widget-finished.png")

    pids = json.loads((lab_server.root / "worker_pids.json").read_text())
    assert sorted(pids) == ["worker-0", "worker-1"]
    try:
        # 1. Idle kernel: worker-0 dies; worker-2 replaces it and receives the broadcast
        #    (a standing one), and the cluster view says whom it replaced.
        os.kill(pids["worker-0"], signal.SIGKILL)
        page.wait_for_function(
            """sel => {
                const tr = document.querySelector(sel);
                const held = tr && tr.querySelector('.sm-workers').textContent;
                return tr && tr.dataset.status === 'finished' && !held.includes('worker-0')
                    && held.includes('worker-1') && held.includes('worker-2');
            }""", arg=ROW, timeout=15_000)
        assert kernel_status(page) == "idle"
        replacement = page.locator(".sm-cluster tbody tr[data-worker='worker-2']").first
        replacement.wait_for()
        assert "replaces worker-0, which was killed by SIGKILL" in replacement.inner_text()
        page.wait_for_function(
            "() => document.querySelectorAll('.sm-cluster tbody tr').length === 2")
        screenshot(page, "widget-one-replica.png")

        # 2. Busy kernel (another cell running): every holder dies at once, the row
        #    turns lost (scattered data: nothing to recompute it from).
        holders = [pids["worker-1"], worker_pid("worker-2")]
        execute_in_background(page, "import time; time.sleep(60)")
        page.wait_for_function(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
            " === 'busy'")
        for pid in holders:
            os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        wait_row(page, "lost", 0)
        lost_after = time.monotonic() - start
        assert kernel_status(page) == "busy"  # shown while the kernel was still running a cell
        assert page.locator(".sm-futures .sm-status-lost").first.is_visible()
        screenshot(page, "widget-lost.png")
        page.locator(".sm-futures").first.screenshot(path=str(save_artifact_dir() / "widget.png"))
        assert lost_after < 5, f"lost shown {lost_after:.1f} s after the kill"
    finally:
        page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                      ".interrupt()")
        for pid in pids.values():  # never leave a worker behind, whatever failed above
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_paging_ten_thousand_futures(lab_server, page):
    write_notebook(lab_server.root / "many.ipynb", [
        "%load_ext scatter_magics\n"
        "%config ScatterMagics.n_workers = 2",
        "many = list(range(10_000))\n%scatter many --split",
    ])
    open_notebook(page, lab_server, "many.ipynb")
    run_all_cells(page)
    page.wait_for_function(
        """() => { const s = document.querySelector('.sm-futures .sm-summary');
                   return s && s.textContent.includes('10000 futures')
                       && s.textContent.includes('● finished 10000'); }""")
    assert page.locator(ROW).count() == 25
    page.locator(".sm-futures .sm-last").click()
    page.wait_for_function(
        "() => document.querySelector('.sm-page-label').textContent.includes('page 400 / 400')")
    last_rows = page.locator(ROW)
    assert last_rows.count() == 25 and "many[9999]" in last_rows.last.inner_text()
    page.locator(".sm-futures .sm-page-size").select_option("200")
    page.wait_for_function(f"() => document.querySelectorAll('{ROW}').length === 200")
    screenshot(page, "widget-paging.png")
