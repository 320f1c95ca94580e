"""The notebook widget's ES module: ``static/widget.js`` with the shared modules pasted in
(``scatter_magics/notebook/esm.py``), and the types the labextension reads of them."""

from __future__ import annotations

import re
import subprocess

import pytest

from scatter_magics.notebook.esm import MODULES, STATIC, widget_esm
from scatter_magics.notebook.widget import FuturesWidget
from tests.node_support import node

pytestmark = pytest.mark.timeout(60)


def write_modules(folder, texts):
    for name, text in zip(MODULES, texts):
        (folder / name).write_text(text)


def test_imports_are_resolved_by_pasting_in_order(tmp_path):
    write_modules(tmp_path, [
        "export const UNITS = ['B'];\nexport function formatBytes(n) { return n; }\n",
        # prettier wraps a long import over several lines
        "import {\n  formatBytes,\n  UNITS\n} from './sizes.js';\n\nexport function h() {}\n",
        "import { formatBytes } from './sizes.js';\n\nexport function timeline() {}\n",
        'import { formatBytes } from "./sizes.js";\nimport { h } from "./dom.js";\n'
        'import { timeline } from "./plots.js";\n\nexport default { render: h };\n',
    ])
    source = widget_esm(tmp_path)
    assert not re.search(r"^\s*import\b", source, re.MULTILINE)
    assert re.findall(r"^export .*", source, re.MULTILINE) == ["export default { render: h };"]
    assert source.index("const UNITS") < source.index("function h()") \
        < source.index("function timeline()") < source.index("export default")


def test_an_import_it_cannot_paste_is_an_error(tmp_path):
    write_modules(tmp_path, ["", "", "", "import confetti from 'https://esm.sh/canvas-confetti';\n"])
    with pytest.raises(ValueError, match="other than a sibling file"):
        widget_esm(tmp_path)


def test_the_widget_runs_the_assembled_module():
    assert FuturesWidget._esm == widget_esm()
    assert "KiB" in widget_esm() and "kiB" not in widget_esm()


def test_the_assembled_module_parses(tmp_path):
    """One scope: a name declared by two of the files would be a SyntaxError in the browser."""
    path = tmp_path / "widget.mjs"
    path.write_text(widget_esm())
    done = subprocess.run([node(), "--check", str(path)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr


def declared(text: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, text, re.MULTILINE))


@pytest.mark.parametrize("module", ["sizes", "dom", "plots"])
def test_types_declare_what_the_module_exports(module):
    """The labextension compiles against the .d.ts: it must name every export, no more."""
    js = (STATIC / f"{module}.js").read_text()
    dts = (STATIC / f"{module}.d.ts").read_text()
    exported = declared(js, r"^export (?:const|function) (\w+)")
    typed = declared(dts, r"^export declare (?:const|function) (\w+)")
    assert exported and exported == typed
