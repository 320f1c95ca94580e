"""The package's layout rules (docs/internals.md, "Who may import whom"), read from the source.

Every rule here is one a reader relies on: a sub-package's ``__init__`` says what it may
import, so the code must keep to it; the notebook layer reaches engines only through
``backend.py``, so a notebook session on Dask never loads the embedded engine.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import textwrap

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "scatter_magics"
MAX_LINES = 450

# What each part may import of the package (prefixes of dotted module names). The
# package's top level (errors, sizes, backend, ...) is open to every part.
TOP_LEVEL = ("errors", "sizes", "keys", "structure", "tokenize", "progress_callback",
             "backend",
             "current_client", "discovery", "task_capture", "task_output", "summary",
             "history", "task_stream", "key_pages")
ENGINE_RULES = {
    "engine.shm": (),
    "engine.wire": ("engine.shm",),
    "engine.scheduler": ("engine.wire", "engine.shm"),
    "engine.worker": ("engine.wire", "engine.shm"),
    "engine.cluster": ("engine.scheduler", "engine.worker", "engine.wire", "engine.shm"),
    "engine.client": ("engine.cluster", "engine.scheduler", "engine.wire", "engine.shm"),
    # (engine.cluster too: the adapter starts the fork server before importing the client)
    "engine.backend": ("engine.client", "engine.cluster"),
}


def modules() -> dict[str, pathlib.Path]:
    """``{"engine.wire.comm": path}`` for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: pathlib.Path, *, top_level_only: bool = False) -> set[str]:
    """The package modules ``name`` imports (relative to the package), resolved."""
    known = modules()
    tree = ast.parse(path.read_text())
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in _with_guarded(nodes) if top_level_only else nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("scatter_magics"):
                module = node.module.removeprefix("scatter_magics").lstrip(".")
            else:
                continue
            candidates = [f"{module}.{a.name}".lstrip(".") for a in node.names] + [module]
        elif isinstance(node, ast.Import):
            candidates = [a.name.removeprefix("scatter_magics").lstrip(".") for a in node.names
                          if a.name.startswith("scatter_magics.")]
        else:
            continue
        for candidate in candidates:
            if candidate in known and candidate not in ("", name):
                found.add(candidate)
                break
    return found


def _with_guarded(body):
    """Module-level statements, and those inside module-level ``if``/``try`` blocks
    (``if TYPE_CHECKING:`` counts: a cycle there is still a cycle for a reader)."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            yield from _with_guarded(node.body + getattr(node, "orelse", [])
                                     + [h for x in getattr(node, "handlers", []) for h in x.body])


def part_of(name: str) -> str:
    for part in sorted(ENGINE_RULES, key=len, reverse=True):
        if name == part or name.startswith(part + "."):
            return part
    return name.split(".")[0]


def test_every_package_folder_has_an_init_with_a_map():
    for folder in [PACKAGE, *[p for p in PACKAGE.rglob("*") if p.is_dir()]]:
        if not any(folder.glob("*.py")):
            continue  # static files, the built labextension
        init = folder / "__init__.py"
        assert init.exists(), f"{folder} is a package folder without __init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"


def test_no_module_is_over_450_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_class_has_more_than_one_base_of_its_own():
    own_classes = {node.name for path in modules().values()
                   for node in ast.walk(ast.parse(path.read_text()))
                   if isinstance(node, ast.ClassDef)}
    mixed = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
                if sum(b in own_classes for b in bases) > 1:
                    mixed.append(f"{name}.{node.name}({', '.join(bases)})")
    assert not mixed, f"classes assembled from several of our own classes: {mixed}"


def test_engine_parts_import_only_the_parts_below_them():
    wrong = []
    for name, path in modules().items():
        if not name.startswith("engine."):
            continue
        part = part_of(name)
        allowed = (part,) + ENGINE_RULES.get(part, ())
        for target in imports(name, path):
            if target.startswith("engine") and part_of(target) not in allowed:
                wrong.append(f"{name} imports {target}")
            if target.split(".")[0] in ("notebook", "dask", "lab"):
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_notebook_layer_reaches_engines_only_through_backend():
    wrong = [f"{name} imports {target}" for name, path in modules().items()
             if name.startswith("notebook") for target in imports(name, path)
             if target.split(".")[0] in ("engine", "dask", "lab")]
    assert not wrong, "\n".join(wrong)


def test_the_shared_top_level_imports_no_engine_and_no_view():
    wrong = [f"{name} imports {target}" for name in TOP_LEVEL
             for target in imports(name, modules()[name])
             if target.split(".")[0] in ("engine", "dask", "notebook", "lab")]
    assert not wrong, "\n".join(wrong)


def test_the_dask_backend_imports_neither_the_embedded_engine_nor_the_views():
    wrong = [f"{name} imports {target}" for name, path in modules().items()
             if name.startswith("dask") for target in imports(name, path)
             if target.split(".")[0] in ("engine", "notebook", "lab")]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = {name: imports(name, path, top_level_only=True) for name, path in modules().items()}
    # A package's __init__ importing its own modules is not a cycle a reader minds.
    graph = {name: {t for t in targets if not name or not t.startswith(name + ".")}
             for name, targets in graph.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.timeout(120)
def test_a_notebook_session_on_dask_never_imports_the_embedded_engine(dask_cluster):
    script = textwrap.dedent(f"""
        import sys
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        for line in ["load_ext scatter_magics",
                     "cluster connect --scheduler-file {dask_cluster.scheduler_file}"]:
            ip.run_line_magic(*line.split(" ", 1))
        ip.user_ns["x"] = list(range(10))
        ip.run_line_magic("scatter", "x --broadcast")
        assert ip.run_line_magic("gather", "x") == list(range(10))
        ip.run_line_magic("cluster", "")
        ip.run_line_magic("cluster", "stop")
        print(sorted(m for m in sys.modules if m.startswith("scatter_magics.engine")))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=100)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


def _referenced_names() -> set[str]:
    """Dotted names (``scatter_magics.engine.wire.loop.LoopThread``) and paths
    (``engine/wire/loop.py``) the docs and docstrings cite."""
    import re

    texts = [p.read_text() for p in PACKAGE.rglob("*.py")]
    root = PACKAGE.parent
    texts += [p.read_text() for p in [root / "README.md", *root.glob("docs/*.md"),
                                       *root.glob("notebooks/*.md")]]
    found = set()
    for text in texts:
        found.update(re.findall(r"scatter_magics(?:\.[A-Za-z_]\w*)+", text))
        found.update("path:" + p for p in re.findall(
            r"(?<![\w/.])((?:engine|notebook|dask|lab)/[\w/]+\.py)\b", text))
    return found


def test_every_module_path_cited_in_docs_and_docstrings_exists():
    import importlib

    stale = []
    for name in sorted(_referenced_names()):
        if name.rsplit(".", 1)[-1] in ("json", "py", "ipynb", "md", "txt"):
            continue  # a file's name (etc/jupyter/.../scatter_magics.json), not a module
        if name.startswith("path:"):
            if not (PACKAGE / name[5:]).exists():
                stale.append(name[5:])
            continue
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                target = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attribute in parts[cut:]:
                    target = getattr(target, attribute)
            except AttributeError:
                stale.append(name)
            break
        else:
            stale.append(name)
    assert not stale, f"names cited that do not exist: {stale}"


def test_starting_a_client_imports_nothing_kept_off_the_cold_start_path():
    """Issue 18's cold start: modules a client and its workers' template need only later
    (psutil: a silent worker's /proc, the registry's readers; importlib.metadata:
    get_versions; tornado: only tornado code run on the loop; cloudpickle: a value plain
    pickle cannot take by name; uuid, which runs platform's uname on import) stay
    unimported until then, through a client's whole start and first calls. Each cost
    2-23 ms of every start."""
    script = textwrap.dedent("""
        import sys
        from scatter_magics import Client
        import scatter_magics.engine.scheduler.server, scatter_magics.engine.worker.process
        import scatter_magics.engine.cluster.local, scatter_magics.engine.worker.template
        with Client(n_workers=1) as client:  # what benchmarks/coldstart.py times
            assert client.gather(client.scatter(-1)) == -1
            assert client.submit(abs, -1).result() == 1
            print(sorted(m for m in ("psutil", "importlib.metadata", "tornado", "cloudpickle",
                                     "uuid", "platform") if m in sys.modules))
            # a worker: argparse did not import shutil to measure a terminal
            print(*client.run(lambda: "shutil" in __import__("sys").modules).values())
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["[]", "False"]


def test_the_workers_template_is_spawned_before_anything_else_is_imported():
    """Issue 18's cold start: the template's start is the longer path, so it is spawned
    with only what the interpreter has loaded at start-up and built-in modules; threading,
    socket and signal (with enum, functools, collections: ~10 ms) come after."""
    script = textwrap.dedent("""
        import sys
        before = set(sys.modules)
        from scatter_magics.engine.cluster import template_spawn
        spawned = template_spawn.SpawnedTemplate()
        print(sorted(m for m in set(sys.modules) - before
                     if not m.startswith(("scatter_magics", "importlib"))))
        spawned.discard()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['__future__', '_socket', 'warnings']"


def test_the_workers_template_imports_only_what_a_worker_starts_with():
    """The template (issue 18's cold start: its start-up is the longer of a cold start's
    two paths) leaves out what a worker needs only on a first use: cloudpickle (a value
    pickle cannot take by name), uploads' file handling, the backend table."""
    script = textwrap.dedent("""
        import sys
        import scatter_magics.engine.worker.template
        print(sorted(m for m in ("cloudpickle", "tempfile", "shutil", "psutil", "tornado",
                                 "importlib.metadata", "scatter_magics.backend")
                     if m in sys.modules))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
