"""REST handlers under ``<base_url>/scatter-magics/api/`` (the contract: docs/internals.md).

- ``GET clusters`` → every live cluster (``id``, ``name``, ``kernel_id``, ``backend``,
  ``scheduler_address``, ``workers``, ``keys``); answers ``304`` to a matching
  ``If-None-Match``, so a sidebar polling once a second costs nothing when nothing changed.
- ``GET clusters/<id>?offset=&limit=&status=&name=&sort=&order=`` → the same object,
  ``keys.items`` one page of keys (filtered, sorted: ``key_pages``), ``history`` a sample a second for the last five minutes (the listing's: every fifth).
- ``GET clusters/<id>/tasks?since=`` → ``{"index", "now", "tasks"}``: what the workers ran
  in the last minute, after cursor ``since`` (``scatter_magics.task_stream``).
- ``DELETE clusters/<id>`` → stops the cluster and its workers (its owner closes it).
- ``POST clusters`` ``{"n_workers", "threads_per_worker", "memory_limit", "name"}`` → starts a
  cluster owned by the server; ``201`` with it.
- ``clusters/ws`` (websocket) → the listing of ``GET clusters`` as a text message now, and
  again each time it changes (``watch.ListingWatch``), so an open sidebar sees a change
  within a fraction of a second and costs nothing while nothing changes.

Every verb is ``@tornado.web.authenticated`` (the websocket: ``ws_authenticated``, 403). Known errors become 4xx with a message;
anything else is logged with its traceback by ``APIHandler`` and answered 500.
"""

from __future__ import annotations

import json

import tornado.web
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..errors import ClusterUnreachableError, NotOwnedError, UnknownClusterError
from ..key_pages import SORTS
from ..sizes import parse_bytes
from .clusters import ClusterDirectory
from .watch import ListingWatch

API = "scatter-magics/api"
ID_PATTERN = r"(?P<cluster_id>[\w.-]+)"


async def notebook_paths(session_manager) -> dict[str, str]:
    """``{kernel_id: notebook path}`` for the kernels of this server's sessions."""
    sessions = await session_manager.list_sessions()
    return {s["kernel"]["id"]: s["path"] for s in sessions if s.get("kernel")}


class _ClusterHandler(APIHandler):
    @property
    def directory(self) -> ClusterDirectory:
        return self.settings["scatter_magics_directory"]

    async def notebook_paths(self) -> dict[str, str]:
        return await notebook_paths(self.session_manager)

    def int_argument(self, name: str, default: int) -> int:
        text = self.get_argument(name, None)
        if text is None:
            return default
        try:
            return int(text)
        except ValueError:
            raise tornado.web.HTTPError(400, f"{name} must be an integer, got {text!r}") from None

    def write_json(self, value, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value))


class ClustersHandler(_ClusterHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.write_json(await self.directory.list(await self.notebook_paths()))

    @tornado.web.authenticated
    async def post(self) -> None:
        options = self._start_options()
        cluster_id = await self.directory.start(**options)
        self.write_json(await self.directory.get(cluster_id, await self.notebook_paths(),
                                                 limit=0), status=201)

    def _start_options(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise tornado.web.HTTPError(400, f"the body must be JSON: {exc}") from None
        if not isinstance(body, dict):
            raise tornado.web.HTTPError(400, "the body must be a JSON object")
        unknown = set(body) - {"n_workers", "threads_per_worker", "memory_limit", "name"}
        if unknown:
            raise tornado.web.HTTPError(400, f"unknown option(s): {', '.join(sorted(unknown))}")
        options = {"n_workers": body.get("n_workers", 2),
                   "threads_per_worker": body.get("threads_per_worker", 1),
                   "memory_limit": body.get("memory_limit", "auto"), "name": body.get("name")}
        for key in ("n_workers", "threads_per_worker"):
            value = options[key]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 256:
                raise tornado.web.HTTPError(400, f"{key} must be an integer from 1 to 256, "
                                                 f"got {value!r}")
        if options["name"] is not None and not isinstance(options["name"], str):
            raise tornado.web.HTTPError(400, "name must be a string")
        limit = options["memory_limit"]
        try:
            if limit != "auto" and limit is not None:
                parse_bytes(limit)
        except ValueError:
            raise tornado.web.HTTPError(400, f"memory_limit {limit!r} is not a size: use "
                                             "\"auto\", bytes, or e.g. '2GiB'") from None
        return options


class ClusterHandler(_ClusterHandler):
    @tornado.web.authenticated
    async def get(self, cluster_id: str) -> None:
        status = self.get_argument("status", None) or None
        sort = self.get_argument("sort", None) or None
        order = self.get_argument("order", "asc")
        if sort is not None and sort not in SORTS:
            raise tornado.web.HTTPError(400, f"sort must be one of {', '.join(SORTS)}, "
                                             f"got {sort!r}")
        if order not in ("asc", "desc"):
            raise tornado.web.HTTPError(400, f"order must be asc or desc, got {order!r}")
        try:
            described = await self.directory.get(
                cluster_id, await self.notebook_paths(), offset=self.int_argument("offset", 0),
                limit=self.int_argument("limit", 100), status=status,
                name=self.get_argument("name", None) or None, sort=sort,
                descending=order == "desc")
        except UnknownClusterError as exc:
            raise tornado.web.HTTPError(404, str(exc)) from None
        self.write_json(described)

    @tornado.web.authenticated
    async def delete(self, cluster_id: str) -> None:
        try:
            stopped = await self.directory.stop(cluster_id)
        except UnknownClusterError as exc:
            raise tornado.web.HTTPError(404, str(exc)) from None
        except (ClusterUnreachableError, NotOwnedError) as exc:
            raise tornado.web.HTTPError(409, str(exc)) from None
        # 202: asked, but the owning process had not finished within STOP_WAIT.
        self.write_json({"id": cluster_id, "stopped": stopped}, status=200 if stopped else 202)


class ClusterTasksHandler(_ClusterHandler):
    @tornado.web.authenticated
    async def get(self, cluster_id: str) -> None:
        try:
            answer = await self.directory.tasks(cluster_id, self.int_argument("since", 0))
        except UnknownClusterError as exc:
            raise tornado.web.HTTPError(404, str(exc)) from None
        except ClusterUnreachableError as exc:
            raise tornado.web.HTTPError(409, str(exc)) from None
        self.write_json(answer)


class ClustersSocketHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """The listing pushed on change; the browser sends nothing (what it sends is ignored).

    Authenticated like the kernels' websocket (token or cookie; 403 without), its origin
    checked by ``WebSocketMixin`` and pinged by it, so a vanished browser is noticed."""

    @property
    def watch(self) -> ListingWatch:
        return self.settings["scatter_magics_watch"]

    @ws_authenticated
    async def get(self, *args, **kwargs):
        return await super().get(*args, **kwargs)

    def open(self, *args, **kwargs):
        super().open(*args, **kwargs)
        self.watch.join(self.send_listing)

    def send_listing(self, text: str) -> None:
        try:
            self.write_message(text)
        except WebSocketClosedError:
            self.watch.leave(self.send_listing)

    def on_message(self, message) -> None:
        pass

    def on_close(self) -> None:
        super().on_close()
        self.watch.leave(self.send_listing)


def setup_handlers(serverapp) -> None:
    web_app = serverapp.web_app
    directory = ClusterDirectory()
    web_app.settings["scatter_magics_directory"] = directory
    web_app.settings["scatter_magics_watch"] = ListingWatch(
        directory, lambda: notebook_paths(web_app.settings["session_manager"]))
    base = url_path_join(web_app.settings["base_url"], API)
    web_app.add_handlers(".*$", [
        # Before clusters/<id>, whose pattern "ws" would match too.
        (url_path_join(base, "clusters", "ws"), ClustersSocketHandler),
        (url_path_join(base, "clusters"), ClustersHandler),
        (url_path_join(base, "clusters", ID_PATTERN), ClusterHandler),
        (url_path_join(base, "clusters", ID_PATTERN, "tasks"), ClusterTasksHandler),
    ])
    serverapp.log.info("scatter_magics: cluster sidebar API at %s", base)
