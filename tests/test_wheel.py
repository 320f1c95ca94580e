"""The released wheel: built by ``python -m build`` from a clean checkout, it carries the
prebuilt labextension and the server-extension config, and once installed in a fresh
venv with no node on PATH the sidebar works in a real JupyterLab.

To stay within its budget (~1.5 min, most of it the JS build), the fresh venv borrows the
test venv's *dependencies* through a ``.pth`` line (``site-packages`` as a plain path:
the test venv's editable ``scatter_magics`` finder is not processed) and installs only
the wheel itself, ``--no-deps``. Jupyter's data and config paths follow ``sys.prefix``,
so only the wheel's labextension and config are seen.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LabServer,
    copy_if_exists,
    missing_browser_tools,
    save_artifact_dir,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
LABEXT = "share/jupyter/labextensions/scatter-magics"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built by ``python -m build --wheel`` from the committed files only."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no clean tree to build the release wheel from")
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    archive = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], check=True,
                             capture_output=True).stdout.decode().split("\0")
    for name in filter(None, archive):  # the working tree's tracked files, no build output
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, target)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "-o", str(out), str(source)],
                   check=True, capture_output=True, timeout=240)
    [built] = out.glob("scatter_magics-*.whl")
    return built


def test_the_wheel_holds_the_prebuilt_labextension_and_server_config(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    data = next(n.split("/data/")[0] for n in names if "/data/" in n) + "/data/"
    assert data + f"{LABEXT}/package.json" in names
    assert data + f"{LABEXT}/install.json" in names
    assert any(n.startswith(data + f"{LABEXT}/static/remoteEntry.") for n in names)
    assert data + "etc/jupyter/jupyter_server_config.d/scatter_magics.json" in names
    assert "scatter_magics/lab/handlers.py" in names
    assert not any("node_modules" in n for n in names)


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site_packages] = (venv / "lib").glob("python3*/site-packages")
    (site_packages / "_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # --ignore-installed: otherwise pip would first uninstall the test venv's own copy.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--ignore-installed", "--prefix", str(venv), str(wheel)], check=True,
                   timeout=120)
    return venv


def no_node_env(venv: Path) -> dict[str, str]:
    env = dict(os.environ, PATH=str(venv / "bin"), VIRTUAL_ENV=str(venv))
    assert shutil.which("node", path=env["PATH"]) is None
    return env


def test_installed_wheel_lists_both_extensions_enabled_without_node(fresh_venv):
    python, env = str(fresh_venv / "bin" / "python"), no_node_env(fresh_venv)

    def run(code: str) -> str:
        # cwd: "-c" puts it first on sys.path, and the checkout's package would shadow the wheel's.
        done = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True,
                              timeout=60, cwd=fresh_venv)
        return _plain(done.stdout + done.stderr)

    labext = run("import sys; from jupyterlab.labextensions import main; "
                 "sys.argv = ['jupyter-labextension', 'list']; main()")
    assert re.search(r"scatter-magics v0\.1\.0 enabled OK \(python, scatter_magics\)", labext), labext
    server = run("import sys; from jupyter_server.extension.serverextension import main; "
                 "sys.argv = ['jupyter-server-extension', 'list']; main()")
    assert "scatter_magics enabled" in server and "scatter_magics 0.1.0 OK" in server, server
    where = run("import scatter_magics; print(scatter_magics.__file__)")
    assert where.startswith(str(fresh_venv))  # the wheel's copy, not the checkout's


def _plain(text: str) -> str:
    """Without the ANSI colours jupyter prints."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_sidebar_of_the_installed_wheel_shows_a_cluster(fresh_venv, tmp_path):
    if missing_browser_tools():
        pytest.skip(missing_browser_tools())
    from playwright.sync_api import sync_playwright

    server = WheelLabServer(fresh_venv, tmp_path / "root", tmp_path / "home", tmp_path / "lab.log")
    (tmp_path / "root").mkdir()
    try:
        server.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(f"{server.url}/lab?reset")
            page.wait_for_function("() => window.jupyterapp", timeout=60_000)
            page.evaluate("""async () => {  // after the layout is restored, or it hides us again
                await window.jupyterapp.restored;
                await window.jupyterapp.commands.execute('scatter-magics:show-sidebar');
            }""")
            page.wait_for_selector(".sm-lab-empty")
            page.click(".sm-lab-start")  # "New cluster": a server-owned cluster
            page.click(".jp-Dialog .jp-mod-accept")
            card = page.wait_for_selector(".sm-lab-card[data-workers='2']", timeout=60_000)
            assert "Shared cluster 1" in card.inner_text()
            page.screenshot(path=str(save_artifact_dir() / "wheel-sidebar.png"))
            page.click(".sm-lab-card .sm-lab-stop")
            page.click(".jp-Dialog .jp-mod-accept")
            page.wait_for_selector(".sm-lab-empty", timeout=15_000)
            browser.close()
    finally:
        leftover = server.stop()
        copy_if_exists(server.log_path, save_artifact_dir() / "wheel-lab.log")
    assert not leftover


class WheelLabServer(LabServer):
    """``jupyter lab`` from the fresh venv, with a PATH that has no node on it."""

    def __init__(self, venv: Path, root: Path, home: Path, log_path: Path):
        super().__init__(root, home, log_path)
        self.venv = venv
        self.python = str(venv / "bin" / "python")

    def env(self) -> dict[str, str]:
        return {**super().env(), **no_node_env(self.venv)}

