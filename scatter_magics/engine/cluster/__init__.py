"""A cluster on this machine: the scheduler in this process, workers as subprocesses.

| module | holds |
|---|---|
| ``local`` | ``LocalCluster``: starting, scaling and closing a scheduler and its workers |
| ``supervisor`` | the thread that spawns every worker and replaces the dead (``RestartBudget``) |
| ``liveness`` | ``ProcessWatch``: a silent worker busy (CPU time advancing) or frozen, from ``/proc`` |

May import: ``engine.scheduler``, ``engine.wire``, ``engine.shm``, and ``discovery``
(a running cluster registers itself). Workers are started by module name
(``engine.worker``), never imported.
"""
