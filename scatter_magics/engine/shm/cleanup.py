"""Removing shared-memory segments whose pool is gone.

A pool's owner unlinks its segments on close; a worker whose owner was killed unlinks
the owner's (it knows the prefix: ``engine/worker/lifeline.py``). When the owner and its
workers die together (the OOM killer, a container's kill) nobody is left to, and tmpfs
would hold the memory until the machine restarts: the next pool this user starts sweeps
such segments (:func:`sweep_orphaned_segments`).

>>> sweep_orphaned_segments("/nonexistent")
()
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import re

from .space import SHM_DIR

logger = logging.getLogger(__name__)


def unlink_segments(prefix: str) -> None:
    """Remove every segment a (dead) pool left behind."""
    if not prefix.startswith("smg-") or "/" in prefix:
        raise ValueError(f"not a segment prefix: {prefix!r}")
    for path in glob.glob(os.path.join(SHM_DIR, glob.escape(prefix) + "*")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


_SEGMENT_NAME = re.compile(r"smg-(\d+)-[0-9a-f]{8}-\d+")


@functools.cache  # once per process: orphans appear only when whole clusters die
def sweep_orphaned_segments(directory: str = SHM_DIR) -> tuple[str, ...]:
    """Unlink the segments of pools whose owner is dead and that no process maps.

    Only this user's files, only a dead owner pid, and only a segment no visible process
    has mapped (a worker still reading one keeps it). Returns the paths unlinked.
    """
    candidates = []
    for path in glob.glob(os.path.join(directory, "smg-*")):
        match = _SEGMENT_NAME.fullmatch(os.path.basename(path))
        try:
            owned = os.stat(path).st_uid == os.getuid()
        except FileNotFoundError:
            continue
        if match and owned and not _pid_alive(int(match.group(1))):
            candidates.append(path)
    mapped = _mapped_segments(directory) if candidates else set()
    swept = []
    for path in candidates:
        if path not in mapped:
            try:
                os.unlink(path)
                swept.append(path)
            except FileNotFoundError:
                pass
    if swept:
        logger.warning("unlinked %d shared-memory segment(s) left by clusters that died "
                       "with their workers: %s", len(swept), ", ".join(swept))
    return tuple(swept)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return True


def _mapped_segments(directory: str) -> set[str]:
    """Segment paths any process we can see has mapped (``/proc/<pid>/maps``)."""
    mapped = set()
    prefix = os.path.join(directory, "smg-")
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            with open(maps) as lines:
                for line in lines:
                    where = line.find(prefix)
                    if where >= 0:
                        mapped.add(line[where:].rstrip("\n").removesuffix(" (deleted)"))
        except OSError:  # the process ended, or is not ours to read
            continue
    return mapped
