"""The scheduler: its bookkeeping, pure and synchronous, and the I/O around it.

``SchedulerState`` is the state machine (a stimulus in, the messages to send out, no
sockets); ``Scheduler`` owns it, the server socket and the connections. Each is
composed of the parts below, which share records but call each other only through the
methods they are handed.

| module | holds |
|---|---|
| ``records`` | what is recorded per worker (``WorkerInfo``), per key (``KeyInfo``), per task (``TaskOptions``) |
| ``ordering`` | ``Ordering``: each task's priority among queued ones, as Dask orders them |
| ``events`` | ``EventLog``, the events kept while someone subscribes, and their format |
| ``worker_book`` | ``WorkerBook``: joining, leaving, heartbeats, names and ``workers=``, placement |
| ``replicas`` | ``ReplicaBook``: who holds what, the only writer of ``ws.keys``/``ws.nbytes``/``ks.who_has`` |
| ``broadcasts`` | ``StandingBroadcasts``: keys kept on every allowed worker, topped up |
| ``tasks`` | ``TaskMachine``: submit, schedule, finish or fail, release, cancel, forget |
| ``recovery`` | ``Recovery``: recompute, retries after a death, inherited restrictions |
| ``resends`` | ``Resends``: scattered data whose holders died, put back from its copy or asked of clients |
| ``datasets`` | ``DatasetBook``: published datasets, whose keys the cluster holds by name |
| ``durations`` | ``TaskDurations``: how long tasks of each prefix take, learned as they finish |
| ``placement`` | ``Placement``: the worker where a ready task starts soonest; occupancy |
| ``stealing`` | ``WorkStealing``: queued tasks moved to workers that would start them sooner |
| ``reports`` | ``scheduler_info()``, the overview (``summary.summarize``), a page of keys, a subscriber's snapshot |
| ``balance`` | which data to move where: ``rebalance()``, workers retired by ``scale(n)`` |
| ``state`` | ``SchedulerState``: the one door to the parts above |
| ``server`` | ``Scheduler``: connections, message handlers, heartbeat watch, around the state |
| ``outgoing`` | what ``Scheduler.apply`` sends: one message to a peer that may have left, delete-keys merged |
| ``scatter_ops`` | ``ScatterOps``: a scatter's ops: choosing workers, carrying data, recording it |
| ``placing`` | ``place()``: putting scattered data on workers, retried when one dies mid-transfer |
| ``pending_acks`` | ``PendingAcks``: what a no-wait scatter sent, kept until stored, else resent |
| ``resend_ops`` | ``ResendOps``: lost data clients send again, placed; gathers that wait for it |
| ``view_ops`` | ``ViewOps``: what the views ask: ``scheduler_info()``, the overview with datasets, keys, history |
| ``direct_holds`` | ``DirectHolds``: room held for a ``direct=True`` scatter until it is recorded |
| ``cluster_ops`` | ``ClusterOps``: retries, ``run_on_scheduler``, uploads, versions, restart, moving data |
| ``coordination`` | ``Variables``, ``Queues`` and the ``Waits`` of coordination requests |
| ``locks`` | ``Semaphores`` (and so locks) and ``Events`` |

Inside, the modules up to ``state`` (and ``ordering``, ``balance``) are pure: none
imports ``server`` or the I/O parts below it (``scatter_ops``, ``placing``, ``pending_acks``,
``resend_ops``, ``view_ops``, ``direct_holds``, ``cluster_ops``, ``outgoing``), and none does I/O.

May import: ``engine.wire``, ``engine.shm`` and the package's top level (``errors``,
``keys``, and what the views show: ``summary``, ``history``, ``task_stream``,
``key_pages``); nothing else of the engine (``placing`` is shared with ``engine.client``,
which imports it). This file imports nothing.
"""
