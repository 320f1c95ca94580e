"""``wait`` as Dask's: awaitable on an asynchronous client, and refusing what it cannot
do (``return_when`` other than ``ALL_COMPLETED``/``FIRST_COMPLETED``, futures given one
by one). Each test passes with a scatter_magics ``Client`` and a ``distributed.Client``.
"""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.timeout(120)


def test_wait_is_awaitable_on_an_asynchronous_client(any_client, api):
    address = any_client.scheduler_info()["address"]

    async def main():
        async with type(any_client)(address, asynchronous=True) as client:
            future = client.submit(abs, -3, pure=False)
            done, not_done = await api.wait([future], timeout="30s")
            assert done == {future} and not not_done
            return await future

    assert asyncio.run(asyncio.wait_for(main(), 60)) == 3


@pytest.mark.parametrize("return_when", ["FIRST_EXCEPTION", "ANY"])
def test_wait_refuses_what_it_cannot_wait_for(any_client, api, return_when):
    future = any_client.submit(abs, -1, pure=False)
    with pytest.raises(NotImplementedError, match="ALL_COMPLETED"):
        api.wait([future], return_when=return_when)


def test_wait_given_futures_one_by_one_says_it_takes_a_list(any_client, api):
    x, y = any_client.submit(abs, -1, pure=False), any_client.submit(abs, -2, pure=False)
    with pytest.raises(TypeError, match="list"):
        api.wait(x, y)
