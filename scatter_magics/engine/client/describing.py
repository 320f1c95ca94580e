"""What a ``Client`` shows of itself, as Dask's does: ``futures``, ``dashboard_link``,
``_repr_html_`` (functions of a client, bound by ``client.py``).

The HTML has its id and status, the scheduler's address, and its workers with their
threads and memory limits, read from ``scheduler_info()`` (a closed client: its status).

>>> client._repr_html_()                                   # doctest: +SKIP
'<div><h3 ...>Client</h3><p ...>Client-6f1c...</p>...'
"""

from __future__ import annotations

import html

from ...sizes import format_bytes

_STYLE = "text-align: left;"


def futures(client) -> dict:
    """``{key: FutureState}`` of the keys this client's Futures hold (Dask's)."""
    return client.refs.states()


def dashboard_link(client) -> str:
    """An empty string, as a Dask cluster without a dashboard gives: the cluster's views
    live in Jupyter (``%cluster``), not at a URL of the scheduler's."""
    return ""


def client_html(client) -> str:
    """``client`` as HTML: a heading, its id, then a table of its cluster if it runs."""
    head = (f'<div><h3 style="margin-bottom: 0px;">Client</h3>'
            f'<p style="color: #9D9D9D; margin-bottom: 0px;">{html.escape(client.id)}</p>')
    if client.status != "running":
        return f"{head}<p>Status: {html.escape(client.status)}</p></div>"
    workers = client.scheduler_info(asynchronous=False)["workers"]
    rows = [("Scheduler", client.scheduler_address), ("Status", client.status),
            ("Workers", len(workers)),
            ("Threads", sum(w["nthreads"] for w in workers.values())),
            ("Memory", _memory(workers.values()))]
    cells = "".join(f'<tr><td style="{_STYLE}"><strong>{name}:</strong> '
                    f"{html.escape(str(value))}</td></tr>" for name, value in rows)
    return f'{head}<table style="width: 100%; {_STYLE}">{cells}</table></div>'


def _memory(workers) -> str:
    """The workers' memory limits added up; "no limit" if any has none (0)."""
    limits = [w["memory_limit"] for w in workers]
    return format_bytes(sum(limits)) if limits and all(limits) else "no limit"
