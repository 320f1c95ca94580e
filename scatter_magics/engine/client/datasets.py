"""Named data that belongs to the cluster: Dask's ``publish_dataset`` and its kin.

A published dataset is any object (usually futures, or containers of them) stored on
the scheduler under a name. Its keys are held on behalf of the name, not of the client
that published it: they outlive that client (a restarted kernel, another process) and
are released only by ``unpublish_dataset`` or the cluster's end. Another client gets the
data back with ``get_dataset``, its futures bound to that client.

The data travels pickled, futures as references to their keys (the pickler tasks use):
the scheduler stores the bytes and never unpickles them.

>>> client.publish_dataset(df=client.scatter(df))     # doctest: +SKIP
>>> other = Client(client.scheduler_address, secret=client.secret)  # doctest: +SKIP
>>> other.list_datasets(), other.get_dataset("df").result().equals(df)  # doctest: +SKIP
(['df'], True)
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from ..wire.serialize import deserialize_task, serialize_task
from .future import Future
from .submit import key_finder
from .waiting import NO_DEFAULT  # Dask's no_default


def named(args: tuple, name, kwargs: dict) -> dict:
    """``{name: data}`` from ``publish_dataset``'s arguments, by Dask's rules."""
    datasets = dict(kwargs)
    if name:
        if not args:
            raise ValueError("If name is provided, expecting call signature like"
                             " publish_dataset(df, name='ds')")
        datasets[name] = args[0] if len(args) == 1 else args
    elif args:
        if len(args) != 1 or not isinstance(args[0], Mapping):
            raise ValueError("If name is omitted, positional argument must be "
                             "a {name: value} dict")
        datasets.update(args[0])
    return datasets


def publish_message(args: tuple, name, override: bool, kwargs: dict, client) -> dict:
    """The ``publish-datasets`` request for ``publish_dataset(*args, name=, override=,
    **kwargs)``: each dataset pickled, ``client``'s futures in it as references to keys."""
    key_of = key_finder(client)
    datasets = {}
    for dataset_name, data in named(args, name, kwargs).items():
        serialized, keys = serialize_task(data, key_of)
        datasets[dataset_name] = {"data": serialized, "keys": sorted(keys, key=str)}
    return {"op": "publish-datasets", "datasets": datasets, "override": override}


async def get_datasets(link, name, client) -> list:
    """``[(published or None, its futures)]`` for ``name`` (or a list of names), asked
    through ``link``; the futures are ``client``'s, made on the loop thread, each as its
    key is now (finished, lost, ...: ``published["states"]``)."""
    names = name if isinstance(name, list) else [name]
    found = await link.request({"op": "get-datasets", "names": names})
    out = []
    for published in found:
        futures = None
        if published is not None:
            futures = Future.for_keys(published["keys"], client)
            for key, state in published["states"].items():
                client.refs.apply({"key": key, **state})
        out.append((published, futures))
    return out


def datasets_of(found: list, name, default):
    """What ``get_dataset(name, default)`` returns, from ``[(published, futures)]``."""
    out = []
    for published, futures in found:
        if published is not None:
            out.append(deserialize_task(published["data"], futures))
        elif default is NO_DEFAULT:
            raise KeyError(f"Dataset '{name}' not found")
        else:
            out.append(default)
    return out if isinstance(name, list) else out[0]


class Datasets(MutableMapping):
    """``client.datasets``: the published datasets as a dict (Dask's ``Datasets``).

    >>> client.datasets["df"] = future          # doctest: +SKIP
    >>> list(client.datasets), len(client.datasets)  # doctest: +SKIP
    (['df'], 1)
    >>> del client.datasets["df"]               # doctest: +SKIP
    """

    __slots__ = ("_client",)

    def __init__(self, client):
        self._client = client

    def __getitem__(self, key):
        # An asynchronous client gives a coroutine, as Dask's does.
        return self._client.get_dataset(key)

    def __setitem__(self, key, value):
        if self._client.asynchronous:
            raise TypeError("Can't use 'client.datasets[name] = value' when client is "
                            "asynchronous; please use 'client.publish_dataset(name=value)' "
                            "instead")
        self._client.publish_dataset(value, name=key)

    def __delitem__(self, key):
        if self._client.asynchronous:
            raise TypeError("Can't use 'del client.datasets[name]' when client is "
                            "asynchronous; please use 'client.unpublish_dataset(name)' instead")
        return self._client.unpublish_dataset(key)

    def __iter__(self):
        if self._client.asynchronous:
            raise TypeError("Can't invoke iter() or 'for' on client.datasets when client is "
                            "asynchronous; use 'async for' instead")
        yield from self._client.list_datasets()

    def __aiter__(self):
        if not self._client.asynchronous:
            raise TypeError("Can't invoke 'async for' on client.datasets when client is "
                            "synchronous; use iter() or 'for' instead")

        async def names():
            for key in await self._client.list_datasets():
                yield key
        return names()

    def __len__(self):
        if self._client.asynchronous:
            raise TypeError("Can't use 'len(client.datasets)' when client is asynchronous; "
                            "please use 'len(await client.list_datasets())' instead")
        return len(self._client.list_datasets())


# ------------------------------------------------- the Client's methods (client.py) ---
# Functions of the Client (``self``), bound as its methods: Dask's names and signatures.

def publish_dataset(self, *args, name=None, override: bool = False, **kwargs) -> None:
    """Store data on the cluster by name, until ``unpublish_dataset`` (as Dask's)."""
    return self._ask(publish_message(args, name, override, kwargs, self), None)


def unpublish_dataset(self, name, **kwargs) -> None:
    """Forget the dataset ``name`` (or a list of names); its keys go once unheld."""
    return self._ask({"op": "unpublish-datasets", "names": name if isinstance(name, list)
                      else [name]}, kwargs.get("asynchronous"))


def list_datasets(self, **kwargs) -> list:
    """The names of the datasets published on the cluster."""
    return self._ask({"op": "list-datasets"}, kwargs.get("asynchronous"))


def get_dataset(self, name, default=NO_DEFAULT, **kwargs):
    """The dataset ``name`` (or a list), its futures ours; ``default`` or KeyError if none."""
    self._check_open()
    return self._run(get_datasets(self._link, name, self), kwargs.get("asynchronous"),
                     then=lambda found: datasets_of(found, name, default))


def datasets(self) -> Datasets:
    """The published datasets as a ``MutableMapping`` (Dask's ``client.datasets``)."""
    return Datasets(self)
