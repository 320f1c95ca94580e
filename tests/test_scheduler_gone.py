"""A client whose scheduler goes away under it (issue 21, item 3, on our engine).

As Dask's client ends when it gives up on its scheduler: its status turns ``closed``, every
future is cancelled, what waited fails with ``ClientClosedError`` saying why (never the
connection's ``CommClosedError``), subscribers get ``closed`` with the reason, and its
threads end. The notebook's side of it is in test_connections.py and test_lab_server.py.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from scatter_magics import Client, discovery
from scatter_magics.engine.cluster.local import LocalCluster
from scatter_magics.errors import ClientClosedError
from tests.cluster_support import ClusterProcess
from tests.conftest import our_threads, wait_for


def test_a_client_whose_scheduler_process_dies_closes_and_says_why():
    cluster = ClusterProcess(n_workers=1, n_keys=0)
    threads_before = set(our_threads())
    try:
        entry = discovery.find_entry(cluster.id)
        client = Client(entry.scheduler_address, secret=entry.secret)
        running = client.submit(time.sleep, 60, pure=False)
        held = client.scatter(5)
        batches = []
        client.subscribe_events(batches.append)
        waited = []
        waiter = threading.Thread(target=lambda: waited.append(_raised(running.result)))
        waiter.start()
        cluster.proc.kill()
        waiter.join(10)
        reason = (f"the connection to the scheduler at {entry.scheduler_address} was lost: "
                  f"its process died, or the network failed")
        said = f"this Client is closed: {reason}; create a new Client()"
        assert [(type(e), str(e)) for e in waited] == [(ClientClosedError, said)]
        assert client.status == "closed" and batches[-1] == [{"event": "closed",
                                                              "reason": reason}]
        assert running.status == held.status == "cancelled"  # their data went with it
        with pytest.raises(ClientClosedError) as later:
            client.scheduler_info()
        assert str(later.value) == said
        client.close()  # nothing left to do, nothing to hang on
        wait_for(lambda: set(our_threads()) <= threads_before, timeout=10,
                 what="the client's loop thread to end")
    finally:
        cluster.stop()


def test_a_client_of_a_cluster_closed_in_its_own_process_is_closed_too():
    cluster = LocalCluster(n_workers=1)
    try:
        client = Client(cluster)
        future = client.scatter(7)
        cluster.close()
        wait_for(lambda: client.status == "closed", timeout=5, what="the client to close")
        reason = f"the cluster was closed by the process that owns it, pid {os.getpid()}"
        with pytest.raises(ClientClosedError) as gathering:
            client.gather(future)
        assert str(gathering.value) == f"this Client is closed: {reason}; create a new Client()"
        assert future.status == "cancelled"
        client.close()
    finally:
        cluster.close()


def _raised(call) -> BaseException | None:
    try:
        call()
    except BaseException as exc:
        return exc
    return None
