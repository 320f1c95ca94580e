"""A Dask cluster's dashboard link, when it really has a dashboard.

Every Dask scheduler runs an HTTP server (health, metrics) that Dask calls ``dashboard``,
bokeh or not, and ``Client.dashboard_link`` names it either way; without bokeh its
``/status`` is a page asking to install bokeh. So, as dask-labextension's
``dashboard-check`` does, the link counts only if ``individual-plots.json`` lists plots
(measured: ``{}`` without bokeh). Asked once per client or cluster, at most
``PROBE_TIMEOUT`` s; a link made from a custom ``distributed.dashboard.link`` template
(e.g. a JupyterHub proxy path) is trusted as it is.

>>> dashboard_link(client)     # doctest: +SKIP
'http://10.0.0.5:8787/status'
"""

from __future__ import annotations

import json
import logging
import urllib.request
import weakref

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 0.5  # s: a dashboard on the network answers in milliseconds
DEFAULT_TEMPLATE = "{scheme}://{host}:{port}/status"

_links: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client/cluster -> link


def dashboard_link(holder) -> str | None:
    """The dashboard of a ``distributed.Client``'s (or cluster object's) scheduler, or None."""
    try:
        return _links[holder]
    except KeyError:
        pass
    except TypeError:  # not weakly referenceable: ask each time
        return _find(holder)
    link = _links[holder] = _find(holder)
    return link


def _find(holder) -> str | None:
    try:
        link = holder.dashboard_link
    except Exception:  # no HTTP service at all, or a client not connected
        return None
    if not link or not isinstance(link, str):
        return None
    return link if serves_dashboard(link) else None


def serves_dashboard(link: str) -> bool:
    """Whether the HTTP server behind ``link`` serves Dask's dashboard (bokeh)."""
    import dask.config

    if dask.config.get("distributed.dashboard.link") != DEFAULT_TEMPLATE:
        return True  # behind a proxy path we cannot second-guess
    base = link.rsplit("/", 1)[0]
    try:
        with urllib.request.urlopen(f"{base}/individual-plots.json",
                                    timeout=PROBE_TIMEOUT) as reply:
            return bool(json.loads(reply.read() or b"{}"))
    except (OSError, ValueError) as exc:
        logger.debug("no dashboard at %s: %r", link, exc)
        return False
