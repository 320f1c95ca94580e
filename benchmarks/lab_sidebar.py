"""What the JupyterLab sidebar costs, with 10 registered clusters (issue 9's numbers).

    python -m benchmarks.lab_sidebar [--clusters 10] [--cpu-seconds 30] [--changes 10]

Starts ``--clusters`` clusters, each in a process of its own (1 worker, 100 keys), and a
``jupyter lab`` whose runtime dir they share (as kernels would). Reports:

- listing: wall time of ``GET /scatter-magics/api/clusters`` seen by a client on loopback
  (the first request opens a connection per cluster; then warm), median and max of 50;
- server CPU: the server process's CPU time (user + system, psutil) over ``--cpu-seconds``
  while one sidebar holds the ``clusters/ws`` websocket open, as the front end does (the
  listing pushed on change), in % of one core; also with no sidebar open (the baseline) and
  with one sidebar polling once a second with ``If-None-Match`` (the front end's fallback);
- change → sidebar: in headless Chromium with the sidebar open, one cluster scatters a new
  key at a random moment; the time until that card's key count changes in the page.

Needs /usr/bin/chromium and playwright for the last part (skipped without them).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil

from tests.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LabServer,
    missing_browser_tools,
)

CLUSTER = textwrap.dedent("""
    import sys
    from scatter_magics import Client
    client = Client(n_workers=1)
    held = client.scatter(list(range(100)), hash=False)
    print(client.cluster.registry_entry.id, flush=True)
    for line in sys.stdin:  # each line: scatter one more key, then say so
        held.append(client.scatter(len(held), hash=False))
        print("ok", flush=True)
    client.close()
""")


def start_clusters(n: int, env: dict) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", CLUSTER], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    for proc in procs:
        proc.cluster_id = proc.stdout.readline().strip()
    return procs


def get(url: str, etag: str | None = None) -> tuple[int, str | None, bytes]:
    request = urllib.request.Request(url, headers={"If-None-Match": etag} if etag else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Etag"), response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return 304, etag, b""
        raise


def measure_listing(url: str, n: int = 50) -> dict:
    start = time.perf_counter()
    get(url)
    first = time.perf_counter() - start
    times = []
    for _ in range(n):
        start = time.perf_counter()
        status, _, body = get(url)
        times.append(time.perf_counter() - start)
    return {"first_ms": first * 1e3, "median_ms": statistics.median(times) * 1e3,
            "max_ms": max(times) * 1e3, "clusters": len(json.loads(body))}


def measure_cpu(server: psutil.Process, url: str, seconds: float, poll: bool) -> dict:
    before = server.cpu_times()
    start = time.monotonic()
    etag, polls, not_modified = None, 0, 0
    while time.monotonic() - start < seconds:
        if poll:
            status, etag, _ = get(url, etag)
            polls += 1
            not_modified += status == 304
        time.sleep(max(0.0, 1.0 - (time.monotonic() - start) % 1.0))
    after = server.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return {"cpu_percent": 100 * used / (time.monotonic() - start), "polls": polls,
            "not_modified": not_modified}


def measure_cpu_pushed(server: psutil.Process, ws_url: str, seconds: float) -> dict:
    """CPU while one websocket listener is open; counts the listings pushed meanwhile."""
    import websocket  # websocket-client, a dependency of jupyter_server

    socket = websocket.create_connection(ws_url, timeout=10)
    try:
        socket.recv()  # the listing on connect
        socket.settimeout(0.2)
        time.sleep(2)  # the server subscribes to every cluster and lists once more
        drain(socket)
        before = server.cpu_times()
        start = time.monotonic()
        pushed = 0
        while time.monotonic() - start < seconds:
            pushed += drain(socket)
        after = server.cpu_times()
    finally:
        socket.close()
    used = (after.user - before.user) + (after.system - before.system)
    return {"cpu_percent": 100 * used / (time.monotonic() - start), "pushed": pushed}


def drain(socket) -> int:
    """How many messages arrive until none for 0.2 s."""
    import websocket

    count = 0
    while True:
        try:
            socket.recv()
            count += 1
        except websocket.WebSocketTimeoutException:
            return count


def measure_change_latency(server: LabServer, clusters: list, changes: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{server.url}/lab?reset")
        page.wait_for_function("() => window.jupyterapp", timeout=60_000)
        page.evaluate("""async () => { await window.jupyterapp.restored;
            await window.jupyterapp.commands.execute('scatter-magics:show-sidebar'); }""")
        page.wait_for_selector(f".sm-lab-card >> nth={len(clusters) - 1}", timeout=60_000)
        delays = []
        for _ in range(changes):
            proc = random.choice(clusters)
            keys = f".sm-lab-card[data-cluster-id='{proc.cluster_id}'] .sm-lab-keys"
            before = page.inner_text(keys)
            time.sleep(random.uniform(0, 1))  # a moment unrelated to the poll's phase
            proc.stdin.write("scatter\n")
            proc.stdin.flush()
            proc.stdout.readline()
            changed = time.perf_counter()
            page.wait_for_function("([sel, old]) => document.querySelector(sel).innerText !== old",
                                   arg=[keys, before], timeout=10_000, polling=10)
            delays.append(time.perf_counter() - changed)
        browser.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--cpu-seconds", type=float, default=30)
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp, "root"), Path(tmp, "home")
        root.mkdir()
        server = LabServer(root, home, Path(tmp, "lab.log"))
        server.start()
        clusters = start_clusters(args.clusters, server.env())
        try:
            url = f"{server.url}/scatter-magics/api/clusters"
            listing = measure_listing(url)
            print(f"listing {listing['clusters']} clusters: first {listing['first_ms']:.1f} ms, "
                  f"then median {listing['median_ms']:.1f} ms, max {listing['max_ms']:.1f} ms")
            process = psutil.Process(server.proc.pid)
            idle = measure_cpu(process, url, args.cpu_seconds, poll=False)
            pushed = measure_cpu_pushed(process, url.replace("http", "ws", 1) + "/ws",
                                        args.cpu_seconds)
            shown = measure_cpu(process, url, args.cpu_seconds, poll=True)
            print(f"server CPU, no sidebar open: {idle['cpu_percent']:.2f}% of a core")
            print(f"server CPU, one sidebar on the websocket: {pushed['cpu_percent']:.2f}% of "
                  f"a core ({pushed['pushed']} listings pushed in {args.cpu_seconds:.0f} s)")
            print(f"server CPU, one sidebar polling 1/s (the fallback): "
                  f"{shown['cpu_percent']:.2f}% of a core "
                  f"({shown['polls']} polls, {shown['not_modified']} answered 304)")
            if missing_browser_tools():
                print(f"change -> sidebar: skipped ({missing_browser_tools()})")
            else:
                delays = measure_change_latency(server, clusters, args.changes)
                print(f"change -> sidebar over {len(delays)} changes: median "
                      f"{statistics.median(delays) * 1e3:.0f} ms, max {max(delays) * 1e3:.0f} ms "
                      f"(all, ms: {sorted(round(d * 1e3) for d in delays)})")
        finally:
            for proc in clusters:
                proc.stdin.close()
            for proc in clusters:
                proc.wait(20)
            server.stop()


if __name__ == "__main__":
    main()
