"""Peak memory of the client process and of the cluster processes during one operation.

>>> with PeakMemory() as peak:
...     data = bytearray(100 * 2**20)
>>> peak.result()["client"] > 90 * 2**20
True

Three numbers, each the peak minus the value when sampling started:

- ``client``: RSS of this process (the driver; for Dask and scatter_magics also the scheduler);
- ``cluster``: PSS summed over every descendant process. PSS splits a shared page between the
  processes that map it, so a buffer shared by four workers counts once, not four times;
- ``shm``: bytes allocated in the ``/dev/shm`` files that these processes hold: open, mapped,
  or named with one of their pids (a segment kept for later, mapped by nobody right now). Other
  work on the machine does not count.
"""

import os
import re
import threading
import time

import psutil

SHM = "/dev/shm"


def pss(process):
    """Proportional set size of ``process`` in bytes (RSS where the kernel lacks smaps_rollup)."""
    try:
        with open(f"/proc/{process.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def shm_held(pids):
    """Bytes allocated in /dev/shm files that processes ``pids`` hold or are named for."""
    sizes = {}  # (device, inode) -> bytes, so a file held by many processes counts once
    for pid in pids:
        for folder in (f"/proc/{pid}/fd", f"/proc/{pid}/map_files"):
            for link in _entries(folder):
                try:
                    if os.readlink(link).startswith(SHM + "/"):
                        st = os.stat(link)
                        sizes[st.st_dev, st.st_ino] = st.st_blocks * 512
                except OSError:
                    continue
    names = {str(pid) for pid in pids}
    for entry in _entries(SHM):
        try:
            if names & set(re.findall(r"\d+", os.path.basename(entry))):
                st = os.stat(entry)
                sizes[st.st_dev, st.st_ino] = st.st_blocks * 512
        except OSError:
            continue
    return sum(sizes.values())


def _entries(folder):
    try:
        return [os.path.join(folder, name) for name in os.listdir(folder)]
    except OSError:
        return []


class PeakMemory:
    """Sample memory every ``interval`` seconds in a daemon thread between enter and exit."""

    def __init__(self, interval=0.01):
        self.interval = interval
        self.me = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="PeakMemory", daemon=True)
        self._children = []
        self._children_at = 0.0

    def sample(self):
        now = time.monotonic()
        if now - self._children_at > 0.25:  # workers may come and go; re-list them sometimes
            self._children = self.me.children(recursive=True)
            self._children_at = now
        return {
            "client": self.me.memory_info().rss,
            "cluster": sum(pss(p) for p in self._children),
            "shm": shm_held([self.me.pid, *(p.pid for p in self._children)]),
        }

    def _run(self):
        while not self._stop.wait(self.interval):
            for key, value in self.sample().items():
                self.peak[key] = max(self.peak[key], value)

    def __enter__(self):
        self.base = self.sample()
        self.peak = dict(self.base)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        for key, value in self.sample().items():
            self.peak[key] = max(self.peak[key], value)

    def result(self):
        """Peak minus start, in bytes, for ``client``, ``cluster`` and ``shm``."""
        return {key: self.peak[key] - self.base[key] for key in self.base}
