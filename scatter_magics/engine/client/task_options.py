"""The keywords ``submit`` and ``map`` keep for themselves (never passed to the function).

Dask's meaning, checked here so a mistake raises in the caller:

| keyword | meaning |
|---|---|
| ``priority`` | higher runs first among tasks waiting for a thread (default 0) |
| ``retries`` | a task that raises is run again, up to this many times |
| ``resources`` | ``{"GPU": 1}``: runs only on workers that declared that much, holding it meanwhile |
| ``workers`` | where it may run; ``allow_other_workers=True`` makes that a preference |
| ``fifo_timeout`` | submits this close together count as one batch, ordered as submitted |

A task record's options travel as a small dict of what differs from the defaults (None
when nothing does, as for most tasks): ``{"priority": 1, "retries": 2, "resources":
{"GPU": 1}, "loose": True, "fifo_timeout": 0.1}``.

>>> task_options(priority=1, retries=2, resources=None, workers=None,
...              allow_other_workers=False, fifo_timeout="100 ms")
{'priority': 1, 'retries': 2}
>>> task_options(priority=0, retries=None, resources=None, workers=None,
...              allow_other_workers=False, fifo_timeout="100 ms") is None
True
>>> parse_timedelta("250ms"), parse_timedelta("2 s"), parse_timedelta(3)
(0.25, 2.0, 3.0)
"""

from __future__ import annotations

import numbers
import re

DEFAULT_FIFO_TIMEOUT = 0.1  # s: Dask's "100 ms"
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
         "hour": 3600.0, "hours": 3600.0, "seconds": 1.0, "second": 1.0,
         "milliseconds": 1e-3, "minutes": 60.0, "d": 86400.0, "day": 86400.0, "days": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
RESERVED = ("key", "workers", "resources", "retries", "priority", "allow_other_workers",
            "fifo_timeout", "actor", "actors", "pure", "batch_size")


def parse_timedelta(value, default_unit: str = "s") -> float:
    """Seconds in ``value``: a number (in ``default_unit``) or text such as ``"100 ms"``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value) * UNITS[default_unit]
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or (match.group(2) or default_unit).lower() not in UNITS:
        raise ValueError(f"{value!r} is not a duration: use seconds, or text such as "
                         "'100 ms' or '2 s'")
    return float(match.group(1)) * UNITS[(match.group(2) or default_unit).lower()]


def task_options(*, priority, retries, resources, workers, allow_other_workers,
                 fifo_timeout, actor=False, actors=False) -> dict | None:
    """The options of a task record (see the module docstring), checked; None for defaults."""
    if (type(priority) is int and priority == 0 and retries is None and resources is None
            and allow_other_workers is False and fifo_timeout == "100 ms" and not actor
            and not actors):
        return None  # most submits: no checking needed (3.4 us a submit otherwise)
    refuse_actors(actor, actors)
    options: dict = {}
    if not isinstance(priority, numbers.Real) or isinstance(priority, bool):
        raise TypeError(f"priority must be a number (higher runs first), got {priority!r}")
    if priority:
        options["priority"] = priority
    if retries is not None:
        if not isinstance(retries, numbers.Integral) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, got {retries!r}")
        if retries:
            options["retries"] = int(retries)
    if resources:
        options["resources"] = check_resources(resources)
    if allow_other_workers not in (True, False, None):
        raise TypeError("allow_other_workers= must be True or False")
    if allow_other_workers:
        if workers is None:
            raise ValueError("Only use allow_other_workers= if using workers=")
        options["loose"] = True
    fifo = parse_timedelta(fifo_timeout)
    if fifo != DEFAULT_FIFO_TIMEOUT:
        options["fifo_timeout"] = fifo
    return options or None


def check_resources(resources) -> dict:
    """``{"GPU": 1}``: names to amounts > 0; a TypeError names what is wrong."""
    if not isinstance(resources, dict) or not all(
            isinstance(name, str) and isinstance(amount, numbers.Real)
            and not isinstance(amount, bool) and amount > 0
            for name, amount in resources.items()):
        raise TypeError(f"resources must be a dict of names to amounts > 0, such as "
                        f"{{'GPU': 1}}; got {resources!r}")
    return dict(resources)


def refuse_actors(actor, actors) -> None:
    """Dask's actors are not part of the embedded engine: say so rather than pass them on."""
    if actor or actors:
        raise NotImplementedError("actors are not supported on the embedded cluster; "
                                  "start a Dask cluster for them (%cluster start --dask)")
