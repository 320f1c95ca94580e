"""``%scatter NAME --publish`` and ``%gather NAME`` of a published dataset.

A published dataset belongs to the cluster, not to this kernel's client (Dask's
``publish_dataset``): it outlives a kernel restart. ``%scatter df --publish`` publishes
``df``'s future(s) under the name ``df`` (replacing a dataset of that name), and
``%gather df`` in a kernel that has no future of that name (after a restart,
``%cluster connect <id>``) gathers the dataset published as ``df``.

A value ``--split`` cut into pieces is published as a plain dict, the pieces' futures
and how to join them, so that ``%gather df`` in another kernel gives the whole value
again (``--pieces``: the pieces), and ``client.get_dataset("df")`` shows what it holds:

>>> cut = Cut("df", ("df[0/2]-a", "df[1/2]-b"), (3, 2), "DataFrame")
>>> packed = published_value(["f0", "f1"], cut)
>>> packed
{'__scatter_magics_cut__': {'type': 'DataFrame', 'rows': [3, 2]}, 'pieces': ['f0', 'f1']}
>>> unpacked(packed) == (["f0", "f1"], ("DataFrame", (3, 2)))
True
"""

from __future__ import annotations

from IPython.core.error import UsageError

from .arguments import is_dotted_name
from .splitting import Cut

CUT_MARK = "__scatter_magics_cut__"  # the key that says a published dict is a cut value


def check_publishable(args) -> None:
    """``%scatter --publish`` names each dataset after its variable: it needs names."""
    for text in args.names if args.publish else ():
        if not is_dotted_name(text):
            raise UsageError(f"--publish names each dataset after its variable, and {text!r} "
                             f"is an expression: assign it to a variable, then %scatter that "
                             f"with --publish")


def publish(session, results: dict, cuts: dict, args) -> None:
    """With ``--publish``: each argument's future(s) (``{name: future(s)}``) published
    under its name, on the cluster of ``session`` (the magics' ``ClusterSession``);
    ``cuts``: ``{name: Cut}`` of the values cut into pieces."""
    if args.publish:
        backend = session.running_backend()
        for name, futures in results.items():
            backend.publish(name, published_value(futures, cuts.get(name)))


def published_value(futures, cut: Cut | None):
    """What is published for ``futures``: themselves, or for a cut value its pieces and
    how they join (plain types only: a Dask scheduler keeps it without our package)."""
    if cut is None:
        return futures
    return {CUT_MARK: {"type": cut.type_name, "rows": list(cut.rows)}, "pieces": futures}


def unpacked(published):
    """``(futures, (type name, rows))`` of a published cut value, else ``(published, None)``."""
    if isinstance(published, dict) and CUT_MARK in published and "pieces" in published:
        mark = published[CUT_MARK]
        return list(published["pieces"]), (mark["type"], tuple(mark["rows"]))
    return published, None


def published_futures(backend, name: str):
    """The future(s) of the dataset published as ``name``, or None (no dataset by that
    name, no cluster, or an engine without datasets)."""
    get_dataset = getattr(backend, "get_dataset", None)
    if get_dataset is None:
        return None
    try:
        return get_dataset(name)
    except KeyError:
        return None


def gather_target(names, text: str, value, running_backend):
    """What ``%gather text`` gathers: what ``names`` (``RememberedNames``) finds, else, when
    this kernel has no future of that name, the dataset published as ``text`` on the
    cluster of ``running_backend()``; the UsageError of ``names`` if neither.

    A published cut value is remembered under ``text`` with its cut, so that ``%gather``
    joins its pieces (and a later ``%gather text`` finds them here)."""
    try:
        return names.gather_target(text, value)
    except UsageError:
        published = published_futures(running_backend(), text)
        if published is None:
            raise
    futures, cut = unpacked(published)
    if cut is not None:
        type_name, rows = cut
        keys = tuple(f.key for f in futures)
        names.remember({text: futures}, {text: Cut(text, keys, rows, type_name)})
    return futures
