"""``%scatter``, ``%gather`` and ``%cluster``: the cluster from a notebook cell.

::

    %load_ext scatter_magics
    %config ScatterMagics.n_workers = 2     # optional: size of the cluster the magics start
    %scatter df --broadcast                 # starts the cluster, binds `client`, shows df's future
    res = [client.submit(len, df) for _ in range(4)]
    %gather res                             # -> [n, n, n, n]
    %gather df --into                       # rebinds df to the value held by the workers
    %cluster                                # workers, threads, memory, what each holds
    %cluster stop

The magics and your code share one client: the magics use
``scatter_magics.get_client()`` (the most recently created open ``Client``), and when
there is none, they start an embedded cluster sized by the ``ScatterMagics`` config and
bind its client to ``client`` in the namespace (unless that name holds something else).
"""

from __future__ import annotations

import functools
import keyword

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Any, Float, Integer, Unicode, Union

from .. import task_output
from ..backend import Backend, backend_for, future_types
from ..errors import Interrupted, NoWorkersError, SerializationError, UnknownWorkerError
from ..progress_callback import counter, reports_progress
from ..structure import find_futures
from ..tokenize import reporting
from .arguments import (
    SplitOption,
    _count,
    _memory_limit,
    _name,
    _piece_size,
    _seconds,
    _worker,
    check_workers,
    is_dotted_name,
    parse_line,
    parse_scatter_line,
)
from .display import ClusterSummary, ScatterResult, install_formatters, remove_formatters
from .failures import cluster_failure, gather_failure, scatter_failure
from .interrupted import gather_interrupted, scatter_interrupted
from .names import UNDEFINED, RememberedNames
from .namespace import bind
from .progress_bar import (
    DELAY,
    NoProgress,
    ProgressBar,
    estimate_nbytes,
    gather_bar,
    known_small,
    scatter_bar,
    view_for,
)
from .published import check_publishable, gather_target, publish
from .resend import SourceOffers
from .session import ClusterSession, check_cluster_options
from .splitting import cuts, joined, key_values, per_thread

# ------------------------------------------------------------ the magics ---

@magics_class
class ScatterMagics(Magics):
    """The ``%scatter``/``%gather``/``%cluster`` magics and the cluster they started.

    Configurable with ``%config ScatterMagics.n_workers = 4`` or an IPython profile.
    """

    n_workers = Integer(None, allow_none=True, min=1, help=(
        "Workers of the cluster the magics start (default: one per CPU core).")).tag(config=True)
    threads_per_worker = Integer(1, min=1, help="Threads per worker.").tag(config=True)
    memory_limit = Union([Unicode(), Integer()], default_value="auto", help=(
        "Memory per worker: 'auto' (the machine's memory shared by the workers), a number "
        "of bytes, or text like '2GiB'.")).tag(config=True)
    dask_security = Any(None, allow_none=True, help=(
        "A distributed.Security for %cluster connect to Dask schedulers (TLS); the "
        "--tls-* options of %cluster connect take precedence.")).tag(config=True)
    timeout = Float(None, allow_none=True, help=(
        "Default --timeout in seconds for %scatter and %gather. None: %gather waits as long "
        "as it takes (Ctrl-C stops it), %scatter uses the Client's timeout.")).tag(config=True)
    progress_delay = Float(DELAY, min=0, help=(
        "Seconds a %scatter or %gather runs before it shows a progress bar (bytes done, "
        "rate, time left): a widget in a kernel, a line on stderr in a terminal.")).tag(config=True)

    def __init__(self, shell):
        super().__init__(shell=shell)
        # Plain attributes for what every %scatter/%gather reads: a trait's get (and
        # `shell`, `timeout` are traits) costs ~1 us a read, a dozen reads a pair.
        self._shell = shell
        self._default_timeout, self._progress_delay = self.timeout, self.progress_delay
        self.observe(lambda change: setattr(self, "_default_timeout", change["new"]),
                     names="timeout")
        self.observe(lambda change: setattr(self, "_progress_delay", change["new"]),
                     names="progress_delay")
        if self not in shell.configurables:  # Magics.__init__ already adds it in IPython >= 8
            shell.configurables.append(self)
        self.names = RememberedNames()  # what %scatter scattered, by variable name
        self.session = ClusterSession(shell, self, self.names)  # the magics' own cluster
        self.sources = SourceOffers(shell)  # where a lost value can be read again
        self._make_view = functools.partial(view_for, shell)  # a bar's, if it shows

    # -------------------------------------------------------------- %scatter ---
    @no_var_expand
    @magic_arguments()
    @argument("names", nargs="*", metavar="NAME_OR_EXPR", help=(
        "Variable names (dotted names too) or Python expressions without spaces, "
        "evaluated in the user namespace."))
    @argument("-b", "--broadcast", action="store_true",
              help="Put a copy on every (allowed) worker.")
    @argument("-w", "--workers", nargs="+", type=_worker, metavar="W", help=(
        "Only these workers: addresses (tcp://host:port), host:port, or names (worker-0). "
        "Put it after the names, or end the list with --."))
    @argument("--direct", dest="direct", action="store_true", default=None,
              help="Send the data straight to the workers.")
    @argument("--no-direct", dest="direct", action="store_false", default=None,
              help="Send the data through the scheduler.")
    @argument("--no-hash", dest="hash", action="store_false",
              help="Random keys instead of keys from the content.")
    @argument("-t", "--timeout", type=_seconds, metavar="SECONDS",
              help="Give up (TimeoutError) after this many seconds.")
    @argument("-s", "--split", action=SplitOption, nargs="?", default=False, metavar="N", help=(
        "Cut an array, DataFrame, Series (or anything with a length that slices) along its "
        "first axis into one piece per worker thread, or N pieces; one future each. A list, "
        "tuple, set or dict: one future per item (with N: N pieces of a list or tuple)."))
    @argument("--split-size", type=_piece_size, metavar="SIZE", help=(
        "Cut into pieces of about SIZE bytes (e.g. 64MiB) instead."))
    @argument("-o", "--as", dest="as_name", type=_name, metavar="NAME",
              help="Also bind the result to NAME.")
    @argument("-p", "--publish", action="store_true", help=(
        "Also publish each as a dataset named after it: it outlives this kernel."))
    @line_magic
    def scatter(self, line):
        """Move variables into the workers' memory; returns their Future(s).

        One argument gives its Future (--split: a list of Futures, one per piece; of a
        list, tuple, set or dict, the same container of Futures); several give a dict
        ``{name: future(s)}``. The magic remembers the latest future(s) per name, so
        ``%gather NAME`` brings them back (pieces joined); hashed keys start with the
        name (``df-<token>``, ``rows[3]-<token>``, ``df[0/4]-<token>``). The first
        %scatter starts an embedded cluster if no Client runs, bound to ``client``.

        Examples::

            %scatter df --broadcast
            %scatter a b c
            parts = %scatter df --split           # one piece per worker thread
            %scatter rows --split -w worker-0 worker-1
            fut = %scatter model --no-hash --timeout 10
        """
        args = parse_scatter_line(self.scatter, line)
        running = self.session.running_backend()
        if args.workers:  # before anything is hashed or started
            check_workers(running, args.workers)
        check_publishable(args)
        what = f"%scatter {' '.join(args.names)}"
        try:
            values = {text: self._evaluate(text) for text in args.names}
            args.cuts = cuts(values, args)  # bad input fails here, before anything starts
            with self._scatter_progress(what, running, values, args.hash) as progress:
                futures, rebuilders, made = self._scatter_values(running, values, args,
                                                                 progress)
        except KeyboardInterrupt:
            raise Interrupted(scatter_interrupted(what)) from None
        results = {text: rebuild(futures) for text, rebuild in rebuilders.items()}
        self.names.remember(results, made)
        self.sources.offer(running or self.session.running_backend(), results, args)
        publish(self.session, results, made, args)
        result = results[args.names[0]] if len(results) == 1 else ScatterResult(results)
        if args.as_name:
            bind(self.shell, args.as_name, result)
        return result

    def _scatter_values(self, running: Backend | None, values: dict, args,
                        progress) -> tuple[dict, dict, dict]:
        """Key each value (hashing, reported), then scatter them all."""
        if None in args.cuts.values():  # one piece per worker thread: the threads first
            running = running or self._start(progress)
            args.cuts = per_thread(args.cuts, values, running.scheduler_info(), args.workers)
        if args.hash and progress.reports and not known_small(values.values()):
            # (small values hash in microseconds: nothing to report, ~10 calls saved)
            hashed = counter(progress, "hash", estimate_nbytes(values.values()))
            with reporting(hashed):
                items, rebuilders, made = key_values(values, args)
        else:
            items, rebuilders, made = key_values(values, args)
        self.names.let_go(values, items.keys())
        running = running or self._start(progress)  # only now: a mistake above starts none
        return self._scatter_items(running, items, args, progress), rebuilders, made

    def _start(self, progress) -> Backend:
        progress("start", 0, None)
        running = self.session.backend(start=True)
        progress.restart_clock()
        return running

    def _scatter_items(self, backend: Backend, items: dict, args, progress) -> dict:
        timeout = args.timeout or self._default_timeout
        what = ", ".join(args.names)
        try:
            return backend.scatter(items, workers=args.workers, broadcast=args.broadcast,
                                   direct=args.direct, hash=args.hash, timeout=timeout,
                                   **_reporting(backend.scatter, progress))
        except UnknownWorkerError as exc:
            raise UsageError(f"{exc}. Pass -w a worker name, address or host:port.") from exc
        except NoWorkersError as exc:
            raise UsageError(f"{exc}; start a cluster with workers: %cluster start -n 2") from exc
        except SerializationError as exc:
            raise UsageError(f"cannot scatter {what}: {exc}") from exc
        except Exception as exc:  # an expected failure is said in a sentence or two
            self.session.check_not_gone()  # the cluster went away meanwhile: one line
            said = scatter_failure(exc, args.names, timeout=timeout or backend.default_timeout)
            if said is None:
                raise
            raise said from exc

    # -------------------------------------------------------------- %gather ---
    @no_var_expand
    @magic_arguments()
    @argument("names", nargs="+", metavar="NAME_OR_EXPR", help=(
        "A name %scatter remembered, or any variable or expression holding futures "
        "(nested lists, tuples, sets and dicts too)."))
    @argument("--errors", choices=["raise", "skip"], default="raise", help=(
        "raise: re-raise a failed task's exception; skip: leave failed futures out."))
    @argument("-t", "--timeout", type=_seconds, metavar="SECONDS",
              help="Give up (TimeoutError) after this many seconds.")
    @argument("-i", "--into", action="store_true", help=(
        "Rebind each name to its gathered value (returns nothing, like an assignment)."))
    @argument("-p", "--pieces", action="store_true", help=(
        "For a value %scatter --split cut into pieces: the list of pieces, not joined."))
    @line_magic
    def gather(self, line):
        """Bring the values of futures back; returns them in the same shape.

        Each argument is evaluated: if its value holds futures, those are gathered;
        otherwise it must be a name %scatter remembered (``%gather df`` after
        ``%scatter df``). One argument gives its value, several a dict ``{name: value}``.
        The pieces of a value ``%scatter --split`` cut are joined (``--pieces``: not).

        Examples::

            out = %gather res
            %gather df --into
            %gather a b --errors skip --timeout 30
            %gather df --pieces
        """
        args = parse_line(self.gather, line)
        self.session.check_not_gone()
        if args.into:
            for text in args.names:
                if not is_dotted_name(text):
                    raise UsageError(f"--into rebinds names; {text!r} is an expression")
        targets = {text: self._futures_of(text) for text in args.names}
        values = self._gather_targets(targets, args)
        for text, target in targets.items():
            cut = None if args.pieces else self.names.cut_of(target)
            if cut is not None:
                values[text] = joined(text, cut, values[text])
        if args.into:
            for text, value in values.items():
                bind(self.shell, text, value)
            return None
        return values.get(args.names[0]) if len(args.names) == 1 else values

    def _futures_of(self, text: str):
        """What ``%gather text`` gathers: the value if it holds futures, else the memory."""
        try:
            value = self._value_of(text)
        except (NameError, AttributeError):
            if not is_dotted_name(text):
                raise
            value = UNDEFINED
        return gather_target(self.names, text, value, self.session.running_backend)

    def _gather_targets(self, targets: dict, args) -> dict:
        futures = find_futures(list(targets.values()), future_types())
        if not futures:  # only empty containers (%scatter --split of an empty list)
            return dict(targets)
        client = futures[0].client
        if len(futures) > 1 and any(f.client is not client for f in futures):
            raise UsageError(f"the futures of {', '.join(targets)} belong to different clients; "
                             f"gather them one client at a time")
        timeout = args.timeout or self._default_timeout
        try:
            backend = backend_for(client)
            # One name: its value itself, so that a lone Future takes the engine's
            # shortest path (Dask's gather of one future, as a user calls it).
            [(only, value)] = targets.items() if len(targets) == 1 else [(None, targets)]
            with self._gather_progress(targets, backend) as progress:
                gathered = backend.gather(value, errors=args.errors, timeout=timeout,
                                          **_reporting(backend.gather, progress))
            return {only: gathered} if only is not None else gathered
        except KeyboardInterrupt:
            raise Interrupted(gather_interrupted(
                targets, futures, self.session.client_name(client))) from None
        except Exception as exc:  # an expected failure is said in a sentence or two
            self.session.check_not_gone()  # the cluster went away meanwhile: one line
            said = gather_failure(exc, targets, futures, timeout=timeout,
                                  labels=self.names.labels())
            if said is None or said is exc:  # exc: a task's own, shown as the task's
                raise
            raise said from exc

    # -------------------------------------------------------------- %cluster ---
    @magic_arguments()
    @argument("action", nargs="?", choices=["start", "stop", "connect"], help=(
        "start: start a cluster on this machine; connect: connect to a running scheduler "
        "(ours or Dask's); stop: end the cluster the magics started, or disconnect from "
        "the one they connected to. Without it: show the cluster."))
    @argument("address", nargs="?", metavar="ADDRESS", help=(
        "connect: a cluster id (the Jupyter sidebar's), tcp://host:port, tls://host:port "
        "or host:port."))
    @argument("-n", "--n-workers", type=_count, metavar="N",
              help="Workers to start (default: ScatterMagics.n_workers).")
    @argument("--threads", type=_count, metavar="N",
              help="Threads per worker (default: ScatterMagics.threads_per_worker).")
    @argument("--memory-limit", type=_memory_limit, metavar="BYTES",
              help="Memory per worker, e.g. 2GiB (default: ScatterMagics.memory_limit).")
    @argument("--dask", action="store_true", help=(
        'start: a Dask LocalCluster instead of the embedded engine (pip install '
        '"scatter_magics[dask]").'))
    @argument("--scheduler-file", metavar="PATH",
              help="connect: the scheduler file a Dask scheduler wrote.")
    @argument("--tls-ca-file", metavar="PATH", help="connect (Dask TLS): CA certificate.")
    @argument("--tls-client-cert", metavar="PATH", help="connect (Dask TLS): client certificate.")
    @argument("--tls-client-key", metavar="PATH", help="connect (Dask TLS): client key.")
    @argument("--secret", metavar="SECRET", help=(
        "connect: the secret of a scheduler of our engine (default: $SCATTER_MAGICS_SECRET)."))
    @argument("--tasks", action="store_true", help="show: also the last minute's task stream.")
    @line_magic
    def cluster(self, line):
        """Show, start, connect to or stop the cluster.

        ``%cluster`` shows the workers, their memory over time, the keys each holds (and
        with ``--tasks`` the task stream: what each worker thread ran in the last minute).
        ``%cluster start`` starts an embedded cluster (``--dask``: a Dask LocalCluster),
        binds its client to ``client`` and makes it the one the magics (and
        ``get_client()``) use. ``%cluster connect`` does the same for a running
        scheduler, whichever engine answers at the address. ``%cluster stop`` closes
        the client the magics started, ending its workers, or disconnects from a
        cluster they connected to, which keeps running.

        Examples::

            %cluster --tasks
            %cluster start -n 4 --threads 2 --memory-limit 2GiB
            %cluster start --dask -n 2
            %cluster connect tcp://10.0.0.5:8786
            %cluster connect --scheduler-file ~/scheduler.json
            %cluster connect tls://10.0.0.5:8786 --tls-ca-file ca.pem --tls-client-cert c.pem --tls-client-key k.pem
            %cluster stop
        """
        args = parse_line(self.cluster, line)
        check_cluster_options(args)
        if args.action == "start":
            return self.session.start(args)
        if args.action == "connect":
            return self.session.connect(args)
        try:
            if args.action == "stop":
                return self.session.stop()
            return ClusterSummary.snapshot(self.session.backend(start=False),
                                           self.names.labels(), tasks=args.tasks)
        except Exception as exc:  # the cluster is gone: said in a sentence or two
            self.session.check_not_gone()  # the one line, if it went away
            said = cluster_failure(exc, f"%cluster {args.action or ''}".rstrip())
            if said is None:
                raise
            raise said from exc

    # -------------------------------------------------------------- the client ---
    def _scatter_progress(self, what: str, running: Backend | None, values: dict,
                          hash: bool) -> ProgressBar | NoProgress:
        return scatter_bar(what, running, values, hash, make_view=self._make_view,
                           delay=self._progress_delay)

    def _gather_progress(self, targets: dict, backend: Backend) -> ProgressBar | NoProgress:
        return gather_bar(f"%gather {' '.join(targets)}", backend,
                          make_view=self._make_view, delay=self._progress_delay)

    # -------------------------------------------------------------- namespace ---
    def _value_of(self, text: str):
        """``shell.ev(text)``; a plain name is looked up without compiling anything
        (what ``eval`` does first for a name), ~5 µs less per magic."""
        namespace = self._shell.user_ns  # (not cached: an embedded shell replaces it)
        if text in namespace and text.isidentifier() and not keyword.iskeyword(text):
            return namespace[text]
        return self.shell.ev(text)

    def _evaluate(self, text: str):
        try:
            return self._value_of(text)
        except (NameError, AttributeError) as exc:
            if not is_dotted_name(text):
                raise
            raise UsageError(f"cannot scatter {text!r}: {exc}") from exc
        except SyntaxError as exc:
            raise UsageError(f"{text!r} is neither a variable name nor a Python expression "
                             f"({exc.msg}); write expressions without spaces") from exc


def _reporting(method, progress: ProgressBar | NoProgress) -> dict:
    """``progress=`` for an adapter method that reports; else the bar goes quiet."""
    if progress.reports and reports_progress(method):
        return {"progress": progress}
    progress.quiet()  # a bar with nothing to say would only stand still (NoProgress: no-op)
    return {}


# ------------------------------------------------------------ the extension ---

def load_ipython_extension(ipython) -> None:
    """``%load_ext scatter_magics``."""
    magics = ScatterMagics(ipython)
    ipython.register_magics(magics)
    task_output.ROUTER.watch(ipython)  # tasks' output goes to the cell that runs
    install_formatters(ipython, magics.names.labels)
    # In a kernel, the live widget takes precedence over the text/HTML summary.
    from .widget import install_display

    install_display(ipython, magics.names.labels)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext scatter_magics``: close the magics' cluster, remove the magics."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(ScatterMagics.__name__, None)
    if magics is None:
        return
    magics.session.close()
    magics.names.forget_all()  # what only the magics held: released now, not at a GC pass
    for name, method in list(manager.magics["line"].items()):
        if getattr(method, "__self__", None) is magics:
            del manager.magics["line"][name]
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    remove_formatters(ipython)
    task_output.ROUTER.unwatch(ipython)
    from .widget import uninstall_display
    uninstall_display(ipython)
