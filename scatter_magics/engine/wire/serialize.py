"""User data as bytes: cloudpickle, pickle protocol 5, large buffers out-of-band.

A :class:`Serialized` is what travels for a value: a small pickle ``header`` plus the raw
``buffers`` it refers to (numpy data, bytes, ...). The scheduler and workers pass it
along without unpickling it; only the process that needs the value calls
:func:`deserialize`. Pickling a ``Serialized`` inside a message (``protocol.dumps``) hands
its buffers to the wire as separate frames, so they are never copied into one big bytes.
"""

from __future__ import annotations

import functools
import io
import pickle
import sys
from typing import Callable

from ...errors import SerializationError
from ..shm.pool import ShmRef, resolve
from .protocol import INLINE_BUFFER_LIMIT, cloudpickle_module


class Serialized:
    """A pickled value: ``header`` bytes and the out-of-band ``buffers`` it needs."""

    __slots__ = ("header", "buffers")

    def __init__(self, header: bytes, buffers: list | tuple):
        self.header = header
        self.buffers = buffers

    @property
    def nbytes(self) -> int:
        if not self.buffers:  # most items of a long list: no generator to run
            return len(self.header)
        return len(self.header) + sum(b.nbytes if isinstance(b, ShmRef) else memoryview(b).nbytes
                                      for b in self.buffers)

    @property
    def in_shared_memory(self) -> bool:
        return bool(self.buffers) and any(isinstance(b, ShmRef) for b in self.buffers)

    def __reduce__(self):
        # PickleBuffer makes each buffer an out-of-band frame of the enclosing message;
        # a ShmRef is a few bytes and travels inside the pickle.
        if not self.buffers:  # the common small value: no list to make on either side
            return Serialized, (self.header, ())
        return Serialized, (self.header, [b if isinstance(b, ShmRef) else pickle.PickleBuffer(b)
                                          for b in self.buffers])

    def __repr__(self) -> str:
        return f"<Serialized: {self.nbytes} bytes in {1 + len(self.buffers)} parts>"


class Unpickled(Serialized):
    """A value handed over as it is, never pickled: between the parts of a cluster whose
    workers are threads of this process (``Client(processes=False)``), as Dask's inproc.

    It passes for a ``Serialized`` with out-of-band buffers (so no path keeps a copy of
    its header), and :func:`deserialize` gives the object itself back. Should it ever
    leave the process (a remote client gathering through the scheduler), it is pickled
    then, as a plain ``Serialized``.
    """

    __slots__ = ("value",)

    def __init__(self, value):
        super().__init__(b"", (None,))
        self.value = value

    @property
    def nbytes(self) -> int:
        return sizeof(self.value)

    @property
    def in_shared_memory(self) -> bool:
        return False

    def __reduce__(self):
        return serialize(self.value).__reduce__()

    def __repr__(self) -> str:
        return f"<Unpickled: {type(self.value).__name__}>"


def _collect(buffers: list):
    def callback(buf: pickle.PickleBuffer):
        if buf.raw().nbytes < INLINE_BUFFER_LIMIT:
            return True
        buffers.append(buf.raw())
        return False
    return callback


# Types cloudpickle pickles exactly as pickle does; making a CloudPickler was half the
# cost of serializing each small item of a 10,000-element list.
_PLAIN = frozenset({int, float, complex, bool, str, type(None)})


def serialize_plain(items: dict) -> dict | None:
    """``{key: serialize(value)}`` if every value is a plain number, string or None; else None.

    >>> serialize_plain({"a": 1, "b": "x"})["b"].header == pickle.dumps("x", protocol=5)
    True

    One pass without a call per value: the elements of a long list of numbers.
    """
    plain = _PLAIN
    for value in items.values():
        if type(value) not in plain:
            return None
    dumps = pickle.dumps
    return {key: Serialized(dumps(value, protocol=5), ()) for key, value in items.items()}


def serialize(obj) -> Serialized:
    """Pickle ``obj`` with cloudpickle; raise :class:`SerializationError` naming its type."""
    if type(obj) in _PLAIN:  # pickle's own output, without a CloudPickler per call
        return Serialized(pickle.dumps(obj, protocol=5), ())
    buffers: list = []
    try:
        header = cloudpickle_module().dumps(obj, protocol=5,
                                            buffer_callback=_collect(buffers))
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize object of type {type(obj).__name__!r}: {exc}") from exc
    return Serialized(header, buffers)


def wire(s: Serialized) -> "Serialized | bytes":
    """``s`` as it goes into a message: just its header when it has no other buffers.

    Pickling a ``Serialized`` calls its ``__reduce__`` and rebuilds it on the other side;
    a 10,000-element scatter spent 7.5 ms there against 0.4 ms for the plain bytes.
    Every reader (:func:`deserialize`, :func:`nbytes_of`) takes either form.
    """
    return s if s.buffers else s.header


def for_message(payload: dict) -> tuple[dict, dict, list]:
    """``{key: wire form}``, ``{key: nbytes}`` and the keys in shared memory, in one pass."""
    wired, nbytes, shared = {}, {}, []
    for key, s in payload.items():
        if s.buffers:
            wired[key], nbytes[key] = s, s.nbytes
            if s.in_shared_memory:
                shared.append(key)
        else:  # most items of a long list
            wired[key] = s.header
            nbytes[key] = len(s.header)
    return wired, nbytes, shared


def nbytes_of(s: "Serialized | bytes") -> int:
    return len(s) if type(s) is bytes else s.nbytes


def deserialize(s: "Serialized | bytes", view_of=None):
    """The value; ``view_of(ref)`` maps buffers that live in shared memory."""
    if type(s) is bytes:  # the wire form of a value without buffers
        header, buffers = s, ()
    elif type(s) is Unpickled:
        return s.value
    else:
        header = s.header
        buffers = resolve(s.buffers, view_of) if view_of is not None and s.buffers else s.buffers
    try:
        return pickle.loads(header, buffers=buffers)
    except Exception as exc:
        raise SerializationError(f"cannot deserialize value: {exc!r}") from exc


def unpickle_all(pickles: list) -> list:
    """:func:`deserialize` of each pickle (``bytes``, no buffers), in one call.

    >>> unpickle_all([pickle.dumps(1), pickle.dumps("a")])
    [1, 'a']

    A gather of 10,000 small values spent a third of its time calling deserialize().
    """
    loads = pickle.loads
    try:
        return [loads(p) for p in pickles]
    except Exception as exc:
        raise SerializationError(f"cannot deserialize value: {exc!r}") from exc


# ------------------------------------------------------- tasks with futures ---

@functools.cache
def _task_pickler():
    """The ``TaskPickler`` class, made on first use: it subclasses cloudpickle's pickler,
    and cloudpickle is imported on first need (:func:`~.protocol.cloudpickle_module`)."""

    class TaskPickler(cloudpickle_module().CloudPickler):
        """Pickles a task, replacing every object with a key by a reference to that key.

        This finds futures at any depth (lists, dicts, attributes of objects) without a
        traversal of our own, and tells the caller which keys the task depends on.
        """

        def __init__(self, file, key_of: Callable, deps: set, buffer_callback):
            super().__init__(file, protocol=5, buffer_callback=buffer_callback)
            self._key_of = key_of
            self._deps = deps

        def persistent_id(self, obj):
            key = self._key_of(obj)
            if key is None:
                return None
            self._deps.add(key)
            return key

    return TaskPickler


class _TaskUnpickler(pickle.Unpickler):
    def __init__(self, file, data: dict, buffers):
        super().__init__(file, buffers=buffers)
        self._data = data

    def persistent_load(self, key):
        return self._data[key]


def serialize_task(task, key_of: Callable) -> tuple[Serialized, set]:
    """Pickle ``task``; objects for which ``key_of`` returns a key become references."""
    if _plain_call(task):  # no Future can hide in it, and plain pickle does the same
        return Serialized(pickle.dumps(task, protocol=5), ()), set()
    buffers: list = []
    deps: set = set()
    file = io.BytesIO()
    try:
        _task_pickler()(file, key_of, deps, _collect(buffers)).dump(task)
    except Exception as exc:
        raise SerializationError(f"cannot serialize task: {exc}") from exc
    return Serialized(file.getvalue(), buffers), deps


_PLAIN_ARGS = frozenset({type(None), bool, int, float, complex, str, bytes})


def _plain_call(task) -> bool:
    """Whether ``task`` is a call ``(func, args, kwargs)`` of scalar arguments to a
    function that cloudpickle would pickle by name, as plain pickle does.

    Most submits are such calls; plain pickle takes 1 µs for ``inc(5)``, a CloudPickler
    with a ``persistent_id`` for every object 4.7 µs (timeit).
    """
    if type(task) is not tuple or len(task) != 3:
        return False
    func, args, kwargs = task
    if type(args) is not tuple or type(kwargs) is not dict or not _by_name(func):
        return False
    return _PLAIN_ARGS.issuperset(map(type, args)) and \
        (not kwargs or _PLAIN_ARGS.issuperset(map(type, kwargs.values())))


def _by_name(func) -> bool:
    """Whether ``func`` is found under its name in an imported module other than
    ``__main__``, which no ``cloudpickle.register_pickle_by_value`` covers."""
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    found = sys.modules.get(module) if module and module != "__main__" else None
    for name in qualname.split(".") if found is not None else ():
        found = getattr(found, name, None)
    if found is not func:
        return False
    # Nothing is registered by value before cloudpickle is imported.
    cloudpickle = sys.modules.get("cloudpickle")
    by_value = cloudpickle.list_registry_pickle_by_value() if cloudpickle else ()
    return not by_value or not any(module == m or module.startswith(m + ".") for m in by_value)


def deserialize_task(s: Serialized, data: dict):
    """Unpickle a task made by :func:`serialize_task`, resolving keys from ``data``
    (or, for one made by :func:`task_in_process`, put the values in place)."""
    if type(s) is Unpickled:
        return _resolve(s.value, data)
    if not data:  # no key to resolve (most tasks): plain pickle, 0.9 µs against 2.3 µs
        return pickle.loads(s.header, buffers=s.buffers)
    return _TaskUnpickler(io.BytesIO(s.header), data, s.buffers).load()


class _KeyRef:
    """Where a Future's value goes in a task kept in this process."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


def task_in_process(task, key_of: Callable) -> tuple[Unpickled, set]:
    """:func:`serialize_task` for workers in this process: nothing pickled, each Future
    in (nested lists, tuples, sets and dicts of) the arguments replaced by its key's place."""
    deps: set = set()

    def refs(obj):
        key = key_of(obj)
        if key is not None:
            deps.add(key)
            return _KeyRef(key)
        if type(obj) in (list, tuple, set, frozenset):
            return type(obj)(refs(x) for x in obj)
        if type(obj) is dict:
            return {k: refs(v) for k, v in obj.items()}
        return obj

    func, args, kwargs = task
    return Unpickled((func, refs(tuple(args)), refs(dict(kwargs)))), deps


def _resolve(obj, data: dict):
    if type(obj) is _KeyRef:
        return data[obj.key]
    if type(obj) in (list, tuple, set, frozenset):
        return type(obj)(_resolve(x, data) for x in obj)
    if type(obj) is dict:
        return {k: _resolve(v, data) for k, v in obj.items()}
    return obj


class Codec:
    """How a client turns values and tasks into what travels: pickled (workers in other
    processes) or as they are (:data:`IN_PROCESS`)."""

    def __init__(self, value: Callable, task: Callable):
        self.serialize, self.serialize_task = value, task


PICKLED = Codec(serialize, serialize_task)
IN_PROCESS = Codec(Unpickled, task_in_process)


# ------------------------------------------------------------------- sizes ---

def sizeof(obj, _depth: int = 0) -> int:
    """An estimate of the memory ``obj`` holds, in bytes (cheap, not exact)."""
    if type(obj) in _PLAIN:  # a task's usual result: no attribute looked for in vain
        return sys.getsizeof(obj)
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    memory_usage = getattr(obj, "memory_usage", None)
    if callable(memory_usage) and hasattr(obj, "columns"):  # a pandas DataFrame
        return int(memory_usage(index=True).sum())
    if isinstance(obj, (list, tuple, set, frozenset)) and _depth < 3:
        return sys.getsizeof(obj) + sum(sizeof(x, _depth + 1) for x in list(obj)[:1000])
    if isinstance(obj, dict) and _depth < 3:
        items = list(obj.items())[:1000]
        return sys.getsizeof(obj) + sum(sizeof(k, _depth + 1) + sizeof(v, _depth + 1)
                                        for k, v in items)
    return sys.getsizeof(obj)
