"""Files sent with ``Client.upload_file``: kept in the worker's directory, importable.

A ``.py`` file is a module in the worker's ``local_directory``, which is on
``sys.path``; a ``.zip``, ``.egg`` or ``.pyz`` is put on ``sys.path`` itself. With
``load`` (the default) the modules are imported now, or reloaded if a task imported an
older version, as Dask's ``upload_file`` does.

>>> import tempfile
>>> uploads = Uploads(tempfile.mkdtemp(), "worker-0")
>>> uploads.save("answer_module_doctest.py", b"ANSWER = 42\\n", True)
['answer_module_doctest']
>>> import answer_module_doctest; answer_module_doctest.ANSWER
42
>>> uploads.close()
"""

from __future__ import annotations

import importlib
import os
import sys

# tempfile, shutil, pkgutil and importlib.util are imported where they are used: a worker
# uses them only when it is given no directory or a file is uploaded, and importing them
# at the top cost ~9 ms of the workers' template start-up, a cold start's longest path.

ARCHIVES = (".zip", ".egg", ".pyz")


class Uploads:
    """A worker's directory of uploaded files, on ``sys.path`` while the worker runs.

    ``directory`` is given by the cluster (which removes it with the cluster), or made
    here and removed by :meth:`close`.
    """

    def __init__(self, directory: str | None, name: str):
        self._made = directory is None
        if directory is None:
            import tempfile

            directory = tempfile.mkdtemp(prefix=f"scatter-magics-{name}-")
        self.directory = directory
        os.makedirs(self.directory, exist_ok=True)
        self._paths = [self.directory]  # what this worker put on sys.path
        sys.path.insert(0, self.directory)

    def save(self, filename: str, data: bytes, load: bool = True) -> list[str]:
        """Write ``data`` as ``filename`` here; import it if ``load``: the modules loaded."""
        name = os.path.basename(filename)
        if not name or name in (".", ".."):
            raise ValueError(f"cannot upload {filename!r}: it names no file")
        path = os.path.join(self.directory, name)
        partial = path + ".partial"
        with open(partial, "wb") as f:
            f.write(data)
        os.replace(partial, path)  # a task importing it meanwhile sees the old or the new
        stem, ext = os.path.splitext(name)
        if ext == ".py":
            from importlib.util import cache_from_source

            cached = cache_from_source(path)
            if os.path.exists(cached):
                os.remove(cached)  # same size and second as the old one: never reuse it
            modules = [stem]
        elif ext in ARCHIVES:
            if path not in sys.path:
                sys.path.insert(0, path)
                self._paths.append(path)
            import pkgutil

            modules = [m.name for m in pkgutil.iter_modules([path])]
        else:
            return []
        importlib.invalidate_caches()
        if not load:
            return []
        for module in modules:
            if module in sys.modules:
                importlib.reload(sys.modules[module])
            else:
                importlib.import_module(module)
        return modules

    def close(self) -> None:
        for path in self._paths:
            if path in sys.path:
                sys.path.remove(path)
        if self._made:
            import shutil

            shutil.rmtree(self.directory, ignore_errors=True)
