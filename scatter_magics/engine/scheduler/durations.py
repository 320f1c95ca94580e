"""How long tasks take: an average per task prefix, learned as tasks finish.

Placement and work stealing weigh a worker's queue by these estimates (Dask's model: a
worker's occupancy is the expected run time of the tasks it was given). Tasks of one
prefix (``inc`` for ``inc-3f1c...``, ``read-csv`` for ``("read-csv-9a2b...", 4)``) are
assumed alike, as Dask assumes of a task group. A prefix never seen counts
``UNKNOWN_DURATION``: Dask's ``distributed.scheduler.unknown-task-duration``.

>>> durations = TaskDurations()
>>> durations.expected("inc-3f1c")
0.5
>>> durations.record("inc-3f1c", 0.25)
>>> durations.record("inc-77aa", 0.75)
>>> durations.expected("inc-0000")
0.5
>>> key_prefix(("read-csv-9a2bc3d4", 4)), key_prefix("x"), key_prefix(b"sum-12")
('read-csv', 'x', 'sum')
"""

from __future__ import annotations

UNKNOWN_DURATION = 0.5  # s, until a task of that prefix has finished once
_HEX = frozenset("0123456789abcdef")


def key_prefix(key) -> str:
    """The name a key's task group goes by: its leading words, without the token.

    As Dask's ``key_split``: words after the first count only while they are all
    letters and not an 8-letter hex token (``"read-csv-<token>"`` → ``"read-csv"``).
    """
    if type(key) is not str:
        if type(key) is tuple:
            return key_prefix(key[0]) if key else ""
        if type(key) is bytes:
            return key_prefix(key.decode(errors="replace"))
        return type(key).__name__
    head, _, rest = key.partition("-")
    if not rest[:1].isalpha():  # "inc-<token starting with a digit>": once per task, keep it short
        return head
    while rest:
        word, _, rest = rest.partition("-")
        if not word.isalpha() or (len(word) == 8 and _HEX.issuperset(word)):
            break
        head = f"{head}-{word}"
    return head


def prefix_of(ks) -> str:
    """``key_prefix(ks.key)``, parsed once per key and kept on its record (``KeyInfo``):
    placement and the task's end both ask, and parsing each time cost ~1 ms a 1,000
    trivial tasks (py-spy)."""
    prefix = ks.prefix
    if prefix is None:
        prefix = ks.prefix = key_prefix(ks.key)
    return prefix


class TaskDurations:
    """The running average duration of each prefix's tasks (seconds)."""

    def __init__(self):
        self.averages: dict[str, float] = {}

    def expected(self, key) -> float:
        return self.averages.get(key_prefix(key), UNKNOWN_DURATION)

    def expected_of(self, ks) -> float:
        """:meth:`expected` for the key of the record ``ks`` (its prefix parsed once)."""
        return self.averages.get(prefix_of(ks), UNKNOWN_DURATION)

    def record(self, key, seconds: float, prefix: str | None = None) -> None:
        """A task of ``key``'s prefix (``prefix``, if known) ran for ``seconds``: half
        the new average (as Dask)."""
        prefix = key_prefix(key) if prefix is None else prefix
        old = self.averages.get(prefix)
        self.averages[prefix] = seconds if old is None else (old + seconds) / 2
