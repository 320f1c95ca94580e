"""What the magics put on a Dask cluster they join, and how they take it off again.

Four plugins, all guests on a cluster someone else may run:

- ``scatter-magics`` (:class:`~.plugin.ScatterMagicsPlugin`, on the scheduler): the live
  view's event stream and broadcasts that stay;
- ``scatter-magics-starts`` (:class:`~.starts.StartReporter`, on every worker, including
  those that join later): when a task starts running;
- ``scatter-magics-output-relay`` and ``scatter-magics-output`` (:mod:`.task_output`, on
  the scheduler and every worker): what tasks print, shown in the notebook.

All always travel **by value** (``cloudpickle.register_pickle_by_value`` of their modules,
which import nothing of scatter_magics but each other and ``task_capture.py``, shipped
with them): the usual shared cluster has ``distributed`` but not this package, and
a plugin sent by reference would make every worker that (re)starts fail with
``ModuleNotFoundError`` for as long as the scheduler keeps it (it saves a worker plugin
*before* sending it, and keeps it whatever the workers say).

Nothing is left half-registered: a worker plugin the workers refused is unregistered at
once (Dask reports their failure as a plain ``Exception``, so any failure counts), and the
magics do without it (no ``running``; tasks' output left in the workers' logs), said once
in the log. A scheduler that refuses the event plugin leaves the view polling
(``events.Poller``) and gets none of the others.

Each client that installed says :func:`leave` when the magics stop using it
(``%cluster stop``); the last one out takes all four off (the event plugin stays if the
cluster's own ``--preload`` put it there). A client that vanishes without leaving counts
as gone when its connection drops.

>>> install(client)                      # doctest: +SKIP
'plugin'
>>> leave(client)   # the last of ours: both plugins are gone  # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import importlib
import logging

logger = logging.getLogger(__name__)

# Travel by value: our plugins' modules, and what they import of ours.
SHIPPED = ("scatter_magics.dask.starts", "scatter_magics.dask.plugin",
           "scatter_magics.dask.event_records", "scatter_magics.dask.published",
           "scatter_magics.dask.task_output", "scatter_magics.task_capture",
           "scatter_magics.dask.recorder")
LEAVE_TIMEOUT = 10.0  # s; taking the worker plugins off waits for every worker's teardown


@contextlib.contextmanager
def shipped_by_value():
    """Within: our plugin modules pickle by value (cloudpickle's registry is global)."""
    import cloudpickle

    modules = [importlib.import_module(name) for name in SHIPPED]
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)


def register_by_value(client, plugin, name: str) -> None:
    """``client.register_plugin(plugin)`` with our modules shipped by value."""
    with shipped_by_value():
        client.register_plugin(plugin, name=name)


def install(client) -> tuple[str, BaseException | None]:
    """Put both plugins on ``client``'s cluster; ``("plugin", None)`` or ``("poll", error)``.

    Blocking; not on the client's loop thread. Never raises: a cluster that refuses a
    plugin still works for the magics, with less to show.
    """
    from .plugin import NAME, ScatterMagicsPlugin
    from .starts import WORKER_PLUGIN_NAME, StartReporter

    try:
        _join(client, lambda: register_by_value(client, ScatterMagicsPlugin(), NAME))
    except Exception as exc:  # an old or locked-down scheduler: poll instead
        logger.info("cannot install the scatter_magics scheduler plugin", exc_info=True)
        return "poll", exc
    if not install_worker_plugin(client, StartReporter(), WORKER_PLUGIN_NAME):
        logger.warning("the live view shows no 'running': the workers did not take the "
                       "plugin that reports started tasks")
    install_output(client)
    return "plugin", None


def install_output(client) -> bool:
    """Bring what ``client``'s tasks print to the notebook (:mod:`.task_output`): the
    relay on the scheduler, the capture on the workers; True if both were taken.

    After the event plugin (a worker's output op without its handler on the scheduler
    would be an error there). Refused, the output stays in the workers' logs."""
    from ..task_output import show
    from .task_output import CAPTURE_NAME, RELAY_NAME, OutputCapture, OutputRelay, subscribe

    try:
        register_by_value(client, OutputRelay(), RELAY_NAME)
    except Exception:
        logger.warning("the scheduler did not take the plugin that relays what tasks "
                       "print; it stays in the workers' logs", exc_info=True)
        return False
    if not install_worker_plugin(client, OutputCapture(), CAPTURE_NAME):
        logger.warning("what tasks print stays in the workers' logs: the workers did not "
                       "take the plugin that captures it")
        return False
    subscribe(client, show)
    return True


def install_worker_plugin(client, plugin, name: str) -> bool:
    """Register a worker plugin, or leave no trace of it; True if every worker took it.

    The scheduler saves a worker plugin before sending it and keeps it whatever the
    workers answer: a plugin they refused would make every worker that (re)starts fail
    (``failure-to-start-...``). So any failure (Dask reports the workers' as a plain
    ``Exception``) unregisters it at once."""
    try:
        register_by_value(client, plugin, name)
        return True
    except Exception as exc:
        logger.warning("the workers refused the worker plugin %r (%s: %s); it is taken off "
                       "the cluster again", name, type(exc).__name__, exc)
        _unregister_worker_plugin(client, name)
        return False


def _join(client, register) -> None:
    """Register the scheduler plugin and count ``client`` among its users.

    Registering is idempotent; joining right after can still meet a plugin that the last
    other client of ours just took off (between our two calls): then register again."""
    register()
    try:
        client.sync(client.scheduler.scatter_magics_join, client=client.id)
    except Exception:
        register()
        client.sync(client.scheduler.scatter_magics_join, client=client.id)


def _unregister_worker_plugin(client, name: str) -> None:
    try:
        client.unregister_worker_plugin(name)
    except Exception:  # a worker that never set it up answers with an error: still gone
        logger.debug("unregistering %s reported errors", name, exc_info=True)


def leave(client) -> bool:
    """``client`` no longer uses our plugins; True if it was the last and they are gone.

    Blocking; not on the client's loop thread. A scheduler that is gone or does not
    answer is logged, not raised: nothing of ours can be left on it then."""
    try:
        return bool(client.sync(client.scheduler.scatter_magics_leave, client=client.id,
                                callback_timeout=LEAVE_TIMEOUT))
    except Exception as exc:
        logger.info("could not tell the scheduler this client leaves: %r", exc)
        return False
