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

import psutil
import pytest

from tests.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LabServer,
    copy_if_exists,
    execute_in_background,
    kernel_status,
    missing_browser_tools,
    open_notebook,
    run_all_cells,
    save_artifact_dir,
    write_notebook,
)
from tests.conftest import wait_for

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


def new_worker_pid(known: set) -> int:
    """The pid of the live worker process (started by the kernel) not in ``known``: the
    replacement. Workers forked by the kernel's fork server run the template's command
    line (no ``--name``); the template is the kernel's child, a worker its child."""
    def workers():
        for proc in psutil.Process().children(recursive=True):
            try:
                command, parent = proc.cmdline(), proc.parent()
                if proc.status() != psutil.STATUS_ZOMBIE and (
                        "scatter_magics.engine.worker" in command
                        or (TEMPLATE in command and parent and TEMPLATE in parent.cmdline())):
                    yield proc.pid
            except psutil.NoSuchProcess:
                pass
    return wait_for(lambda: next((pid for pid in workers() if pid not in known), None),
                    timeout=15, what="the replacement worker's process")


TEMPLATE = "scatter_magics.engine.worker.template"


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

        # 2. Busy kernel (another cell running, which changed x first): every holder
        #    dies at once, the row turns lost (scattered data: nothing to recompute it
        #    from, and the magics cannot send it again from a variable that changed).
        holders = [pids["worker-1"], new_worker_pid(set(pids.values()))]  # and worker-2
        execute_in_background(page, "x['label'] = 'changed'; import time; time.sleep(60)")
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


# ------------------------------------------------ the whole life, in Lab 4 and Notebook 7 ---

LIFE_NOTEBOOK = [
    "%load_ext scatter_magics\n"
    "%config ScatterMagics.n_workers = 2",
    "x = list(range(100))\n"
    "%scatter x --broadcast",
    "%cluster",
    "import json, pathlib\n"
    "import numpy as np\n"
    "pids = {name: proc.pid for name, proc in client.cluster.processes.items()}\n"
    "pathlib.Path('life_pids.json').write_text(json.dumps(pids))\n"
    "big = np.ones(512 * 2**20 // 8)  # 512 MiB\n"
    # No delay: at 2.5 GB/s this scatter may end within any delay, and then shows no bar.
    "%config ScatterMagics.progress_delay = 0\n"
    "%scatter big -w worker-0",
]

# The WCAG contrast of each status colour (as rendered) against the background it sits
# on: the first ancestor with an opaque background; alpha colours are blended first.
CONTRASTS_JS = """
() => {
  const parse = (text) => {
    let m = text.match(/^rgba?\\(([^)]*)\\)/);
    if (m) { const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
             return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
    m = text.match(/^color\\(srgb ([^)]*)\\)/);
    if (m) { const p = m[1].split(/[ \\/]+/).filter(Boolean).map(Number);
             return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1]; }
    throw new Error('unparsed colour ' + text);
  };
  const over = (fg, bg) => [0, 1, 2].map((i) => fg[i] * fg[3] + bg[i] * (1 - fg[3]));
  const background = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const c = parse(getComputedStyle(node).backgroundColor);
      if (c[3] > 0.99) return c;
    }
    return [255, 255, 255, 1];
  };
  const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05); };
  const host = document.querySelector('.jp-OutputArea .sm-futures');
  const probes = ['pending', 'running', 'finished', 'error', 'cancelled', 'lost', 'released']
    .map((s) => { const el = document.createElement('span');
                  el.className = `sm-status sm-status-${s} sm-probe`; el.textContent = s;
                  host.append(el); return el; });
  const shown = [...document.querySelectorAll(
    '.jp-OutputArea .sm-widget :is(.sm-status, .sm-died, .sm-stale)')];
  const out = shown.map((el) => { const bg = background(el);
    const fg = over(parse(getComputedStyle(el).color), bg);
    return {what: el.className, ratio: ratio(fg, bg), fg: getComputedStyle(el).color}; });
  probes.forEach((el) => el.remove());
  return {theme: document.body.dataset.jpThemeName, contrasts: out};
}
"""


def set_theme(page, theme: str) -> None:
    page.evaluate(f"window.jupyterapp.commands.execute('apputils:change-theme', "
                  f"{{theme: {json.dumps(theme)}}})")
    page.wait_for_function(f"() => document.body.dataset.jpThemeName === {json.dumps(theme)}")


def low_contrasts(page) -> tuple[str, list]:
    measured = page.evaluate(CONTRASTS_JS)
    assert len(measured["contrasts"]) >= 7, measured
    return measured["theme"], [c for c in measured["contrasts"] if c["ratio"] < 4.5]


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_widgets_follow_progress_dead_worker_stop_and_theme(lab_server, page, frontend):
    name = f"life_{frontend}.ipynb"
    write_notebook(lab_server.root / name, LIFE_NOTEBOOK)
    open_notebook(page, lab_server, name, frontend=frontend)
    run_all_cells(page, timeout_ms=90_000)
    shot = lambda what: screenshot(page, f"{frontend}-{what}.png")  # noqa: E731
    pids = json.loads((lab_server.root / "life_pids.json").read_text())
    try:
        # The large scatter showed a progress bar, which settled on what it did.
        page.wait_for_function(
            """() => [...document.querySelectorAll('.sm-progress')].some(
                   (box) => /%scatter big: done in [0-9.]+ s, 512 MiB hashed/.test(box.textContent)
                       && box.querySelector('.progress-bar'))""")
        bar = page.locator(".sm-progress .progress-bar").first
        assert bar.is_visible()
        shot("progress")

        # %cluster is the live cluster widget: it changes when a worker dies (and, with
        # supervision, when its replacement arrives).
        page.wait_for_selector(".sm-cluster tbody tr[data-worker='worker-1']")
        assert page.locator(".sm-cluster tbody tr").count() == 2
        os.kill(pids["worker-0"], signal.SIGKILL)
        page.wait_for_function(
            """() => { const c = document.querySelector('.sm-cluster');
                       const left = c.querySelector('.sm-departed');
                       return !c.querySelector("tbody tr[data-worker='worker-0']")
                           && left && left.textContent.includes('worker-0'); }""")
        # ... and big, held only by worker-0, survives: its bytes are in shared memory,
        # which outlives the workers, and its row shows the worker that took it over.
        big = page.locator(".sm-futures tbody tr", has_text="big-").first
        page.wait_for_function(
            """() => [...document.querySelectorAll('.sm-futures tbody tr')].some(
                   (tr) => tr.textContent.includes('big-') && tr.dataset.status === 'finished'
                       && /^worker-[12] · worker-0 died/.test(
                           tr.querySelector('.sm-workers').textContent))""")
        assert big.get_attribute("data-status") == "finished"
        shot("worker-died")

        # Status colours meet WCAG AA (4.5:1) as rendered, in the dark theme and the light one.
        set_theme(page, "JupyterLab Dark")
        theme, low = low_contrasts(page)
        assert theme == "JupyterLab Dark" and not low, low
        shot("dark")
        set_theme(page, "JupyterLab Light")
        theme, low = low_contrasts(page)
        assert not low, low

        # %cluster stop: every widget above says "not live" at once.
        execute_in_background(page, "%cluster stop")
        page.wait_for_function(  # x's and big's futures widgets, and %cluster's
            """() => { const all = [...document.querySelectorAll('.jp-OutputArea .sm-widget')];
                       return all.length >= 3 && all.every((w) => w.querySelector('.sm-stale')); }""")
        assert "not live" in page.locator(".sm-futures .sm-stale").first.inner_text()
        shot("not-live")
    finally:
        set_theme(page, "JupyterLab Light")
        # Shut the kernel down now: it holds 512 MiB, and its workers.
        page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
