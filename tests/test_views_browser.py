"""The views agree and tell the truth, in a real JupyterLab 4 and Notebook 7 (issue 17).

A notebook starts a cluster, broadcasts a small list, puts 8 MiB of bytes on worker-0
only (then changes that variable) and runs tasks (one failing), then shows ``%cluster
--tasks``. worker-0 is killed: the bytes cannot be recovered (issue 20 re-sends only
what shared memory, a kept copy or an unchanged variable still holds). Then the sidebar card, ``%cluster``'s live view and the
Futures panel (JupyterLab's main area, Notebook 7's right side panel) must say the same key count and bytes, without the lost
array's; memory bars say what each number is and draw a timeline; the task stream has a
lane per worker thread; nothing is clipped at 1400 px with the sidebar open, light or
dark; the New cluster dialog asks for workers, threads and memory; and a panel whose
cluster is stopped says so and stops asking. Screenshots go to ``$ARTIFACTS``
(``views-<app>-*.png``).
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from tests.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LabServer,
    copy_if_exists,
    missing_browser_tools,
    open_notebook,
    run_all_cells,
    save_artifact_dir,
    write_notebook,
)
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = [
    "%load_ext scatter_magics\n%cluster start -n 2",
    "import json, pathlib, time\nimport numpy as np\n"
    "small = list(range(1000))\n%scatter small --broadcast",
    # 8 MiB on worker-0 only, in one in-band pickle (not in shared memory, which would
    # outlive worker-0), and changed since: nothing may send it again (issue 20)
    "big = bytes(2**23)\n%scatter big -w worker-0\nbig = b''",
    "def work(x, seconds):\n    time.sleep(seconds)\n    return len(x)\n"
    "results = [client.submit(work, small, 0.1 * i, key=f'work-{i}') for i in range(4)]\n"
    "results.append(client.submit(int, 'x', key='int-bad'))\n"
    "_ = client.gather(results, errors='skip')\n"
    "pids = {name: proc.pid for name, proc in client.cluster.processes.items()}\n"
    "pathlib.Path('views_pids.json').write_text(json.dumps(pids))",
    "%cluster --tasks",
]
CARD = ".sm-lab-card[data-cluster-id='{}']"


@pytest.fixture(scope="module")
def browser():
    why = missing_browser_tools()
    if why is not None:
        if os.environ.get("CI"):
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
    # The user's settings (schema/plugin.json): the New cluster dialog proposes them.
    user_settings = server.home / "config/lab/user-settings/scatter-magics"
    user_settings.mkdir(parents=True, exist_ok=True)
    (user_settings / "plugin.jupyterlab-settings").write_text(json.dumps(
        {"newCluster": NEW_CLUSTER_SETTINGS}))
    try:
        server.start()
        yield server
    finally:
        leftover = server.stop()
        copy_if_exists(server.log_path, save_artifact_dir() / f"views-{app}-server.log")
    assert not leftover, f"worker processes {leftover} outlived their kernel"


def rest(server: LabServer, method: str, path: str):
    """A GET of the scatter_magics REST API of ``server`` (it has no token; other verbs
    would need the XSRF cookie: the tests click the buttons instead)."""
    import urllib.request

    request = urllib.request.Request(f"{server.url}/scatter-magics/api/{path}", method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def text(page, selector: str) -> str:
    return page.eval_on_selector(selector, "n => n.textContent")


NEW_CLUSTER_SETTINGS = {"nWorkers": 1, "threadsPerWorker": 2, "memoryLimit": "1GiB"}


def clipped(page) -> list[str]:
    """Views whose content is wider than their box: cut off, or scrolled sideways."""
    return page.evaluate("""() => [...document.querySelectorAll(
            '.jp-OutputArea .sm-scroll, .sm-lab-card, .sm-lab-card .sm-lab-name, '
            + '.sm-lab-panel .sm-scroll')]
        .filter(n => n.offsetParent !== null && n.scrollWidth > n.clientWidth + 1)
        .map(n => `${n.className}: ${n.scrollWidth} > ${n.clientWidth}`)""")


# Words of a card's name split over two lines ("quickst / art.ipynb" in issue 17): a word
# whose text has more than one line box.
# A poll's answer arriving now: the Futures panel renders the value it holds again.
RENDER_PANEL_NOW_JS = """() => {
    const panel = [...window.jupyterapp.shell.widgets('main')]
        .map(w => w.content).find(c => c && c.id.startsWith('scatter-magics-cluster-'));
    panel._resource.accept(panel._resource.value);
}"""

BROKEN_WORDS_JS = r"""sel => {
  const broken = [];
  for (const name of document.querySelectorAll(sel)) {
    const walker = document.createTreeWalker(name, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.data.matchAll(/[^\s/]+\/?/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
  }
  return broken;
}"""


def set_theme(page, theme: str) -> None:
    page.evaluate(f"window.jupyterapp.commands.execute('apputils:change-theme', "
                  f"{{theme: {json.dumps(theme)}}})")
    page.wait_for_function(f"() => document.body.dataset.jpThemeName === {json.dumps(theme)}")
    page.wait_for_selector("#jupyterlab-splash", state="detached")  # the theme is loaded


def test_card_panel_and_cluster_view_agree_after_a_loss(server, browser):
    app = server.app
    name = f"views of the {app} quickstart.ipynb"  # long enough to wrap on a card
    write_notebook(server.root / name, NOTEBOOK)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    shot = lambda what: page.screenshot(  # noqa: E731
        path=str(save_artifact_dir() / f"views-{app}-{what}.png"))
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    pids: dict = {}
    try:
        open_notebook(page, server, name, frontend=app)
        page.evaluate("window.jupyterapp.commands.execute('scatter-magics:show-sidebar')")
        run_all_cells(page, timeout_ms=90_000)
        pids = json.loads((server.root / "views_pids.json").read_text())
        cluster = wait_for(lambda: next((c for c in rest(server, "GET", "clusters")
                                         if c["name"] == name), None),
                           timeout=10, what="the notebook's cluster in the listing")
        card = CARD.format(cluster["id"])
        page.wait_for_selector(card + " .sm-lab-worker .sm-membar-text")
        page.wait_for_selector(".sm-cluster .sm-taskstream svg rect.sm-taskstream-task",
                               state="attached")
        page.locator(".sm-cluster .sm-taskstream").last.scroll_into_view_if_needed()
        # The task stream: a lane per worker thread, the failed task marked.
        assert page.locator(".sm-cluster .sm-taskstream-error").count() >= 1
        assert "work ×4" in text(page, ".sm-cluster .sm-taskstream-legend")
        # Memory says what each number is, per worker, in the cell and on the card.
        assert "data " in text(page, card + " .sm-membar-text")
        assert "process " in text(page, ".sm-cluster .sm-membar-text")
        shot("before")

        os.kill(pids["worker-0"], signal.SIGKILL)  # big had no other replica or source: lost
        page.wait_for_selector(card + " .sm-lab-count[data-status='lost']", timeout=20_000)

        def phrases() -> dict:
            shown = {"card": text(page, card + " .sm-lab-keys"),
                     "%cluster": text(page, ".sm-cluster .sm-keys-phrase")}
            if page.locator(".sm-lab-panel-body .sm-keys-phrase").count():
                shown["panel"] = text(page, ".sm-lab-panel-body .sm-keys-phrase")
            return shown

        # The Futures panel opens in the main area (JupyterLab), in the right side panel
        # (Notebook 7, whose notebook page holds one main widget).
        page.click(card + " .sm-lab-futures")
        page.wait_for_selector(".sm-lab-panel-body .sm-keys-phrase")
        agreed = wait_for(lambda: next((p for p in [phrases()] if len(set(p.values())) == 1
                                        and "MiB" not in p["card"]), None),
                          timeout=15, what=f"the views to agree without big: {phrases()}")
        assert agreed["card"].startswith("7 keys"), agreed  # small, big, 4 work, int-bad
        assert set(agreed) == {"card", "%cluster", "panel"}, agreed
        shot("after-loss")
        if app == "notebook":  # the right side panel made room; the layout checks are
            page.evaluate("window.jupyterapp.shell.collapseRight()")  # of the notebook

        if app == "lab":
            panel = ".sm-lab-panel-body"
            # Filter by status: the lost row says which worker died with it.
            page.click(f"{panel} .sm-lab-filter .sm-chip[data-status='lost']")
            page.wait_for_function(
                """sel => { const rows = [...document.querySelectorAll(sel + ' tbody tr[data-key]')];
                            return rows.length === 1 && rows[0].dataset.status === 'lost'; }""",
                arg=panel + " .sm-lab-keys-table")
            lost_row = page.locator(f"{panel} .sm-lab-keys-table tbody tr").first
            assert lost_row.locator(".sm-name").inner_text() == "big"
            assert "worker-0 died" in lost_row.inner_text()
            page.click(f"{panel} .sm-lab-filter .sm-chip[data-status='lost']")  # all again
            # Filter by name, then sort by size. What the user types survives the renders
            # polls bring while they type (one is forced between keystrokes here): the
            # text, the focus and the caret stay, and the filter applies.
            search = f"{panel} .sm-lab-name-filter"
            page.click(search)
            page.keyboard.type("wo")
            page.evaluate(RENDER_PANEL_NOW_JS)
            page.keyboard.type("rk")
            page.evaluate(RENDER_PANEL_NOW_JS)
            assert page.eval_on_selector(search, "el => [el.value, el === document.activeElement]") \
                == ["work", True]
            page.wait_for_function(
                """sel => { const names = [...document.querySelectorAll(sel)].map(n => n.textContent);
                            return names.length === 4
                                && names.every(n => n.startsWith('work-')); }""",
                arg=f"{panel} .sm-lab-keys-table tbody .sm-name")
            page.fill(f"{panel} .sm-lab-name-filter", "")
            page.click(f"{panel} th[data-sort='size']")
            page.wait_for_selector(f"{panel} th[data-sort='size'][aria-sort='ascending']")
            assert page.locator(f"{panel} .sm-lab-workers-table svg.sm-timeline").count() == 2
            # The task stream shows the last minute: tasks run now appear in it.
            page.evaluate(  # in the notebook's kernel (the panel is the current widget)
                """code => [...window.jupyterapp.shell.widgets('main')]
                    .find(w => w.sessionContext).sessionContext.session.kernel
                    .requestExecute({code})""",
                "_ = client.gather([client.submit(work, small, 0.05, key=f'again-{i}') "
                "for i in range(3)])")
            page.wait_for_function(
                """sel => document.querySelectorAll(sel).length >= 3""",
                arg=f"{panel} .sm-taskstream rect.sm-taskstream-task[data-name='work']")
            shot("panel")

        # Names wrap at word boundaries; nothing clipped at 1400 px with the sidebar open,
        # in the light and dark themes.
        assert page.evaluate(BROKEN_WORDS_JS, ".sm-lab-card .sm-lab-name") == []
        assert not clipped(page), clipped(page)
        set_theme(page, "JupyterLab Dark")
        assert not clipped(page), clipped(page)
        shot("dark")
        set_theme(page, "JupyterLab Light")

        # The New cluster dialog asks for workers, threads and memory limit.
        page.evaluate(  # not awaited: the dialog waits for us
            "() => { window.jupyterapp.commands.execute('scatter-magics:start-cluster'); }")
        form = ".sm-lab-new-cluster input[name='{}']"
        proposed = {name: page.input_value(form.format(name))
                    for name in ("n_workers", "threads_per_worker", "memory_limit")}
        assert proposed == {"n_workers": "1", "threads_per_worker": "2",
                            "memory_limit": "1GiB"}, proposed  # the user's settings
        shot("new-cluster-dialog")
        page.click(".jp-Dialog .jp-mod-accept")
        shared = wait_for(lambda: next((c for c in rest(
            server, "GET", "clusters") if c["server_owned"]), None),
            timeout=30, what="the server-owned cluster")
        shared_card = page.locator(CARD.format(shared["id"]))
        shared_card.wait_for()
        # Listed as soon as it is registered; its worker joins a moment later.
        shown = wait_for(lambda: next((t for t in [shared_card.inner_text()]
                                       if "1 worker alive" in t), None),
                         timeout=20, what="the shared cluster's worker on its card")
        assert "2 threads" in shown and "of 1 GiB" in shown, shown
        shared_card.locator(".sm-lab-stop").click()
        page.click(".jp-Dialog .jp-mod-accept")
        shared_card.wait_for(state="detached", timeout=20_000)

        if app == "notebook":  # the panel, put away to the right, comes back
            page.evaluate("id => window.jupyterapp.shell.activateById(id)",
                          f"scatter-magics-panel-{cluster['id']}")
        # Stop the notebook's cluster: the panel says it is gone and stops asking.
        page.click(card + " .sm-lab-stop")
        page.click(".jp-Dialog .jp-mod-accept")
        page.wait_for_selector(".sm-lab-panel-body .sm-lab-gone", timeout=15_000)
        shot("panel-gone")
        page.wait_for_timeout(3000)  # three poll intervals: none of them may ask again
        log = server.log_path.read_text()
        asked = re.findall(r"404 GET /scatter-magics/api/clusters/\S+ \(127\.0\.0\.1\): "
                           r"no running cluster has the id", log)
        assert len(asked) <= 2, asked  # once for the cluster, once for its tasks
    finally:
        page.screenshot(path=str(save_artifact_dir() / f"views-{app}-final.png"), full_page=True)
        (save_artifact_dir() / f"views-{app}.console.log").write_text("\n".join(console))
        context.close()
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
