"""A cluster on this machine: the scheduler in this process, workers as subprocesses.

| module | holds |
|---|---|
| ``local`` | ``LocalCluster``: starting, scaling and closing a scheduler and its workers |
| ``supervisor`` | the thread that spawns every worker and replaces the dead (``RestartBudget``) |
| ``forkserver`` | the owner's side of the fork server: workers forked from one pre-imported template |

May import: ``engine.scheduler``, ``engine.wire``, ``engine.shm``, and ``discovery``
(a running cluster registers itself). Workers are started by module name
(``engine.worker``, ``engine.worker.template``), never imported.
"""
