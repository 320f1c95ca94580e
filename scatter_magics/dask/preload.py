"""``dask scheduler --preload scatter_magics.dask.preload``: install the event plugin at start.

A scheduler started this way serves the magics' live view from its first second, and
clients need not ship the plugin: ``register_plugin`` finds it by name and does nothing
(the plugin is idempotent). It belongs to the cluster, not to the clients: it stays when
the last client of ours leaves (only the workers' ``StartReporter`` goes). A plain
``dask_setup`` (no click options), so it combines with other preloads (distributed
allows one click-configurable preload at most).
"""

from __future__ import annotations

from .plugin import NAME, ScatterMagicsPlugin


def dask_setup(scheduler) -> None:
    scheduler.add_plugin(ScatterMagicsPlugin(preloaded=True), name=NAME, idempotent=True)
