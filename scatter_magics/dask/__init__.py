"""The Dask backend: the magics and the live widget on a ``dask.distributed`` cluster.

- :mod:`.backend`: ``DaskBackend``, a ``distributed.Client`` seen through the backend
  interface (``scatter_magics/backend.py``), and Dask ``LocalCluster`` start-up.
- :mod:`.plugin`: the ``SchedulerPlugin`` that batches key and worker events (their
  records in :mod:`.event_records`) and keeps broadcasts on every worker; :mod:`.preload`
  installs it with ``dask scheduler --preload``.
- :mod:`.starts`: the workers' ``StartReporter`` (which tasks run, not merely wait).
- :mod:`.install`: putting both plugins on a cluster (always by value: its workers need
  not have scatter_magics), never half-registered, and taking them off on ``%cluster stop``.
- :mod:`.room`: a scatter checked against each target worker's room (Dask pauses at 80 %
  of ``memory_limit``) before anything moves.
- :mod:`.credentials`: a connection's TLS security, written into the discovery registry
  and read back by the Jupyter server.
- :mod:`.dashboard`: a cluster's dashboard link, when it really has a dashboard.
- :mod:`.events`: the client side of those events (or polling, without the plugin).
- :mod:`.resend`: scattered data Dask lost with its workers, scattered again from where
  the magics read it (the notebook's variable).
- :mod:`.failures`: Dask's failures as the classes of ``errors.py``.
- :mod:`.published`: the published datasets, listed on the scheduler (by the recorder).
- :mod:`.task_output`: what tasks print, captured on the workers and relayed to the
  clients that hold their keys (plugins shipped by value).
- :mod:`.recorder`: the ``SchedulerPlugin`` keeping memory samples and ended tasks for the
  views, and answering the summary's key records; :mod:`.views` turns its answers into
  the package's summary, history and task stream (``%cluster`` and the Jupyter server).
- :mod:`.adopt`: Dask clusters a notebook starts on its own, put in the Jupyter sidebar's
  registry after each cell (it imports nothing of Dask).

Needs ``distributed`` (``pip install "scatter_magics[dask]"``); nothing else in the
package imports this subpackage until a Dask client is used.
"""
