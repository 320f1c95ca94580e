"""A worker process: ``python -m scatter_magics.engine.worker``.

| module | holds |
|---|---|
| ``process`` | the worker: holds data, runs tasks in a thread pool, serves data to peers |
| ``lifeline`` | how a worker dies with its owner: stdin, ``PR_SET_PDEATHSIG``, the parent pid; its lines of stdin |
| ``runner`` | ``TaskRunner``: the task threads, by priority within the worker's threads and resources, results collected per burst |
| ``task_start`` | ``StartWatch``, ``StartClock``: when a worker reports a task as running |
| ``task_context`` | what a task sees: ``get_worker``, ``secede``, ``rejoin``, ``worker_client`` |
| ``run_function`` | ``Client.run``'s function, called on the worker's loop |
| ``uploads`` | ``Uploads``: files from ``Client.upload_file``, on ``sys.path`` and imported |
| ``task_call`` | a task's call on a thread (given back if withdrawn), its traceback from its own frames |
| ``tickets`` | ``TaskTicket``: a task not yet started, which the scheduler may take back (``TicketBook``) |
| ``task_output`` | what tasks print, sent to the scheduler (the capture: ``scatter_magics/task_capture.py``) |
| ``template`` | the fork server: a worker's modules imported once, a worker forked per request |
| ``command_line`` | the options of a worker's and of the template's command lines |
| ``__main__`` | the command line entry point |

May import: ``engine.wire``, ``engine.shm`` and the package's top level; never the
client, the scheduler or tornado (a worker's start-up is most of a cold start). A task
that asks for a client (``get_client()``) gets one through ``backend.py``'s table of
engines, imported then.
This file imports nothing, for the same reason.
"""
