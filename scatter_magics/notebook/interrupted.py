"""What ``%scatter`` and ``%gather`` say when Ctrl-C stops them: one line, no frames.

The interrupt reaches the magic while it waits in the client's event-loop door; the
traceback a user would see runs through ``loop.py`` and ``threading.py`` and says
nothing of the cluster. The magics raise :class:`~scatter_magics.errors.Interrupted`
(a ``KeyboardInterrupt`` that IPython renders as one line) with one of these instead.

>>> scatter_interrupted("%scatter df")
'%scatter df stopped: nothing was stored on the workers, and the cluster is still usable'
"""

from __future__ import annotations


def scatter_interrupted(what: str) -> str:
    # A scatter that is interrupted takes back what reached the workers (client.py).
    return f"{what} stopped: nothing was stored on the workers, and the cluster is still usable"


def gather_interrupted(targets: dict, futures: list, client_name: str) -> str:
    """``%gather res stopped waiting: 3 of 4 futures are still running …``."""
    names = " ".join(targets)
    pending = [f for f in futures if not f.done()]
    if not pending:
        return f"%gather {names} stopped while receiving the results; nothing is left running"
    cancel = ", ".join(targets) if len(targets) == 1 else f"[{', '.join(targets)}]"
    verb = "is" if len(pending) == 1 else "are"
    return (f"%gather {names} stopped waiting: {len(pending)} of {len(futures)} futures "
            f"{verb} still running on the cluster (gather again later, or cancel them with "
            f"{client_name}.cancel({cancel}))")
