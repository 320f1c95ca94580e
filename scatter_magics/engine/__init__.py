"""The embedded engine: a scheduler in this process, worker processes beside it.

One sub-package per part, each with a map of its modules in its ``__init__``:

| package | holds | may import (besides the package's top level) |
|---|---|---|
| ``shm`` | shared memory and memory limits | — |
| ``wire`` | the wire format, connections, serialization, the loop thread | ``shm`` |
| ``scheduler`` | the scheduler's state (pure) and its I/O | ``wire``, ``shm`` |
| ``worker`` | the worker process | ``wire``, ``shm`` |
| ``cluster`` | ``LocalCluster`` and the supervision of its workers | ``scheduler``, ``wire``, ``shm`` |
| ``client`` | ``Client``, ``Future`` and what they are made of | ``cluster``, ``scheduler``, ``wire``, ``shm`` |

``backend.py`` is the engine seen through ``scatter_magics/backend.py``'s interface: the
only module of the engine the notebook layer reaches, and only through that interface.
It may import ``client`` and ``cluster`` (it starts the fork server before the client's
import).
``tests/test_layers.py`` checks these rules. This file imports nothing: every worker
process passes through it.
"""
