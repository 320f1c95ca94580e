"""The client: ``Client`` and ``Future``, and the small objects a ``Client`` is made of.

| module | holds |
|---|---|
| ``client`` | ``Client``: Dask's public methods, starting, closing, and its door to the loop (``sync``) |
| ``connecting`` | how a client reaches its scheduler: a cluster it starts, one in this process, or TCP |
| ``future`` | ``Future``, the per-key ``FutureState`` its Futures share, ``settled(state)`` |
| ``references`` | ``References``: which keys the Futures hold; releasing the rest in batches |
| ``events`` | ``EventStream`` and ``Subscription``: the scheduler's events, fed to callbacks |
| ``scatter`` | ``Scattering``: a scatter's keys, futures and payload, carried to the workers |
| ``gather`` | ``Gathering``: values read back from their holders or through the scheduler |
| ``callbacks`` | ``DoneCallbacks``: the thread that runs ``Future.add_done_callback`` callbacks |
| ``resending`` | ``Resending``: lost keys sent again when the scheduler asks (own copies, sources) |
| ``datasets`` | published datasets: packing, getting, ``Datasets`` (``client.datasets``) |
| ``ending`` | ``Ending``: why a client closed under its user, and what its calls raise then |
| ``waiting`` | ``wait``, and ``within`` (an await with a timeout) |
| ``as_completed`` | ``as_completed``: futures in the order they finish (Dask's whole API, ``async for`` too) |
| ``submit`` | what ``submit`` and ``map`` send: one record per task |
| ``task_options`` | the keywords ``submit`` keeps (``priority``, ``retries``, ``resources``, ...), checked |
| ``housekeeping`` | ``Housekeeping``: ``run``, ``run_on_scheduler``, ``upload_file``, versions, restart |
| ``cluster_methods`` | ``wait_for_workers``, ``run``, ``restart``, ``upload_file``, ...: the Client's, bound |
| ``queries`` | ``who_has``, ``has_what``, ``nthreads``, ``processing``, ``scheduler_info``: the Client's, bound |
| ``describing`` | ``futures``, ``dashboard_link``, ``_repr_html_``: what a Client shows of itself |
| ``executor`` | ``ClientExecutor``: ``get_executor()``, a ``concurrent.futures.Executor`` |
| ``coordination`` | ``Variable`` and ``Queue``, and what they share with the locks (``Shared``) |
| ``locks`` | ``Lock``, ``Semaphore`` and ``Event`` |
| ``fire_and_forget`` | ``fire_and_forget``: tasks that run to the end, kept or not |
| ``link`` | how a client reaches its scheduler: in-process calls, or a channel |
| ``send_ahead`` | ``SendAhead``: a few small values scattered without waiting for the loop thread |
| ``scatter_input`` | what ``scatter`` accepts, as keys and values, and the shape it returns |
| ``scatter_copy`` | a scatter's values as payload: pickled, large buffers in shared memory once |
| ``gc_pause`` | the garbage collector held back while one call builds 1,000+ futures |
| ``graphs`` | dask graphs as tasks: what ``get``, ``compute`` and ``persist`` send |
| ``dask_default`` | a running ``Client`` as dask's default scheduler (dask imported lazily) |

``Client`` holds the others and calls them; none of them holds the ``Client`` (the
scheduler and the loop thread outlive a client the user dropped), and no module but
``client`` imports ``client``. ``Future`` and the coordination primitives reach their
client through public names only (``refs``, ``gather``, ``sync``, ``cancel``, ``retry``,
``done_callbacks``, ``scheduler_link``, ``codec``).

May import: ``engine.cluster`` (the ``LocalCluster`` a ``Client()`` starts),
``engine.scheduler`` (``placing`` only: a direct scatter's steps), ``engine.wire``,
``engine.shm`` and the package's top level (``errors``, ``structure``, ``tokenize``,
``progress_callback``, ``current_client``, ``keys``, ``task_output``: what tasks print, shown where
the user looks). This file imports nothing.
"""
