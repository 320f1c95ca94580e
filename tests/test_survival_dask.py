"""Data that survives a worker restarted by its nanny, on a real Dask cluster (issue 20).

``dask worker --nanny`` processes, as users run them: when the worker process dies, its
nanny starts it again under the same name at a new address. Dask cannot recompute
scattered data (distributed#3149), so the magics scatter a lost value again from the
notebook's variable when it still holds it, and a broadcast pinned to workers by name
reaches the restarted worker again.
"""

from __future__ import annotations

import os
import signal

import pytest

distributed = pytest.importorskip("distributed")

from tests.conftest import wait_for  # noqa: E402
from tests.dask_support import DaskCLI  # noqa: E402
from tests.test_magics import ip, run  # noqa: E402,F401 (ip: fixture)
from tests.test_survival import assert_gather_says_b_is_lost  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def nanny_cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker --nanny`` (w1, w2), for this module."""
    cli = DaskCLI(tmp_path_factory.mktemp("dask-nanny"))
    try:
        for name in ("w1", "w2"):
            cli.start_worker(name, nanny=True)
        with distributed.Client(scheduler_file=cli.scheduler_file, timeout=60) as probe:
            probe.wait_for_workers(2, timeout=60)
        yield cli
    finally:
        cli.stop()


@pytest.fixture
def connected(ip, nanny_cluster):
    """The magics' shell, connected to the nanny cluster; its client is ``client``."""
    run(ip, f"%cluster connect --scheduler-file {nanny_cluster.scheduler_file}")
    yield ip
    run(ip, "%cluster stop")


def addresses(client) -> dict[str, str]:
    """``{name: address}`` of the live workers."""
    return {str(w["name"]): a for a, w in client.scheduler_info()["workers"].items()}


def restart(client, name: str) -> str:
    """SIGKILL worker ``name``'s process; its nanny starts it again: its new address."""
    old = addresses(client)[name]
    os.kill(client.run(os.getpid, workers=[old])[old], signal.SIGKILL)
    return wait_for(lambda: (new := addresses(client).get(name)) not in (None, old) and new,
                    timeout=60, what=f"the nanny to restart {name}")


def holders(client, future) -> set[str]:
    return set(client.who_has([future])[future.key])


def name_of(client, address: str) -> str:
    return next(n for n, a in addresses(client).items() if a == address)


@pytest.mark.parametrize("placement", ["", "-w w1"])
def test_gather_after_the_holder_restarts_gives_the_unchanged_variable(connected, placement):
    """``%scatter a``, its only holder dies, ``%gather a`` gives a (was FutureCancelledError).
    With ``-w w1`` the re-send waits for the nanny to bring w1 back, and goes there."""
    ip = connected
    client = ip.user_ns["client"]
    ip.user_ns["a"] = list(range(1000))
    future = run(ip, f"%scatter a {placement}")
    [holder] = holders(client, future)
    restart(client, name_of(client, holder))
    # Sent again before anyone asks: the future is finished and held again on its own.
    wait_for(lambda: future.status == "finished" and holders(client, future), timeout=30,
             what="a to be scattered again from the notebook")
    assert run(ip, "%gather a") == list(range(1000))
    if placement:
        assert holders(client, future) == {addresses(client)["w1"]}


@pytest.mark.parametrize("change", ["changed", "deleted"])
def test_a_changed_or_deleted_variable_is_lost_with_its_name(connected, change):
    ip = connected
    client = ip.user_ns["client"]
    ip.user_ns["b"] = {"rows": 3}
    future = run(ip, "%scatter b")
    if change == "changed":
        ip.user_ns["b"]["rows"] = 4  # in place: the same object, other content
    else:
        del ip.user_ns["b"]
    [holder] = holders(client, future)
    restart(client, name_of(client, holder))
    assert_gather_says_b_is_lost(ip, change)


def test_a_broadcast_to_named_workers_reaches_a_restarted_one_again(connected):
    """``-w w1 w2`` pins follow the names: w2's nanny restarts it at a new address."""
    ip = connected
    client = ip.user_ns["client"]
    ip.user_ns["x"] = "x" * 1000
    future = run(ip, "%scatter x --broadcast -w w1 w2")
    wait_for(lambda: len(holders(client, future)) == 2, what="x on w1 and w2")
    new = restart(client, "w2")
    wait_for(lambda: new in holders(client, future), timeout=30,
             what="the broadcast to reach the restarted w2 at its new address")
    assert run(ip, "%gather x") == "x" * 1000



def test_keeping_a_variable_for_re_sending_costs_the_scheduler_nothing_per_key(connected):
    """The re-send record of a %scatter hears of losses on a topic written only when a
    worker dies: no per-key event stream is subscribed (it cost every %scatter a trip
    to the scheduler, and the scheduler a scan of the client's keys), and no batch of
    events reaches this client while nothing is lost."""
    from scatter_magics.dask.plugin import NAME, TOPIC_PREFIX

    ip = connected
    client = ip.user_ns["client"]
    ip.user_ns["c"] = [1, 2, 3]
    run(ip, "future = %scatter c")  # not shown: a live widget would subscribe
    assert run(ip, "%gather c") == [1, 2, 3]
    subscribers = client.run_on_scheduler(
        lambda dask_scheduler: sorted(dask_scheduler.plugins[NAME].subscribers))
    assert client.id not in subscribers
    assert client.get_events(TOPIC_PREFIX + client.id) == ()
