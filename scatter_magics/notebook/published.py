"""``%scatter NAME --publish`` and ``%gather NAME`` of a published dataset.

A published dataset belongs to the cluster, not to this kernel's client (Dask's
``publish_dataset``): it outlives a kernel restart. ``%scatter df --publish`` publishes
``df``'s future(s) under the name ``df`` (replacing a dataset of that name), and
``%gather df`` in a kernel that has no future of that name (after a restart,
``%cluster connect <id>``) gathers the dataset published as ``df``.
"""

from __future__ import annotations

from IPython.core.error import UsageError

from .arguments import is_dotted_name


def check_publishable(args) -> None:
    """``%scatter --publish`` names each dataset after its variable: it needs names."""
    for text in args.names if args.publish else ():
        if not is_dotted_name(text):
            raise UsageError(f"--publish names each dataset after its variable, and {text!r} "
                             f"is an expression: assign it to a variable, then %scatter that "
                             f"with --publish")


def publish(session, results: dict, args) -> None:
    """With ``--publish``: each argument's future(s) (``{name: future(s)}``) published
    under its name, on the cluster of ``session`` (the magics' ``ClusterSession``)."""
    if args.publish:
        backend = session.running_backend()
        for name, futures in results.items():
            backend.publish(name, futures)


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
    cluster of ``running_backend()``; the UsageError of ``names`` if neither."""
    try:
        return names.gather_target(text, value)
    except UsageError:
        published = published_futures(running_backend(), text)
        if published is None:
            raise
        return published
