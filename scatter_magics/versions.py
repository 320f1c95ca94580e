"""The versions of Python and the packages a cluster's processes run: ``get_versions``.

Every process answers the same way (the client, the scheduler, each worker), so
``Client.get_versions(check=True)`` can compare them, as Dask's does: a mismatch of a
package that decides how values travel (Python, scatter_magics, cloudpickle, tornado) is
an error, of another (numpy, pandas, ...) a warning.

>>> versions = get_versions()
>>> sorted(versions)
['host', 'packages']
>>> versions["packages"]["scatter_magics"] == __import__("scatter_magics").__version__
True
>>> other = {"host": {}, "packages": {**versions["packages"], "cloudpickle": "0.1"}}
>>> error, warning = mismatches({"client": versions, "scheduler": versions, "workers": {"w": other}})
>>> error.splitlines()[1].strip().startswith("cloudpickle:"), warning
(True, '')
"""

from __future__ import annotations

import functools
import os
import struct
import sys

REQUIRED = ("python", "scatter_magics", "cloudpickle", "tornado")  # values travel by these
OPTIONAL = ("numpy", "pandas", "dask", "distributed", "xxhash", "uvloop")


def get_versions(packages=()) -> dict:
    """``{"host": {...}, "packages": {name: version or None}}`` of this process."""
    import platform  # here, not at the top: the scheduler and every worker import this

    uname = platform.uname()
    host = {"python": "%d.%d.%d.%s.%s" % sys.version_info, "python-bits": struct.calcsize("P") * 8,
            "OS": uname.system, "OS-release": uname.release, "machine": uname.machine,
            "processor": uname.processor, "byteorder": sys.byteorder,
            "LC_ALL": os.environ.get("LC_ALL", "None"), "LANG": os.environ.get("LANG", "None")}
    names = dict.fromkeys([*REQUIRED[1:], *OPTIONAL, *packages])
    return {"host": host,
            "packages": {"python": ".".join(map(str, sys.version_info[:3])),
                         **{name: _version(name) for name in names}}}


@functools.cache
def _version(package: str) -> str | None:
    # importlib.metadata (with email, zipfile, csv) cost ~23 ms of a cold start at the top.
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def mismatches(versions: dict) -> tuple[str, str]:
    """``(error, warning)``: tables of the packages whose versions differ between the
    processes of ``versions`` (``{"scheduler": ..., "workers": {address: ...}, "client":
    ...}``), the required ones in ``error``; ``""`` when they agree."""
    processes = {"client": versions["client"], "scheduler": versions["scheduler"],
                 **{f"worker {a}": v for a, v in versions["workers"].items()}}
    names = sorted({name for v in processes.values() for name in v["packages"]})
    required, optional = [], []
    for name in names:
        seen = {who: v["packages"].get(name, "MISSING") for who, v in processes.items()}
        if len(set(seen.values())) > 1:
            row = f"{name}: " + ", ".join(f"{who} {version}" for who, version in seen.items())
            (required if name in REQUIRED else optional).append(row)
    def table(rows: list) -> str:
        return "Mismatched versions found:\n  " + "\n  ".join(rows) if rows else ""
    return table(required), table(optional)
