"""What a magic says when it fails: a sentence or two naming the variable, not our frames.

One mechanism for every message of the magics (docs/internals.md, "Errors in the magics"):

- **Expected failures** — a lost future, a worker that died, a cluster that is gone, a
  timeout, a cancelled future, a closed client — are raised again from the engine's
  error as an exception of the same class made by :func:`~scatter_magics.errors.said`
  (so ``except FutureLostError`` around a magic still catches it): the first line names
  the magic and the variable and says what happened, the second what to do. IPython
  shows those lines alone; ``%tb`` in a later cell shows the whole chain, ``%debug``
  opens it.
- **A task's own exception** keeps its class (code may catch it) and shows the task's
  traceback: the frames the worker ran, each placed in the notebook cell that defined
  its function, instead of the frames of our client and its event loop.

Any other message of a magic goes the same way: ``raise said(SomeError, line, hint) from
exc``, or ``raise MagicError(line, hint)`` for a failure with no class of its own.

>>> print(cancelled("%gather x", "x", reason=None))
%gather x: x was cancelled: a cancelled future has no value.
Submit its task (or scatter its data) again.
"""

from __future__ import annotations

import functools
import re
from concurrent.futures import CancelledError

from ..errors import (
    ClientClosedError,
    CommClosedError,
    FutureCancelledError,
    FutureLostError,
    KilledWorkerError,
    NoWorkersError,
    RemoteTraceback,
    WorkerDiedError,
    WorkerUnresponsiveError,
    brief_lines,
    said,
)
from ..keys import short_key
from .display import labelled_futures

MAX_NAMED = 3  # names a line lists before "and N more"
# The engines word a loss as "key 'k' was lost: its only holder <death>, and it ..."
# resend.VariableSource's message: "b changed after it was scattered and its only worker
# died: %scatter b again" (or "was deleted ...: assign it and %scatter b again").
_VARIABLE = re.compile(r"(?P<line>\S+ (?:changed|was deleted) after it was scattered.*"
                       r"its only worker died: (?:assign it and )?%scatter \S+ again)", re.S)
_DEATH = re.compile(r"was lost: its only holder (?P<death>.+?)(?:, and it (?P<rest>.*))?$",
                    re.S)


def gather_failure(exc: BaseException, targets: dict, futures: list, *, timeout,
                   labels: dict) -> BaseException | None:
    """What ``%gather`` raises instead of ``exc``: ``exc`` itself for a task's own
    exception (its traceback made the task's), an exception of ``exc``'s class said in
    a sentence or two for an expected failure, None to let ``exc`` through as it is.

    ``labels`` (key → label) name what ``%scatter`` scattered as it did (``df[1/4]``,
    a piece; the hint for lost data is then ``%scatter df``).
    """
    what = " ".join(["%gather", *targets])

    def _failed(statuses: tuple) -> list:
        return failed_futures(targets, statuses, labels)
    if isinstance(exc.__cause__, RemoteTraceback):
        key = exc.__cause__.key
        errored = [(label, f) for label, f in labelled_futures(targets)
                   if f.status == "error" and key in (None, f.key)]
        if len({f.key for _, f in errored}) == 1:
            return task_failure(exc, _first_labels(errored), errored[0][1].key)
        return task_failure(exc, _named(_failed(("error",))))
    if isinstance(exc, TimeoutError):
        return timed_out(what, targets, futures, timeout)
    if isinstance(exc, FutureLostError):
        return lost(what, _failed(("lost", "cancelled")), exc, labels)
    if isinstance(exc, KilledWorkerError):
        return said(KilledWorkerError,
                    f"{what}: {_named(_failed(('error',)))} failed: the workers "
                    f"running its task kept dying.",
                    "It may be what kills them (memory?): see %cluster and the workers' "
                    "logs; %tb shows the details.")
    if isinstance(exc, CancelledError):
        return cancelled(what, _named(_failed(("cancelled", "lost"))),
                         reason=getattr(exc, "reason", None))
    if isinstance(exc, ClientClosedError):
        names = ", ".join(targets)
        return said(ClientClosedError,
                    f"{what}: {names} {'belong' if ',' in names else 'belongs'} to a client "
                    f"that was closed (its cluster was stopped, or went away).",
                    "Start a cluster (%cluster start) and scatter the data again.")
    if isinstance(exc, (WorkerDiedError, WorkerUnresponsiveError)):
        return said(type(exc), f"{what}: the workers holding {', '.join(targets)} died or "
                               f"stopped answering while it was read ({exc}).",
                    "Gather it again: another copy, or its task run again, may answer.")
    if isinstance(exc, CommClosedError):
        return cluster_gone(what, exc)
    if isinstance(exc, NoWorkersError):  # (its message says what to do)
        return said(NoWorkersError, f"{what}: {exc}")
    return None


def scatter_failure(exc: BaseException, names: list[str], *, timeout) -> BaseException | None:
    """What ``%scatter`` raises instead of ``exc`` (None: let it through)."""
    what = " ".join(["%scatter", *names])
    if isinstance(exc, TimeoutError):
        return said(TimeoutError,
                    f"{what} did not finish within {timeout} s while waiting for the workers "
                    f"to store the data.",
                    "The cluster is still usable: try a longer --timeout, or check %cluster.")
    if isinstance(exc, ClientClosedError):
        return said(ClientClosedError, f"{what}: the cluster's client was closed.",
                    "Start a cluster (%cluster start) or connect to one.")
    if isinstance(exc, (WorkerDiedError, WorkerUnresponsiveError)):
        return said(type(exc), f"{what}: the workers it went to died or stopped answering "
                               f"during the transfer ({exc}).",
                    "Nothing of it was kept; the cluster is still usable (see %cluster): "
                    "scatter it again.")
    if isinstance(exc, CommClosedError):
        return cluster_gone(what, exc)
    return None


def cluster_failure(exc: BaseException, what: str) -> BaseException | None:
    """What ``%cluster`` (showing or stopping) raises instead of ``exc``."""
    if isinstance(exc, (CommClosedError, ClientClosedError)):
        return cluster_gone(what, exc)
    return None


# ------------------------------------------------------------ the sentences ---

def lost(what: str, failed: list, exc: BaseException, labels: dict) -> BaseException:
    """``failed``: ``[(label, future)]``; the engine's message says how the holder died,
    and whether the key was scattered data (else a result that cannot be recomputed),
    or which variable could not send it again (``resend.py``: it changed, or was deleted).
    """
    variable = _VARIABLE.search(str(exc))
    if variable:  # one line, as the issue words it: what became of the variable, what to do
        return said(FutureLostError, f"{what}: {variable['line']}")
    names = _named(failed)
    match = _DEATH.search(str(exc))
    why = f": its only holder {match['death']}" if match else f" ({exc})"
    if match and not (match["rest"] or "").startswith("was scattered"):
        hint = "Submit its task again, with its inputs."
    else:
        scattered = {labels[f.key].partition("[")[0] for _, f in failed
                     if f is not None and f.key in labels}  # rows[3], df[1/4]: rows, df
        again = f" (%scatter {' '.join(sorted(scattered))})" if scattered else ""
        hint = f"Scatter it again{again}; --broadcast keeps a copy on every worker."
    return said(FutureLostError, f"{what}: {names} {_was(names)} lost{why}.", hint)


def cancelled(what: str, names: str, *, reason) -> BaseException:
    because = f" ({reason})" if reason and reason != "unknown" else ""
    return said(FutureCancelledError,
                f"{what}: {names} {_was(names)} cancelled{because}: a cancelled future has "
                f"no value.", "Submit its task (or scatter its data) again.")


def timed_out(what: str, targets: dict, futures: list, timeout) -> BaseException:
    pending = [label for label, future in labelled_futures(targets) if not future.done()]
    shown = ", ".join(pending[:MAX_NAMED]) + (", …" if len(pending) > MAX_NAMED else "")
    return said(TimeoutError,
                f"{what} did not finish within {timeout} s: {len(pending)} of "
                f"{len(futures)} futures still pending ({shown}).",
                "They keep running: gather again later, or use a longer --timeout.")


def cluster_gone(what: str, exc: BaseException) -> BaseException:
    return said(type(exc), f"{what}: the cluster stopped answering ({exc}).",
                "Its data is gone with it: %cluster stop, then %cluster start (or connect), "
                "and scatter again.")


def _was(names: str) -> str:
    return "were" if "," in names or " and " in names else "was"


def _first_labels(labelled: list) -> str:
    labels = [label for label, _ in labelled]
    more = f" and {len(labels) - MAX_NAMED} more" if len(labels) > MAX_NAMED else ""
    return ", ".join(labels[:MAX_NAMED]) + more


def failed_futures(targets: dict, statuses: tuple, labels: dict) -> list:
    """``[(label, future)]`` of the futures in one of ``statuses``: who failed, labelled
    as ``%scatter`` labelled them (``df[1/4]``), else by place (``res[2]``)."""
    found = [(labels.get(f.key, label), f) for label, f in labelled_futures(targets)
             if f.status in statuses]
    return found or [(name, None) for name in targets]


def _named(failed: list) -> str:
    return _first_labels(failed)


# ------------------------------------------------------------ a task's exception ---

def task_failure(exc: BaseException, label: str, key=None) -> BaseException:
    """``exc`` (a task's exception), shown as the task's own traceback.

    Its class stays what the task raised, so ``except ZeroDivisionError`` still catches
    it; IPython shows ``_render_traceback_()`` of the instance (the hook is looked up on
    the exception itself), which lists the worker's frames of the task only.
    """
    remote = exc.__cause__
    task = f"task {short_key(key)} ({label})" if key is not None else f"the task of {label}"
    lines = [f"Traceback of {task}, most recent call last:"]
    for filename, lineno, name, source in remote.frames:
        place, source = _place(filename, lineno, name, source)
        lines.append(f"  {place}, in {name}")
        if source:
            lines.append(f"    {source}")
    lines += _exception_only(exc)
    # The same exception object is raised again by each gather of the key: shown
    # briefly in each cell that raises it (brief_lines marks where it was shown).
    exc.__dict__.pop("_shown_in_cell", None)
    exc._render_traceback_ = functools.partial(brief_lines, exc, lines)
    return exc


def _exception_only(exc: BaseException) -> list[str]:
    import traceback

    return "".join(traceback.format_exception_only(type(exc), exc)).rstrip().splitlines()


def _place(filename: str, lineno: int, name: str, source: str) -> tuple[str, str]:
    """``("Cell In[3], line 2", source)`` for a frame of a function defined in a cell.

    cloudpickle ships a function made in a notebook by value and names its code's file
    ``<dynamic-code>``; its line numbers are still the cell's, so the newest cell that
    defines ``name`` around that line is where it came from.
    """
    import linecache

    cells = _cells()
    if filename in cells:
        found = filename
    elif filename == "<dynamic-code>":
        found = next((f for f in cells if _defines(linecache.getlines(f), name, lineno)), None)
    else:
        return f'File "{filename}", line {lineno}', source
    if found is None:
        return f'File "{filename}", line {lineno}', source
    line = linecache.getline(found, lineno).strip() or source
    return f"Cell In[{cells[found]}], line {lineno}", line


def _cells() -> dict[str, int]:
    """``{filename: execution count}`` of this IPython session's cells, newest first.

    IPython keeps each cell's source in ``linecache`` and names it through its
    compiler's ``format_code_name`` (``("Cell", "In[3]")``), as its own tracebacks do.
    """
    import linecache

    from IPython import get_ipython

    name_of = getattr(getattr(get_ipython(), "compile", None), "format_code_name", None)
    if name_of is None:
        return {}
    found = {}
    for filename in list(linecache.cache):
        label = name_of(filename)
        if label and (count := re.fullmatch(r"In\[(\d+)\]", label[1])):
            found[filename] = int(count[1])
    return dict(sorted(found.items(), key=lambda item: item[1], reverse=True))


def _defines(lines: list[str], name: str, lineno: int) -> bool:
    """Whether line ``lineno`` of ``lines`` lies in the body of a function ``name``."""
    if not 0 < lineno <= len(lines):
        return False
    if name == "<lambda>":
        return "lambda" in lines[lineno - 1]
    header = re.compile(rf"(\s*)(async\s+)?def\s+{re.escape(name)}\s*\(")
    for i in range(lineno - 1, -1, -1):
        match = header.match(lines[i])
        if match:
            indent = len(match[1])
            body = lines[i + 1:lineno]
            return all(_indent(line) > indent for line in body if line.strip())
    return False


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())
