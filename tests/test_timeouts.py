"""Timeouts as Dask takes them: seconds, or text such as ``"300ms"`` or ``"5s"``, wherever
a call takes ``timeout=``; a mistake is a ValueError naming it, and a connection that
times out says what it waited for.

The tests on ``any_client`` pass with a scatter_magics ``Client`` and with a
``distributed.Client``: the same calls, the same outcome. Tasks kept pending wait
behind ``gate`` (conftest).
"""

from __future__ import annotations

import socket
import time

import pytest

pytestmark = pytest.mark.timeout(120)


BOUNDED_WAITS = {
    "result": lambda api, future: future.result(timeout="300ms"),
    "exception": lambda api, future: future.exception(timeout="300ms"),
    "wait": lambda api, future: api.wait([future], timeout="300ms"),
}


@pytest.mark.parametrize("call", BOUNDED_WAITS.values(), ids=BOUNDED_WAITS.keys())
def test_text_timeouts_bound_waits_on_a_pending_future(any_client, api, gate, call):
    gated, _ = gate
    future = any_client.submit(gated, 1, pure=False)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        call(api, future)
    assert 0.2 < time.monotonic() - started < 10


def test_text_timeouts_let_calls_that_finish_in_time_finish(any_client):
    address = any_client.scheduler_info()["address"]
    with type(any_client)(address, timeout="10s") as client:
        assert client.gather(client.scatter([1, 2])) == [1, 2]
        assert client.gather(client.scatter([3, 4], timeout="5s")) == [3, 4]
        assert list(client.get_executor().map(abs, [-5, -6], timeout="30s")) == [5, 6]


def test_gather_timeout_takes_text_too(client, gate):
    gated, _ = gate
    with pytest.raises(TimeoutError):
        client.gather([client.submit(gated, 1, pure=False)], timeout="300ms")


def test_a_timeout_that_is_not_a_duration_is_a_value_error_naming_it(client):
    from scatter_magics import Client, as_completed, wait

    future = client.submit(abs, -1, pure=False)
    for call in (lambda: future.result(timeout="soon"), lambda: wait([future], timeout="soon"),
                 lambda: client.scatter([1], timeout="soon"),
                 lambda: as_completed([future], timeout="soon"),
                 lambda: Client(client.scheduler_address, timeout="soon")):
        with pytest.raises(ValueError, match="'soon' is not a duration"):
            call()
    assert future.result(timeout=30) == 1  # the client is still fine


@pytest.mark.parametrize("timeout", [0.3, "300ms"])
def test_a_server_that_never_answers_times_out_saying_so(timeout):
    from scatter_magics import Client

    with socket.socket() as silent:  # accepts (in the kernel's backlog), never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(TimeoutError, match=f"{address} .*handshake within 0.3 s"):
            Client(address, timeout=timeout, secret="not-needed")
