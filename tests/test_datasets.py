"""Published data outlives the kernel (issue 20, item 6).

A cluster owned by another process (here: the test process, as the Jupyter server owns
the sidebar's "New cluster"); a real kernel connects to it, ``%scatter df --publish``,
is restarted, connects again, and ``%gather df`` gives the same DataFrame back.
"""

from __future__ import annotations

import textwrap

import pytest

from scatter_magics import Client
from tests.conftest import wait_for
from tests.test_magics import ip, run  # noqa: F401 (ip: fixture)

pytestmark = pytest.mark.timeout(120)

jupyter_client = pytest.importorskip("jupyter_client")


@pytest.fixture(scope="module")
def shared_cluster():
    """A cluster this process owns and registers, as a server-owned one is."""
    with Client(n_workers=1) as owner:
        yield owner


def execute(kc, code: str) -> str:
    """Run ``code`` in the kernel; its stdout, or the error it raised (as text)."""
    out: list[str] = []

    def hook(msg):
        content = msg["content"]
        if msg["msg_type"] == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif msg["msg_type"] == "error":
            out.append(f"ERROR {content['ename']}: {content['evalue']}")
    reply = kc.execute_interactive(textwrap.dedent(code), timeout=90, output_hook=hook)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


def test_a_published_dataframe_outlives_a_kernel_restart(shared_cluster):
    from jupyter_client.manager import start_new_kernel

    cluster_id = shared_cluster.cluster.registry_entry.id
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=90)
    try:
        execute(kc, f"""
            import pandas as pd
            %load_ext scatter_magics
            %cluster connect {cluster_id}
            df = pd.DataFrame({{"x": range(1000), "y": [str(i) for i in range(1000)]}})
            %scatter df --publish
            table = df.copy()
            %scatter table --split 3 --publish
        """)
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=90)
        said = execute(kc, f"""
            import pandas as pd
            %load_ext scatter_magics
            %cluster connect {cluster_id}
            out = %gather df
            expected = pd.DataFrame({{"x": range(1000), "y": [str(i) for i in range(1000)]}})
            print("EQUAL", out.equals(expected))
            joined = %gather table
            print("JOINED", type(joined).__name__, joined.equals(expected))
            parts = %gather table --pieces
            print("PIECES", [len(p) for p in parts])
            summary = %cluster
            print(summary)
        """)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert "EQUAL True" in said
    assert "JOINED DataFrame True" in said  # a --split value comes back whole, as it went
    assert "PIECES [334, 333, 333]" in said
    listed = said.split("published dataset")[1].splitlines()[1]  # %cluster lists it
    assert listed.split()[0] == "df" and "worker-0" in listed
    assert sorted(shared_cluster.list_datasets()) == ["df", "table"]
    shared_cluster.unpublish_dataset(["df", "table"])


def test_published_keys_are_held_by_the_name_until_unpublished(shared_cluster):
    other = Client(shared_cluster.scheduler_address)
    [future] = other.scatter([list(range(100))], hash=False)
    key = future.key
    other.publish_dataset(numbers=[future])
    other.close()  # its client is gone: the dataset alone holds the key
    assert shared_cluster.who_has()[key]
    [again] = shared_cluster.get_dataset("numbers")
    assert again.status == "finished"  # as its key is (Dask's say pending until told)
    assert again.result() == list(range(100))
    shared_cluster.unpublish_dataset("numbers")
    assert again.result() == list(range(100))  # held by our future now
    again.release()
    wait_for(lambda: key not in shared_cluster.who_has(), what="the key to be released")


def test_gather_of_a_name_no_future_has_gathers_the_dataset(ip, shared_cluster):
    shared_cluster.publish_dataset(cities=shared_cluster.scatter(["Oslo", "Lima"], hash=False))
    ip.user_ns["client"] = shared_cluster
    try:
        assert run(ip, "%gather cities") == ["Oslo", "Lima"]
        ip.user_ns["rivers"] = ["Nile"]
        run(ip, "%scatter rivers --publish")
        assert shared_cluster.get_dataset("rivers").result() == ["Nile"]
        run(ip, "%scatter rivers --publish")  # again: replaces it
        assert sorted(shared_cluster.list_datasets()) == ["cities", "rivers"]
    finally:
        shared_cluster.unpublish_dataset(["cities", "rivers"])
