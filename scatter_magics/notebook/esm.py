"""The notebook widget's ES module: ``static/widget.js`` with the modules it imports pasted in.

The helpers both front ends draw with live once, as plain ES modules in ``static/``
(``sizes.js``, ``dom.js``, ``plots.js``): the labextension imports them and its bundler follows the
imports. anywidget has no bundler: it imports ``_esm`` from a blob URL, where a
relative import has nothing to resolve against. So the widget's module is those files
in order, their ``import ... from "./x.js"`` lines dropped and ``export`` keywords cut
(widget.js keeps its ``export default``), one scope with no build step.

>>> source = widget_esm()
>>> source.count("export default"), "function formatBytes(n)" in source
(1, True)
"""

from __future__ import annotations

import pathlib
import re

STATIC = pathlib.Path(__file__).parent / "static"
# Dependencies first: dom.js and plots.js use sizes.js, widget.js all three.
MODULES = ("sizes.js", "dom.js", "plots.js", "widget.js")

# A whole import statement of a sibling file, however prettier wrapped its braces.
_RELATIVE_IMPORT = re.compile(r"""^import\s[^;]*?\sfrom\s+['"]\./[\w.-]+['"];?[ \t]*\n""",
                              re.MULTILINE)
_EXPORT = re.compile(r"^export (?=const |function )", re.MULTILINE)


def widget_esm(static: pathlib.Path = STATIC) -> str:
    """The text anywidget runs: every module of :data:`MODULES`, imports resolved by order."""
    parts = []
    for name in MODULES:
        text = _RELATIVE_IMPORT.sub("", (static / name).read_text(encoding="utf-8"))
        parts.append(f"// ---- {name}\n{_EXPORT.sub('', text)}")
    source = "\n".join(parts)
    if re.search(r"^import\s", source, re.MULTILINE):
        raise ValueError("the widget's modules import something other than a sibling "
                         "file; anywidget could not load it")
    return source
