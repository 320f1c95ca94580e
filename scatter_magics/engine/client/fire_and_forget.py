"""``fire_and_forget``: tasks that run to the end even when nobody keeps their Futures.

The scheduler holds the keys for them (as if another client wanted them) until they
finish or fail, then lets them go; their results are not kept.

>>> fire_and_forget(client.submit(write_report, data))    # doctest: +SKIP
"""

from __future__ import annotations

from ...structure import futures_of


def fire_and_forget(obj) -> None:
    """Run the tasks of the Futures in ``obj`` (one, or nested containers) to the end,
    whether or not their Futures are kept."""
    by_client: dict = {}
    for future in futures_of(obj):
        by_client.setdefault(future.client, []).append(future.key)
    for client, keys in by_client.items():
        # Through the client's door, so it reaches the scheduler after the submit that
        # made the keys and before the release of the Futures dropped after this call.
        client.sync(_hold, client, keys, asynchronous=False)


async def _hold(client, keys: list) -> None:
    await client.scheduler_link.request({"op": "fire-and-forget", "keys": keys})
