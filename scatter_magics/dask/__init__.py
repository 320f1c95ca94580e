"""The Dask backend: the magics and the live widget on a ``dask.distributed`` cluster.

- :mod:`.backend`: ``DaskBackend``, a ``distributed.Client`` seen through the backend
  interface (``scatter_magics/backend.py``), and Dask ``LocalCluster`` start-up.
- :mod:`.plugin`: the ``SchedulerPlugin`` that batches key and worker events and keeps
  broadcasts on every worker; :mod:`.preload` installs it with ``dask scheduler --preload``.
- :mod:`.events`: the client side of those events (or polling, without the plugin).
- :mod:`.failures`: Dask's failures as the classes of ``errors.py``.
- :mod:`.task_output`: what tasks print, captured on the workers and relayed to the
  clients that hold their keys (plugins shipped by value).
- :mod:`.adopt`: Dask clusters a notebook starts on its own, put in the Jupyter sidebar's
  registry after each cell (it imports nothing of Dask).

Needs ``distributed`` (``pip install "scatter_magics[dask]"``); nothing else in the
package imports this subpackage until a Dask client is used.
"""
