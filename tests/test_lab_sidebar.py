"""The cluster sidebar in a real JupyterLab 4 and Notebook 7, in Debian's headless Chromium.

Two notebooks start clusters (each in its own page, as a user with two tabs would); the
sidebar must show both within 2 s of their cells finishing, each card with the dataset
its notebook published. A worker of one is killed and its card changes; the cluster is
stopped from the sidebar and the notebook's live widget says the client closed.
Screenshots go to ``$ARTIFACTS`` (``sidebar-<app>-*.png``).
"""

from __future__ import annotations

import json
import time

import psutil
import pytest

from tests.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LabServer,
    copy_if_exists,
    missing_browser_tools,
    run_all_cells,
    save_artifact_dir,
    write_notebook,
)
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SHOW_WITHIN = 2.0  # s from a cluster's start to its card (the number)
CARD = ".sm-lab-card[data-cluster-id='{}']"
NOTEBOOK = [
    "%load_ext scatter_magics\n%cluster start -n 2",
    "x = list(range(1000))\n%scatter x",
    "y = list(range(10))\n%scatter y --split 2",  # two pieces: one name, two keys
    "z = {'kept': 'by the cluster'}\n%scatter z --publish",  # a dataset that outlives kernels
]


@pytest.fixture(scope="module")
def browser():
    why = missing_browser_tools()
    if why is not None:
        if __import__("os").environ.get("CI"):
            pytest.fail(f"browser tests must run under CI: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(params=["lab", "notebook"])
def server(request, browser, tmp_path_factory):
    app = request.param
    server = LabServer(tmp_path_factory.mktemp(f"{app}-root"), tmp_path_factory.mktemp("home"),
                       tmp_path_factory.mktemp("log") / f"jupyter-{app}.log", app=app)
    try:
        server.start()
        yield server
    finally:
        leftover = server.stop()
        copy_if_exists(server.log_path, save_artifact_dir() / f"sidebar-{app}-server.log")
    assert not leftover, f"worker processes {leftover} outlived their kernel"


class NotebookPage:
    """One browser page showing one notebook and the sidebar, in either app."""

    def __init__(self, browser, server: LabServer, name: str):
        self.server, self.name = server, name
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.console: list[str] = []
        self.page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        self.page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))
        self.sockets: list[str] = []  # the websockets the page opened
        self.page.on("websocket", lambda socket: self.sockets.append(socket.url))

    def open(self) -> None:
        if self.server.app == "lab":
            url = f"{self.server.url}/lab/workspaces/{self.name.split('.')[0]}/tree/{self.name}?reset"
        else:
            url = f"{self.server.url}/notebooks/{self.name}"
        self.page.goto(url)
        self.page.wait_for_function(
            """name => {
                const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                const kernel = w && w.sessionContext && w.sessionContext.session
                    && w.sessionContext.session.kernel;
                return w && w.context && w.context.path === name && kernel
                    && kernel.status === 'idle';
            }""", arg=self.name)
        self.command("scatter-magics:show-sidebar")
        self.page.wait_for_selector("#scatter-magics-sidebar .sm-lab-header", state="visible")

    def command(self, command: str, args: dict | None = None) -> None:
        self.page.evaluate("([c, a]) => window.jupyterapp.commands.execute(c, a)",
                           [command, args or {}])

    def screenshot(self, step: str) -> None:
        self.page.screenshot(path=str(save_artifact_dir() / f"sidebar-{self.server.app}-{step}.png"))

    def card_workers(self, cluster_id: str) -> list[str]:
        return self.page.eval_on_selector_all(
            CARD.format(cluster_id) + " .sm-lab-worker",
            "nodes => nodes.map(n => n.dataset.worker)")

    def close(self) -> None:
        (save_artifact_dir() / f"sidebar-{self.server.app}-{self.name}.console.log").write_text(
            "\n".join(self.console))
        self.context.close()


def clusters_by_notebook(server: LabServer) -> dict[str, dict]:
    request = __import__("urllib.request").request
    with request.urlopen(f"{server.url}/scatter-magics/api/clusters", timeout=10) as response:
        return {c["name"]: c for c in json.loads(response.read())}


TEMPLATE = "scatter_magics.engine.worker.template"


def workers_of(process: psutil.Process) -> list[psutil.Process]:
    """The live (not zombie) worker processes a kernel started."""
    found = []
    for child in process.children(recursive=True):
        try:
            command = child.cmdline()
            # Forked by the kernel's fork server (the template, the kernel's child, is not
            # a worker; they share its command line), or spawned as a fresh interpreter.
            forked = TEMPLATE in command and child.ppid() != process.pid
            if (forked or "scatter_magics.engine.worker" in command) \
                    and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def start_cluster_in(page: NotebookPage) -> tuple[str, float]:
    """Run the notebook; its cluster's id, and how long its card took to appear."""
    run_all_cells(page.page)
    finished = time.monotonic()
    cluster = wait_for(lambda: clusters_by_notebook(page.server).get(page.name), timeout=10,
                       what=f"{page.name}'s cluster in the REST listing")
    page.page.wait_for_selector(CARD.format(cluster["id"]), timeout=10_000)
    return cluster["id"], time.monotonic() - finished


def test_sidebar_shows_clusters_live_and_stops_them(server, browser):
    for name in ("a.ipynb", "b.ipynb"):
        write_notebook(server.root / name, NOTEBOOK)
    a, b = NotebookPage(browser, server, "a.ipynb"), NotebookPage(browser, server, "b.ipynb")
    try:
        a.open()
        id_a, delay_a = start_cluster_in(a)
        b.open()
        id_b, delay_b = start_cluster_in(b)
        b.page.wait_for_selector(CARD.format(id_a), timeout=SHOW_WITHIN * 1000)
        assert max(delay_a, delay_b) <= SHOW_WITHIN, (delay_a, delay_b)
        # The listing is pushed to the sidebar (clusters/ws), not only polled.
        assert any(url.endswith("/scatter-magics/api/clusters/ws") for url in b.sockets), b.sockets
        card_b = wait_for(lambda: next((t for t in [b.page.inner_text(CARD.format(id_b))]
                                        if "4 keys" in t), None), timeout=5,
                          what="B's card to count the keys of its last cell")
        assert "b.ipynb" in card_b and "2 workers alive" in card_b
        assert "3 names" in card_b  # x, and y's two pieces counted once, z
        name, holders = b.page.eval_on_selector(  # the dataset, and the worker holding it
            CARD.format(id_b) + " .sm-lab-dataset[data-dataset='z']",
            "n => [n.querySelector('.sm-lab-dataset-name').textContent,"
            " n.querySelector('.sm-lab-dataset-holders').textContent]")
        assert name == "z" and holders in ("worker-0", "worker-1")
        assert b.card_workers(id_b) == ["worker-0", "worker-1"]
        b.screenshot("two-clusters")

        # Connect: the code joining B's cluster lands in the active notebook.
        def active_source() -> str:
            return b.page.evaluate("window.jupyterapp.shell.currentWidget.content"
                                   ".activeCell.model.sharedModel.source")

        b.page.click(CARD.format(id_b) + " .sm-lab-connect")
        # The magics are loaded in b's kernel (asked with an inspect request): no %load_ext.
        wait_for(lambda: active_source() == f"%cluster connect {id_b}", timeout=5,
                 what="the connecting code, without %load_ext")
        # B's notebook already has a cluster: connecting it to A's offers to switch.
        b.page.click(CARD.format(id_a) + " .sm-lab-connect")
        b.page.wait_for_selector(".jp-Dialog", timeout=5_000)
        assert "already uses" in b.page.inner_text(".jp-Dialog")
        b.page.click(".jp-Dialog .jp-mod-accept")
        wait_for(lambda: active_source() == f"%cluster stop\n%cluster connect {id_a}",
                 timeout=5, what="the switching code")

        # A worker of A's cluster dies: A's card changes on its own.
        before = a.card_workers(id_a)
        kernel = psutil.Process(clusters_by_notebook(server)["a.ipynb"]["pid"])
        workers_of(kernel)[0].kill()
        wait_for(lambda: a.card_workers(id_a) != before, timeout=10,
                 what="the card of the cluster that lost a worker to change")
        a.screenshot("worker-killed")

        # Stop from the sidebar: the notebook's widget says its client closed.
        a.page.wait_for_selector(".sm-futures")
        a.page.click(CARD.format(id_a) + " .sm-lab-stop")
        a.page.click(".jp-Dialog .jp-mod-accept")
        a.page.wait_for_selector(".sm-futures .sm-stale", timeout=10_000)
        a.page.wait_for_selector(CARD.format(id_a), state="detached", timeout=5_000)
        wait_for(lambda: not workers_of(kernel), timeout=10, what="A's workers to exit")
        a.screenshot("stopped")
        assert "b.ipynb" in clusters_by_notebook(server)  # the other cluster runs on

        if server.app == "lab":  # the futures panel opens in the main area
            b.page.click(CARD.format(id_b) + " .sm-lab-futures")
            b.page.wait_for_selector(".sm-lab-panel-body tr[data-key][data-status='finished']")
            b.screenshot("futures-panel")
    finally:
        a.close()
        b.close()
