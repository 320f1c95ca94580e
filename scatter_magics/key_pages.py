"""One page of a cluster's keys, filtered by status and name and sorted, for the Futures
panel (``GET clusters/<id>?offset=&limit=&status=&name=&sort=&order=``).

Pure: the embedded scheduler pages its own keys with it (the ``key-list`` op), the server
pages a Dask cluster's. A key item is ``{"key", "name", "status", "nbytes", "size",
"type", "workers", "died"}``: ``name`` is what the key was made from (a task's function,
a scattered variable), ``died`` the workers that died holding it (a lost key's note).

>>> items = [{"key": f"f-{i:016x}", "status": s, "nbytes": i, "type": "int", "workers": []}
...          for i, s in enumerate(["finished", "lost", "finished"])]
>>> page = page_of(items, 0, 10, status="finished", sort="size", descending=True)
>>> page["total"], [k["nbytes"] for k in page["keys"]], page["keys"][0]["name"]
(2, [2, 0], 'f')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .keys import key_name, key_text

SORTS = ("key", "name", "type", "size", "status", "workers")


def item(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A key record (a key event's fields) as the panel lists it."""
    return {"key": key_text(rec["key"]), "name": rec.get("name") or key_name(rec["key"]),
            "status": rec["status"], "nbytes": rec.get("nbytes"), "size": rec.get("nbytes"),
            "type": rec.get("type"), "workers": list(rec.get("workers") or ()),
            "died": list(rec.get("died") or ())}


def _sort_key(sort: str):
    if sort == "size":
        return lambda i: (i["nbytes"] is None, i["nbytes"] or 0)
    if sort == "workers":
        return lambda i: len(i["workers"])
    return lambda i: (i[sort] is None, str(i[sort] or ""))


def page_of(records: Iterable[Mapping[str, Any]], offset: int, limit: int,
            status: str | None = None, name: str | None = None, sort: str | None = None,
            descending: bool = False) -> dict[str, Any]:
    """``{"total", "offset", "keys"}``: the matching items from ``offset``, at most
    ``limit``; ``name`` matches a substring of the name or key, case-insensitively."""
    if sort is not None and sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}; got {sort!r}")
    items = [item(r) for r in records if status is None or r["status"] == status]
    if name:
        needle = name.lower()
        items = [i for i in items if needle in i["name"].lower() or needle in i["key"].lower()]
    if sort is not None:
        items.sort(key=_sort_key(sort), reverse=descending)
    offset = max(offset, 0)
    return {"total": len(items), "offset": offset,
            "keys": items[offset:offset + max(limit, 0)]}
