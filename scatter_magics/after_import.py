"""Run a function once a module is first imported: a post-import hook.

>>> seen = []
>>> after_import("colorsys", seen.append)  # now if colorsys is imported, else once it is
>>> import colorsys
>>> seen == [colorsys]
True

Why not ``wrapt.register_post_import_hook``, which does this: importing wrapt 2 costs
~30 ms of a client's start on a loaded 2-core machine (it imports ``importlib.metadata``
and asyncio's locks), against a 0.1 s cold start; this needs one class. The finder
steps aside as soon as the module is asked for, finds its real spec, and wraps the
loader so that ``then(module)`` runs after the module's code; the module's own spec and
loader are put back before ``then`` runs.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Callable


def after_import(name: str, then: Callable) -> None:
    """Call ``then(module)`` once top-level module ``name`` is imported (now, if it is)."""
    module = sys.modules.get(name)
    if module is not None:
        then(module)
    else:
        sys.meta_path.insert(0, _AfterImport(name, then))


class _AfterImport:
    """A ``sys.meta_path`` finder for one name, used once."""

    def __init__(self, name: str, then: Callable):
        self.name, self.then = name, then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        try:
            sys.meta_path.remove(self)  # once; and the real finders answer below
        except ValueError:  # another thread's import got here first
            return None
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenLoader(spec.loader, self.then)
        return spec

    def invalidate_caches(self) -> None:
        pass


class _ThenLoader:
    """The real loader, then ``then(module)``; anything else asked of it goes to the loader."""

    def __init__(self, loader, then: Callable):
        self._loader, self._then = loader, then

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._loader  # as if we were not here
        self._loader.exec_module(module)
        self._then(module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)
