"""A cluster on this machine: the scheduler in this process, workers as subprocesses.

| module | holds |
|---|---|
| ``local`` | ``LocalCluster``: starting, scaling and closing a scheduler and its workers |
| ``memory_limit`` | a worker's ``memory_limit`` in bytes, from what the cluster is given (Dask's meaning) |
| ``supervisor`` | the thread that spawns every worker and replaces the dead (``RestartBudget``) |
| ``liveness`` | ``ProcessWatch``: a silent worker busy (CPU time advancing) or frozen, from ``/proc`` |
| ``in_process`` | ``InProcessWorkers``: workers as threads of this process (``processes=False``) |
| ``forkserver`` | the owner's side of the fork server: workers forked from one pre-imported template |
| ``template_spawn`` | the fork server's template, spawned before the rest is imported (a cold start's first step) |

May import: ``engine.scheduler``, ``engine.wire``, ``engine.shm``, and ``discovery``
(a running cluster registers itself). Workers are started by module name
(``engine.worker``, ``engine.worker.template``), never imported; only a cluster of
workers in this process (``in_process``) imports ``engine.worker``, when it starts.
"""
