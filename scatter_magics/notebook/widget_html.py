"""Static HTML for the widgets, for where no widget front end runs (nbconvert, GitHub).

Inline styles only (no stylesheet travels with a saved output), and every status has a
glyph as well as a colour, so it stays distinct where colours are stripped.

Every fallback table of the package (``%scatter``'s, ``%cluster``'s, a Future's, the
widgets') is drawn by :func:`table_html`, so they all look alike.

>>> "finished" in futures_html({"keys": {"count": 1, "by_status": {"finished": 1},
...     "nbytes": 28, "replicas": 2, "replica_nbytes": 56}, "n_workers": 2},
...     [{"name": "x", "key": "int-1", "type": "int", "nbytes": 28, "status": "finished",
...       "workers": ["tcp://a"]}], {"tcp://a": "worker-0"})
True
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from ..sizes import format_bytes
from ..summary import STATUSES, keys_phrase, memory_phrase
from .plots_html import (
    DATA_COLOUR,
    PROCESS_COLOUR,
    history_by_worker,
    task_stream_svg,
    timeline_svg,
)

# Glyph, the JupyterLab theme variable, and the colour where no theme is loaded (the
# variable's light-theme value mixed 70/30 with black: >= 5:1 on white). Kept in step
# with static/widget.js and static/widget.css, which explains the mix.
STATUS_STYLE = {
    "pending": ("◌", "--jp-warn-color0", "#a13900"),
    "running": ("▶", "--jp-brand-color0", "#093271"),
    "finished": ("●", "--jp-success-color0", "#134216"),
    "error": ("✖", "--jp-error-color0", "#801414"),
    "cancelled": ("⊘", "", "#616161"),
    "lost": ("⚠", "--jp-info-color0", "#004346"),
    "released": ("○", "", "#616161"),
}

_TABLE = "border-collapse:collapse;font-size:12px;font-family:var(--jp-ui-font-family,sans-serif)"
_CELL = ("text-align:left;vertical-align:top;padding:2px 8px;border-bottom:1px solid #ddd;"
         "overflow-wrap:break-word")


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def status_html(status: str) -> str:
    """A status as a badge: its glyph and name in white on its colour.

    A saved output is opened in whatever theme the reader has, and JupyterLab's
    sanitizer keeps a plain background colour but drops ``color-mix()``: text in the
    light theme's colour read at ~1.5:1 on the dark theme, white on these colours is
    at least 5:1 on any page.
    """
    glyph, _, colour = STATUS_STYLE.get(status, ("?", "", "#000"))
    return (f"<span style='background-color:{colour};color:#fff;font-weight:600;"
            f"border-radius:3px;padding:0 4px;white-space:nowrap'>{glyph} "
            f"{_esc(status)}</span>")


def table_html(columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    """The package's one fallback table: ``rows`` are HTML already escaped, ``caption``
    too. Names wrap at word boundaries (``overflow-wrap: break-word``), never mid-word."""
    head = "".join(f"<th style='{_CELL}'>{_esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td style='{_CELL}'>{cell}</td>" for cell in row)
                   + "</tr>" for row in rows)
    return (f"<table style='{_TABLE}'><caption style='text-align:left;padding:2px 0'>"
            f"{caption}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _snapshot_note(live: bool, reason: str = "client closed") -> str:
    return "" if live else f" <em>(not live: {_esc(reason)})</em>"


def futures_summary_html(summary: Mapping[str, Any]) -> str:
    keys = summary.get("keys", {})
    by_status = keys.get("by_status", {})
    parts = [status_html(st) + f" {by_status[st]}" for st in STATUSES if by_status.get(st)]
    return (f"<b>{_plural(keys.get('count', 0), 'future')}</b> · " + " · ".join(parts)
            + f" · {_esc(format_bytes(keys.get('nbytes', 0)))} in memory"
            + f" ({_esc(format_bytes(keys.get('replica_nbytes', 0)))} with replicas)"
            + f" · {_plural(summary.get('n_workers', 0), 'worker')}")


def futures_html(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                 worker_names: Mapping[str, str], live: bool = True,
                 reason: str = "client closed") -> str:
    """The futures table: summary caption, then one row per future (the first page)."""
    cells = []
    for row in rows:
        holders = sorted(worker_names.get(a, a) for a in row["workers"])
        died = sorted(worker_names.get(a, a) for a in row.get("died", ()))
        where = ", ".join(holders)
        if died:
            where += (" · " if where else "") + ", ".join(died) + " died"
        cells.append([_esc(row["name"]), f"<code>{_esc(row['key'])}</code>", _esc(row["type"]),
                      _esc(format_bytes(row["nbytes"])), status_html(row["status"]), _esc(where),
                      str(len(holders))])
    more = summary.get("keys", {}).get("count", 0) - len(rows)
    caption = futures_summary_html(summary) + _snapshot_note(live, reason)
    if more > 0:
        caption += f" · first {len(rows)} shown, {more} more"
    columns = ["name", "key", "type", "size", "status", "workers", "replicas"]
    return table_html(columns, cells, caption)


def memory_bar_html(worker: Mapping[str, Any]) -> str:
    """Data held against the limit (the bar), process memory as a second mark (a tick),
    and the words saying which is which."""
    limit, data, memory = (worker.get("memory_limit") or 0, worker.get("nbytes") or 0,
                           worker.get("memory") or 0)
    words = _esc(memory_phrase(worker))
    if not limit:
        return words
    filled = min(100.0, 100.0 * data / limit)
    mark = min(100.0, 100.0 * memory / limit)
    return (f"<div title='{words}' style='width:120px;height:10px;background:#eee;"
            f"position:relative;display:inline-block;vertical-align:middle'>"
            f"<div style='position:absolute;left:0;top:0;bottom:0;width:{filled:.1f}%;"
            f"background:{DATA_COLOUR}'></div>"
            f"<div style='position:absolute;top:-2px;bottom:-2px;left:{mark:.1f}%;width:2px;"
            f"background:{PROCESS_COLOUR}'></div></div> <small>{words}</small>")


def _worker_note(worker: Mapping[str, Any]) -> str:
    """Whom a replacement replaced, and whether the worker is unresponsive, or ''."""
    status = worker.get("status", "running")
    notes = [n for n in (status if status != "running" else "", worker.get("note", "")) if n]
    return f"<br><small>{_esc('; '.join(notes))}</small>" if notes else ""


def cluster_html(workers: Sequence[Mapping[str, Any]], totals: Mapping[str, Any],
                 history: Mapping[str, Any] | None = None,
                 tasks: Mapping[str, Any] | None = None, live: bool = True,
                 reason: str = "client closed") -> str:
    """The workers table with a totals caption, each worker's last five minutes, and (when
    given) the task stream of the last minute below."""
    series = history_by_worker(history)
    cells = []
    for w in workers:
        past = series.get(w["address"])
        cells.append([_esc(w["name"]) + _worker_note(w), f"<code>{_esc(w['address'])}</code>",
                      _esc(w["nthreads"]), memory_bar_html(w),
                      timeline_svg(past["memory"], past["nbytes"]) if past else "",
                      _esc(w.get("nkeys", 0)), _esc(holds_text(w.get("holds", ())))])
    caption = (f"<b>{_plural(totals.get('n_workers', 0), 'worker')}</b>"
               f" · {_plural(totals.get('nthreads', 0), 'thread')}"
               f" · {_esc(keys_phrase(totals.get('keys', {})))}"
               f" · {_key_statuses(totals.get('keys', {}))}"
               + (f" · {_esc(totals['shared_memory'])}" if totals.get("shared_memory") else "")
               + _departed_note(totals.get("departed", ())) + _snapshot_note(live, reason)
               + (f"<br><b>Warning:</b> {_esc(totals['notice'])}" if totals.get("notice") else ""))
    table = table_html(["worker", "address", "threads", "memory: data held · process",
                        "last 5 min", "keys", "holds"], cells, caption)
    if tasks is None:
        return table
    names = {w["address"]: w["name"] for w in workers}
    return (table + "<div style='margin-top:6px'><b>Task stream</b>, last minute</div>"
            + task_stream_svg(tasks.get("tasks", ()), tasks.get("now") or 0, names))


def _key_statuses(keys: Mapping[str, Any]) -> str:
    by_status = keys.get("by_status", {})
    return " · ".join(status_html(st) + f" {by_status[st]}" for st in STATUSES
                      if by_status.get(st)) or "no keys"


def holds_text(holds) -> str:
    """``[["df", 1], ["rows[…]", 5000]]`` → ``'df, rows[…] ×5000'``."""
    return ", ".join(name if n == 1 else f"{name} ×{n}" for name, n in holds)


def _departed_note(departed) -> str:
    return f" · {_esc(', '.join(departed))} left" if departed else ""
