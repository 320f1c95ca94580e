"""A worker process: holds data, runs tasks in a thread pool, serves data to peers.

Started by :class:`~scatter_magics.engine.cluster.local.LocalCluster` as
``python -m scatter_magics.engine.worker --name NAME ...``, before the scheduler is listening.
The cluster secret and then the scheduler's address arrive as the first two lines of
standard input (the secret is never on the command line, where ``ps`` shows it). It
dies with the process that started it (``--owner-pid``), even one killed with SIGKILL
(``lifeline.py``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import threading
import time

from ...errors import CommClosedError, portable
from ...versions import get_versions
from ..shm.cleanup import unlink_segments
from ..shm.limits import result_refusal
from ..wire.comm import Channel, Server, connect
from ..wire.loop import new_event_loop
from ..wire.peers import fetch_from_holders
from ..wire.serialize import Serialized, Unpickled
from . import task_context
from .command_line import worker_options
from .held_data import SEGMENTS, HeldData, StoredValue, not_aliasing_shared_memory
from .lifeline import die_with_parent, exit_when_owner_dies, owner_gone, read_line
from .run_function import run_function
from .runner import DEFAULT_PRIORITY, TaskRunner, not_run
from .task_call import WITHDRAWN, execute, task_traceback
from .task_output import TaskOutput
from .task_start import StartClock, StartWatch
from .tickets import TaskTicket, TicketBook
from .uploads import Uploads

logger = logging.getLogger("scatter_magics.engine.worker")

HEARTBEAT_INTERVAL = 0.5  # s between heartbeats (with memory) to the scheduler
CLIENT_TIMEOUT = 30.0  # s a task's get_client() may take to connect the worker's client
# How long a get-data waits for keys this worker does not hold yet. The scheduler does
# not wait for a worker to acknowledge small data before it tells others where it is,
# so a peer's (or a client's) request on another connection can arrive first.
ARRIVAL_WAIT = 5.0  # seconds


CURRENT: "Worker | None" = None  # the worker this process runs, for tasks that introspect


class Worker:
    """A worker: its data, its task threads, its connections to the scheduler and peers.

    ``resources`` (``{"GPU": 2}``) are what it declares for tasks that ask for some;
    ``local_directory`` is where uploaded files go (on ``sys.path``; made if None).
    ``in_process``: a thread of the user's process (``Client(processes=False)``), reached
    at an ``inproc://`` address, holding values as they are (``serialize.Unpickled``);
    ``client_address`` is then the scheduler's address for clients (its TCP one).
    """

    def __init__(self, scheduler_address: str, secret: str, name: str, nthreads: int,
                 memory_limit: int, replaces: str | None = None, resources: dict | None = None,
                 local_directory: str | None = None, in_process: bool = False,
                 client_address: str | None = None):
        self.scheduler_address = scheduler_address
        self.in_process = in_process
        self.client_address = client_address or scheduler_address
        self.replaces = replaces
        self.secret = secret
        self.name = name
        self.nthreads = nthreads
        self.memory_limit = memory_limit
        self.resources = dict(resources or {})
        self.uploads = Uploads(local_directory, name)
        self.data = HeldData()
        self.runner: TaskRunner | None = None  # the task threads, made on the loop (start)
        self.server = Server(secret, self._handlers())
        self.scheduler: Channel | None = None
        self.peers: dict[str, Channel] = {}
        self.closed = asyncio.Event()
        self.close_requested = False  # the scheduler said "close": the owner cleans up
        self._tasks: set[asyncio.Task] = set()
        self._arrivals: asyncio.Future | None = None  # set by the next put-data
        self._client = None  # made by the first task that asks for it (get_client)
        self._owns_client = False  # it made it (not the user's, in the user's process)
        self._client_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tickets = TicketBook()  # tasks sent here and not yet done
        self.output = TaskOutput(name, self._report)  # what tasks print, for the client

    def _handlers(self) -> dict:
        return {"put-data": self._put_data, "get-data": self._get_data,
                "delete-keys": self._delete_keys, "fetch": self._fetch, "acquire": self._acquire,
                "forget-segments": lambda ch, msg: SEGMENTS.forget(msg["names"]),
                "compute": self._compute, "steal": self._steal, "close": self._on_close_request,
                "run": lambda ch, msg: run_function(self, msg),
                "upload-file": lambda ch, msg: self.uploads.save(
                    msg["filename"], msg["data"], msg["load"]),
                "versions": lambda ch, msg: get_versions(msg.get("packages") or ())}

    def _on_close_request(self, channel, msg) -> None:
        self.close_requested = True
        self.closed.set()

    @property
    def address(self) -> str:
        return self.server.inproc_address or self.server.address

    @property
    def local_directory(self) -> str:
        return self.uploads.directory

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if not self.in_process:  # (in the user's process, tasks print where it prints)
            self.output.start(self.loop)
        self.start_clock = StartClock(self.loop)  # when a task counts as running
        self.runner = TaskRunner(self.nthreads, self._task_done, self.resources,
                                 on_thread_start=lambda: task_context.serve(self))
        if self.in_process:
            address = self.server.listen_inproc()
        else:
            address = await self.server.listen("127.0.0.1", 0)
        self.scheduler = await connect(self.scheduler_address, self.secret, self._handlers())
        self.scheduler.on_close.append(lambda ch: self.closed.set())
        await self.scheduler.request({
            "op": "register-worker", "address": address, "name": self.name,
            "nthreads": self.nthreads, "memory_limit": self.memory_limit, "pid": os.getpid(),
            "replaces": self.replaces, "resources": self.resources})
        self._spawn(self._report_metrics())

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    keep_running = _spawn  # (a coroutine Client.run(wait=False) left running, say)

    def client(self, timeout: float | None = None):
        """The worker's client, for tasks (``get_client()``): connected on first use, and
        shared by every task of this worker. A client of this process already connected
        to the same scheduler is used as it is (workers in the user's process)."""
        with self._client_lock:
            if self._client is None or self._client.status != "running":
                from ...backend import backend_class  # (rarely used: kept off start-up)
                from ...current_client import find_client

                self._client = find_client(self.client_address)
                self._owns_client = self._client is None
                if self._owns_client:
                    self._client = backend_class("embedded").connect(
                        self.client_address, secret=self.secret,
                        timeout=timeout or CLIENT_TIMEOUT).client
            return self._client

    def task_seceded(self, key) -> None:
        """A task left its thread's slot (``secede()``, on its thread): tell the scheduler,
        which then counts the worker's thread free."""
        if key is not None:
            self.loop.call_soon_threadsafe(self._report, {"op": "task-seceded", "key": key})

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.server.close()
        for channel in [self.scheduler, *self.peers.values()]:
            if channel is not None:
                channel.close()
        if self.runner is not None:
            self.runner.close()
            self.start_clock.close()
        client, self._client = self._client, None
        if client is not None and self._owns_client:  # (never the user's own client)
            await asyncio.to_thread(client.close)
        self.uploads.close()
        self.output.close()

    # ------------------------------------------------------------ data ---
    def _put_data(self, channel, msg) -> dict:
        for key, serialized in msg["data"].items():
            self.data[key] = StoredValue(serialized)
        if self._arrivals is not None:
            self._arrivals.set_result(None)
            self._arrivals = None
        return {key: self.data[key].nbytes for key in msg["data"]}

    def _get_data(self, channel, msg):
        if any(k not in self.data for k in msg["keys"]):
            return self._get_data_arriving(msg["keys"])
        return {key: self.data[key].serialized for key in msg["keys"]}

    async def _get_data_arriving(self, keys: list) -> dict:
        """``_get_data`` once keys still on their way (see ARRIVAL_WAIT) have arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ARRIVAL_WAIT
        while (missing := [k for k in keys if k not in self.data]) and loop.time() < deadline:
            if self._arrivals is None:
                self._arrivals = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._arrivals), deadline - loop.time())
            except asyncio.TimeoutError:
                break
        if missing:
            raise KeyError(f"worker {self.name} does not hold {missing}")
        return {key: self.data[key].serialized for key in keys}

    def _delete_keys(self, channel, msg) -> None:
        for key in msg["keys"]:
            self.data.pop(key, None)

    async def _fetch(self, channel, msg) -> dict:
        """Copy keys from the peers listed in ``who_has`` into this worker."""
        await self._gather_from_peers(msg["who_has"])
        return {key: self.data[key].nbytes for key in msg["who_has"]}

    def _acquire(self, channel, msg) -> None:
        """Fetch standing-broadcast keys from peers, then say what arrived (one-way)."""
        self._spawn(self._acquire_and_report(msg["who_has"]))

    async def _acquire_and_report(self, who_has: dict) -> None:
        try:
            fetched = await self._gather_from_peers(who_has)
        except (CommClosedError, KeyError) as exc:  # its holders died meanwhile
            logger.debug("could not fetch %s: %s", list(who_has), exc)
            self._report({"op": "acquired", "fetched": {}, "failed": list(who_has)})
            return
        held = {k: self.data[k].nbytes for k in who_has if k in self.data}
        self._report({"op": "acquired", "fetched": {**held, **fetched},
                      "failed": [k for k in who_has if k not in held]})

    async def _gather_from_peers(self, who_has: dict) -> dict:
        """Fetch the keys this worker lacks; return ``{key: nbytes}`` of what it fetched.

        A peer that fails is skipped on the next try, so another replica answers.
        """
        missing = [key for key in who_has if key not in self.data]
        if not missing:
            return {}
        failed: set[str] = set()

        async def locate(keys):
            live = {key: [h for h in who_has[key] if h not in failed] for key in keys}
            for key, holders in live.items():
                if not holders:
                    raise KeyError(f"no live worker holds {key!r} (asked {who_has[key]})")
            return live

        async def request(address, msg):
            try:
                return await self._peer_request(address, msg)
            except CommClosedError:
                failed.add(address)
                raise

        fetched = {}
        for key, serialized in (await fetch_from_holders(missing, locate, request)).items():
            self.data[key] = StoredValue(serialized)
            fetched[key] = self.data[key].nbytes
        return fetched

    async def _peer_request(self, address: str, msg: dict):
        channel = self.peers.get(address)
        if channel is None or channel.closed:
            channel = self.peers[address] = await connect(address, self.secret)
        return await channel.request(msg)

    # ------------------------------------------------------------ tasks ---
    def _compute(self, channel, msg) -> None:
        # The scheduler leaves out an empty who_has, and sends a task without buffers as bytes.
        key, task, who_has = msg["key"], msg["task"], msg.get("who_has") or {}
        task = Serialized(task, ()) if type(task) is bytes else task
        options = (msg.get("priority") or DEFAULT_PRIORITY, msg.get("resources"))
        ticket = self.tickets.issue(key)
        if not who_has or all(dep in self.data for dep in who_has):  # the usual: no fetch
            ticket.queue()
            self._start_task(key, task, who_has, ticket, options)
        else:
            self._spawn(self._fetch_and_start(key, task, who_has, ticket, options))

    def _steal(self, channel, msg) -> None:
        """The scheduler wants a task back (work stealing): given if no thread has it."""
        answer = self.tickets.steal(msg["key"])
        if answer is not None:
            self._report(answer)

    async def _fetch_and_start(self, key, task: Serialized, who_has: dict,
                               ticket: TaskTicket, options: tuple) -> None:
        began, fetch_error = time.time(), None
        try:
            ticket.fetched = await self._gather_from_peers(who_has)
        except Exception as exc:
            fetch_error = exc
        if not ticket.queue():  # withdrawn while its inputs were on their way (a failed
            self._report(self.tickets.give_back(key, ticket))  # fetch is the thief's to retry)
        elif fetch_error is not None:
            self.tickets.forget(key, ticket)
            self._task_erred(key, fetch_error, ticket.fetched, not_run(began))
        else:
            # The fetch of the task's inputs from peers: a transfer in the task stream.
            transfers = [{"start": began, "stop": time.time(), "from": None,
                          "nbytes": sum(ticket.fetched.values())}] if ticket.fetched else []
            self._start_task(key, task, who_has, ticket, options, transfers)

    def _start_task(self, key, task: Serialized, who_has: dict, ticket: TaskTicket,
                    options: tuple, transfers: list | None = None) -> None:
        """Hand the task to the runner's threads; ``_task_done`` takes its result.

        ``timing`` goes with it, for the task stream (``task_stream.py``): the transfers
        before it, the function's name (set on the thread) and, from the runner, the
        thread and the times it ran."""
        timing = {"transfers": transfers} if transfers else {}  # (none: left out)
        try:
            inputs = {dep: self.data[dep].value for dep in who_has} if who_has else {}
        except Exception as exc:  # an input that does not deserialize here
            self.tickets.forget(key, ticket)
            self._task_erred(key, exc, ticket.fetched, {**not_run(time.time()), **timing})
            return
        watch = self.start_clock.watch(StartWatch(self.loop, self._report, key))
        running = (key, watch, ticket, timing)
        priority, resources = options
        self.runner.run(running, functools.partial(execute, key, task, inputs, ticket,
                                                   watch.started, timing), priority, resources)

    def _task_done(self, running: tuple, ok: bool, result, ran) -> None:
        key, watch, ticket, timing = running
        watch.cancel()
        if ok and result is WITHDRAWN:
            return  # given back before a thread reached it (_steal answered)
        self.tickets.forget(key, ticket)
        timing.update(thread=ran.thread, start=ran.start, stop=ran.stop)
        self.output.send(key)  # before the result: the cell waiting shows it
        if not ok:
            self._task_erred(key, result, ticket.fetched, timing)
            return
        value = result  # (its duration goes in timing: stop - start)
        if self.in_process:  # held as it is: whoever reads it gets the object itself
            stored = StoredValue(Unpickled(value), value, has_value=True)
        else:
            stored = StoredValue(value=not_aliasing_shared_memory(value), has_value=True)
        held = self.data.nbytes - (self.data[key].nbytes if key in self.data else 0)
        if self.memory_limit and held + stored.nbytes > self.memory_limit:
            exc = result_refusal(key, stored.nbytes, self.name, self.server.address, held,
                                 self.memory_limit)
            self._report({"op": "task-erred", "key": key, "exception": exc, "traceback": "",
                          "fetched": ticket.fetched, "timing": timing})
            return
        self.data[key] = stored
        report = {"op": "task-finished", "key": key, "nbytes": stored.nbytes,
                  "type": stored.type, "timing": timing}  # (its duration: stop - start)
        if ticket.fetched:
            report["fetched"] = ticket.fetched
        self._report(report)

    def _task_erred(self, key, exc: BaseException, fetched: dict, timing: dict) -> None:
        self._report({"op": "task-erred", "key": key,
                      "exception": exc if self.in_process else portable(exc),
                      "traceback": task_traceback(exc), "fetched": fetched, "timing": timing})

    def _report(self, msg: dict) -> None:
        try:
            # With the others of this turn of the loop: the reports of a burst of short
            # tasks travel as one message (comm.Channel.send_soon).
            self.scheduler.send_soon(msg)
        except CommClosedError:
            self.closed.set()

    async def _report_metrics(self) -> None:
        while True:
            self._report({"op": "metrics", "memory": resident_memory()})
            await asyncio.sleep(HEARTBEAT_INTERVAL)


def resident_memory() -> int:
    """This process's resident set size in bytes (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def main(argv=None, parent_pid: int | None = None) -> None:
    """Run a worker until it is closed or its owner dies.

    ``parent_pid``: the process whose death is ours, when it is not the owner (a worker
    forked by the fork server, ``template.py``, has it for parent).
    """
    args = worker_options(argv)
    # Our own log lines, marked with the worker's name. Not the root logger's: a task's
    # records then reach the last-resort handler, which writes to sys.stderr as it is
    # when they come (the task's output, task_capture.py), as they would in a notebook.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"[{args.name}] %(levelname)s %(message)s"))
    package_logger = logging.getLogger("scatter_magics")
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the notebook, not us
    parent_pid = args.owner_pid if parent_pid is None else parent_pid
    die_with_parent(args.shm_prefix, args.owner_pid, parent_pid)
    secret = read_line("cluster secret")
    scheduler = args.scheduler or read_line("scheduler address")
    threading.Thread(target=exit_when_owner_dies,
                     args=(args.shm_prefix, args.owner_pid, parent_pid),
                     name="owner-watch", daemon=True).start()

    async def run() -> bool:
        global CURRENT
        worker = CURRENT = Worker(scheduler, secret, args.name, args.nthreads,
                                  args.memory_limit, args.replaces, json.loads(args.resources),
                                  args.local_directory)
        task_context.set_process_worker(worker)
        await worker.start()
        await worker.closed.wait()
        await worker.close()
        return worker.close_requested

    closed_by_owner = False
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            closed_by_owner = runner.run(run())
    finally:
        # A worker ends with its cluster: closed (the owner unlinks the segments) or
        # killed. When the owner is killed, our connection to it may close before stdin
        # does, and then this, not exit_when_owner_dies, is the exit that must clean
        # up; but a worker that merely lost its connection must leave the segments to
        # the owner and the other workers.
        if args.shm_prefix and not closed_by_owner and owner_gone(args.owner_pid, parent_pid):
            unlink_segments(args.shm_prefix)

