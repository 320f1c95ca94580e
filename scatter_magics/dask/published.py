"""The published datasets of a Dask scheduler, as the sidebar and ``%cluster`` list them.

Runs on the scheduler, in the recorder (:mod:`.recorder`'s ``scatter_magics_datasets``
handler); it travels by value with it (:mod:`.install`), importing nothing of ours.
"""

from __future__ import annotations


def published_datasets(scheduler) -> list[dict]:
    """``[{name, nbytes, workers}]`` of the datasets in Dask's publish extension,
    ``workers`` the names of the workers holding their keys."""
    extension = scheduler.extensions.get("publish")
    out = []
    for name in sorted(getattr(extension, "datasets", {}), key=str):
        tasks = [scheduler.tasks.get(k) for k in extension.datasets[name]["keys"]]
        held = [ts for ts in tasks if ts is not None]
        out.append({"name": str(name), "nbytes": sum(max(ts.nbytes, 0) for ts in held),
                    "workers": sorted({str(ws.name) for ts in held for ws in ts.who_has or ()})})
    return out
