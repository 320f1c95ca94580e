"""A worker process: ``python -m scatter_magics.engine.worker``.

| module | holds |
|---|---|
| ``process`` | the worker: holds data, runs tasks in a thread pool, serves data to peers |
| ``lifeline`` | how a worker dies with its owner: stdin, ``PR_SET_PDEATHSIG``, the parent pid |
| ``task_start`` | ``StartWatch``: when a worker reports a task as running |
| ``tickets`` | ``TaskTicket``: a task not yet started, which the scheduler may take back |
| ``__main__`` | the command line entry point |

May import: ``engine.wire``, ``engine.shm`` and the package's top level; never the
client, the scheduler or tornado (a worker's start-up is most of a cold start).
This file imports nothing, for the same reason.
"""
