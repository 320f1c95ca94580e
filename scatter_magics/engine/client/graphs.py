"""Dask graphs on the embedded cluster: what ``Client.get``, ``compute`` and ``persist`` send.

A graph becomes dask's own task spec (``dask._task_spec``: each key a ``Task``, an
``Alias`` or a ``DataNode``; ``convert_legacy_graph`` turns old-style tuples into them),
and each node becomes one task of ours whose call is the node itself, given the values
of its dependencies, as Dask's workers call it (``node(values)``). Nothing here reads a
task's function or arguments, so dask's semantics stay dask's; the one exception
refuses graphs that need distributed's own worker machinery (the P2P shuffle and
rechunk, ``distributed.shuffle``), before anything is sent.

A Future of this client anywhere in a graph (a scattered value passed to a delayed
function; the futures a persisted collection is made of) travels as a reference to its
key and reaches the task as its value, as in ``submit``'s arguments. A key whose node
is the Future of that same key (a persisted collection computed again) is not a task:
its value is on the cluster already.

Tasks are sent in dask's order (``dask.order``: inputs before what reads them, the
order that frees memory soonest), with a Future for every key, of which the caller
keeps those asked for; dropping the others releases them as soon as nothing reads them.

dask is imported on first use, never by ``import scatter_magics``.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Iterator, Mapping
from typing import Callable

from ...errors import DistributedOnlyGraphError, MissingDependencyError
from ..wire.serialize import serialize_task
from .future import Future
from .scatter_input import plain_workers
from .submit import key_finder
from .task_options import task_options

# Modules whose task functions run only inside Dask's own workers (they reach the
# worker's shuffle extension): a graph calling one cannot run here.
DISTRIBUTED_ONLY = ("distributed.shuffle",)


class Dependency:
    """A key a node reads: pickled as a reference, unpickled as the key's value."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


def graph_options(workers, priority, retries, resources, allow_other_workers,
                  fifo_timeout, actors) -> dict | None:
    """The options of every task of a graph (``task_options.py``'s record field), as Dask
    applies its per-graph keywords to each task: ``priority`` (the graph's tasks keep
    ``dask.order``'s order among themselves, as sent), ``retries``, ``resources``,
    ``allow_other_workers`` (loosens ``workers=``; without ``workers=`` it means nothing
    and is let be, as Dask does for graphs) and ``fifo_timeout``. ``actors`` are refused
    (``NotImplementedError``, naming ``%cluster start --dask``)."""
    return task_options(priority=priority, retries=retries, resources=resources,
                        workers=workers,
                        allow_other_workers=bool(allow_other_workers) and workers is not None,
                        fifo_timeout=fifo_timeout, actors=actors)


def require_dask() -> None:
    """Raise ``MissingDependencyError`` unless a dask with expressions (2025.4+) is here."""
    try:
        import dask
        from dask._expr import FinalizeCompute  # noqa: F401  (2025.4: collections as exprs)
        from dask._task_spec import convert_legacy_graph  # noqa: F401
    except ImportError as exc:
        found = getattr(sys.modules.get("dask"), "__version__", None)
        raise MissingDependencyError(
            "dask graphs on the embedded cluster need dask >= 2025.4"
            + (f" (dask {found} is installed)" if found else "")
            + ": pip install 'scatter_magics[dask]' 'dask>=2025.4'") from exc
    del dask


def materialize(dsk) -> dict:
    """``{key: GraphNode}`` of a dict graph (old-style tuples or task-spec nodes), a
    ``HighLevelGraph``, or a dask expression (what ``dask.compute`` hands a scheduler)."""
    require_dask()
    from dask._task_spec import convert_legacy_graph

    if not isinstance(dsk, Mapping):
        if not hasattr(dsk, "__dask_graph__"):
            raise TypeError(f"get() needs a dask graph (a dict of tasks, a HighLevelGraph "
                            f"or a dask expression), got {type(dsk).__name__!r}")
        dsk = dsk.__dask_graph__()
    return convert_legacy_graph(dict(dsk))


def cull(graph: dict, keys) -> dict:
    """The nodes of ``graph`` that ``keys`` need (a dict graph may hold more)."""
    needed, todo = {}, list(keys)
    while todo:
        key = todo.pop()
        if key in needed or key not in graph:
            continue
        needed[key] = node = graph[key]
        todo.extend(node.dependencies)
    return needed


def flatten_keys(keys) -> list:
    """The keys in ``keys``: one key, or lists of keys nested (a tuple is a key, as in Dask)."""
    if not isinstance(keys, list):
        return [keys]
    return [k for item in keys for k in flatten_keys(item)]


def pack(keys, values: dict):
    """``keys``' structure with each key replaced by its value."""
    if isinstance(keys, list):
        return [pack(item, values) for item in keys]
    return values[keys]


def gathered(keys, futures: dict, gather: Callable):
    """``gather(packed futures)``, the futures released as soon as it is done (an
    awaitable's once awaited), as Dask's ``get`` does: not whenever the garbage collector
    breaks a cycle that holds them, so a graph that uses ``"x"`` again gets a new ``"x"``."""
    try:
        values = gather(pack(keys, futures))
    except BaseException:
        _release(futures)
        raise
    if not inspect.isawaitable(values):
        _release(futures)
        return values

    async def released_after():
        try:
            return await values
        finally:
            _release(futures)
    return released_after()


def _release(futures: dict) -> None:
    for future in futures.values():
        future.release()


def check_runnable(graph: dict) -> None:
    """Refuse a graph that calls functions only Dask's own workers can run."""
    for key, node in graph.items():
        name = _distributed_only_function(node)
        if name is not None:
            raise DistributedOnlyGraphError(
                f"task {key!r} calls {name}, which runs only on Dask's own workers (the "
                "P2P shuffle or rechunk): run this graph on a Dask cluster (%cluster start "
                "--dask in a notebook, or distributed.Client()), or use task-based "
                "shuffles here: dask.config.set({'dataframe.shuffle.method': 'tasks', "
                "'array.rechunk.method': 'tasks'})")


def _distributed_only_function(node) -> str | None:
    from dask._task_spec import GraphNode, Task

    todo = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, Task):
            func = item.func
            while isinstance(func, functools.partial):
                func = func.func
            module = getattr(func, "__module__", None) or ""
            if module.startswith(DISTRIBUTED_ONLY):
                return f"{module}.{getattr(func, '__qualname__', func)}"
            todo.extend(item.args)
            todo.extend(item.kwargs.values())
        elif isinstance(item, GraphNode):
            todo.extend(getattr(item, "args", ()))  # List, Dict and the like
        elif isinstance(item, dict):  # an inner graph (_execute_subgraph)
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    return None


def task_records(graph: dict, restrictions, options: dict | None, key_of: Callable,
                 is_own: Callable) -> list:
    """``(key, task, deps, restrictions, options)`` per node to run, inputs before readers.

    ``key_of(obj)`` names the key of one of this client's Futures (None otherwise);
    ``is_own(node, key)`` says a node is that key's own Future (already on the cluster).
    """
    from dask.order import order

    def reference(obj):
        return obj.key if type(obj) is Dependency else key_of(obj)

    priorities = order(graph)
    records = []
    for key in sorted(graph, key=priorities.__getitem__):
        node = graph[key]
        if is_own(node, key):
            continue
        values = {dep: Dependency(dep) for dep in node.dependencies}
        task, deps = serialize_task((node, (values,), {}), reference)
        records.append((key, task, deps, restrictions, options))
    return records


def own_future_node(key_of: Callable) -> Callable:
    """``is_own(node, key)`` for :func:`task_records`: a ``DataNode`` holding ``key``'s
    own Future (``key_of`` names a Future's key, None for anything else)."""
    from dask._task_spec import DataNode

    def is_own(node, key) -> bool:
        return isinstance(node, DataNode) and key_of(node.value) == key
    return is_own


def submit(graph: dict, wanted: list, restrictions, options: dict | None, key_of: Callable,
           tracked: Callable, make_futures: Callable, send: Callable) -> dict:
    """Send the tasks of ``graph`` that ``wanted`` needs; ``{key: Future}`` of ``wanted``.

    ``key_of(obj)``: the key of a Future of the client (None otherwise); ``tracked(key)``:
    whether the client holds that key; ``make_futures(keys)``: ``{key: Future}``;
    ``send(records)``: the submit request. Every task gets a Future while it is sent;
    the caller keeps those of ``wanted``, and the others, dropped, release their keys
    once nothing reads them (``TaskMachine.forget_if_unwanted``).
    """
    check_runnable(graph)
    graph = cull(graph, wanted)
    for key in wanted:
        if key not in graph and tracked(key) is None:
            raise KeyError(f"key {key!r} is not in the graph")
    records = task_records(graph, restrictions, options, key_of, own_future_node(key_of))
    every = make_futures([record[0] for record in records])
    futures = {key: every[key] if key in every else make_futures([key])[key]
               for key in wanted}
    send(records)
    return futures


# ------------------------------------------------------------ collections ---

def compute(collections, optimize_graph: bool, traverse: bool, kwargs: dict,
            submit: Callable):
    """``Client.compute``: a Future per dask collection in ``collections`` (others as
    they are), one if ``collections`` is one; ``submit(expr, keys)`` sends a graph."""
    require_dask()
    import dask
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    singleton = not isinstance(collections, (list, tuple, set, frozenset))
    items = [collections] if singleton else list(collections)
    if traverse:  # containers become delayed, as in Dask
        items = [dask.delayed(a) if isinstance(a, (list, set, tuple, dict, Iterator)) else a
                 for a in items]
    variables = [a for a in items if dask.is_dask_collection(a)]
    out = items
    if variables:
        expr = FinalizeCompute(collections_to_expr(variables, optimize_graph, **kwargs))
        expr = expr.optimize()
        names = flatten_keys(expr.__dask_keys__())  # one per collection
        futures = submit(expr, names)
        results = iter(futures[name] for name in names)
        out = [next(results) if dask.is_dask_collection(a) else a for a in items]
    return out[0] if singleton else out


def persist(collections, optimize_graph: bool, submit: Callable):
    """``Client.persist``: each collection rebuilt on the Futures of its keys."""
    require_dask()
    import dask
    from dask.base import collections_to_expr

    singleton = not isinstance(collections, (list, tuple, set, frozenset))
    items = [collections] if singleton else list(collections)
    for item in items:
        if not dask.is_dask_collection(item):
            raise TypeError(f"persist() takes dask collections, got {type(item).__name__!r}")
    expr = collections_to_expr(items, optimize_graph).optimize()
    keys = expr.__dask_keys__()  # one entry per collection
    futures = submit(expr, flatten_keys(keys))
    out = []
    for item, item_keys in zip(items, keys):
        rebuild, args = item.__dask_postpersist__()
        out.append(rebuild({k: futures[k] for k in flatten_keys(item_keys)}, *args))
    return out[0] if singleton else out


async def released_then_submitted(refs, link, tasks: list):
    """Send ``tasks``; releases of futures dropped just before go first, so a graph's
    ``x`` is a new ``x``, not one about to be released."""
    refs.flush()
    return await link.request({"op": "submit", "tasks": tasks})


# ------------------------------------------------------------ the Client's methods ---
# Client.get, compute and persist are these functions (client.py binds them), with
# Dask's signatures; the task options apply to every task of the graph (graph_options).

def client_get(client, dsk, keys, workers=None, allow_other_workers=None, resources=None,
               sync=True, asynchronous=None, direct=None, retries=None, priority=0,
               fifo_timeout="60s", actors=None, **kwargs):
    """Compute a dask graph (dict, HighLevelGraph or expression) on the cluster: the
    values of ``keys`` (nested lists alike), or their Futures (``sync=False``)."""
    options = graph_options(workers, priority, retries, resources, allow_other_workers,
                            fifo_timeout, actors)
    futures = _send(client, dsk, flatten_keys(keys), workers, options)
    if not sync:
        return pack(keys, futures)
    return gathered(keys, futures, lambda packed: client.gather(
        packed, asynchronous=asynchronous, direct=direct))


def client_compute(client, collections, sync=False, optimize_graph=True, workers=None,
                   allow_other_workers=False, resources=None, retries=0, priority=0,
                   fifo_timeout="60s", actors=None, traverse=True, **kwargs):
    """A Future per dask collection (delayed, bag, array, dataframe); ``sync``: values."""
    options = graph_options(workers, priority, retries, resources, allow_other_workers,
                            fifo_timeout, actors)
    out = compute(collections, optimize_graph, traverse, kwargs,
                  lambda expr, keys: _send(client, expr, keys, workers, options))
    return client.gather(out) if sync else out


def client_persist(client, collections, optimize_graph=True, workers=None,
                   allow_other_workers=None, resources=None, retries=None, priority=0,
                   fifo_timeout="60s", actors=None, **kwargs):
    """The same collections, computed on the cluster and kept there (as Futures)."""
    options = graph_options(workers, priority, retries, resources, allow_other_workers,
                            fifo_timeout, actors)
    return persist(collections, optimize_graph,
                   lambda expr, keys: _send(client, expr, keys, workers, options))


def _send(client, dsk, wanted: list, workers, options: dict | None) -> dict:
    """Send the tasks of ``dsk`` that ``wanted`` needs: ``{key: Future}`` of ``wanted``.

    Always pickled, even to workers in this process (``processes=False``): a node holds
    the client's Futures inside dask's own objects, where only the pickler finds them."""
    client._check_open()
    return submit(
        materialize(dsk), wanted, plain_workers(workers), options, key_finder(client),
        client.refs.get, lambda keys: Future.for_keys(keys, client), lambda tasks: client._run(
            released_then_submitted(client.refs, client._link, tasks), False))
