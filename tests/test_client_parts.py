"""The parts a Client is made of, each alone: References, EventStream, Gathering,
DoneCallbacks (engine/client/). No cluster: fake links and loops stand in for the rest."""

from __future__ import annotations

import asyncio
import logging
import threading
import types

import pytest

from scatter_magics.engine.client.callbacks import DoneCallbacks
from scatter_magics.engine.client.events import EventStream
from scatter_magics.engine.client.future import FutureState
from scatter_magics.engine.client.gather import Gathering
from scatter_magics.engine.client.references import RELEASE_BATCH_DELAY, References
from scatter_magics.engine.wire.loop import LoopThread
from scatter_magics.engine.wire.serialize import serialize
from scatter_magics.errors import ClientClosedError, FutureLostError
from scatter_magics.progress_callback import no_progress
from scatter_magics.structure import SKIP

pytestmark = pytest.mark.timeout(60)


class Timers:
    """A loop's ``call_later``, run by hand."""

    def __init__(self):
        self.due: list = []

    def call_later(self, delay, callback, *args):
        self.due.append((delay, callback, args))

    def run(self) -> None:
        due, self.due = self.due, []
        for _, callback, args in due:
            callback(*args)


class FakeLink:
    def __init__(self, replies: dict | None = None):
        self.replies = replies or {}
        self.sent: list[dict] = []
        self.requests: list[dict] = []
        self.closed = False

    async def request(self, msg: dict):
        self.requests.append(msg)
        reply = self.replies[msg["op"]]
        return reply(msg) if callable(reply) else reply

    def send(self, msg: dict) -> None:
        self.sent.append(msg)


@pytest.fixture
def loop_thread():
    thread = LoopThread("test-parts")
    yield thread
    thread.stop()


# ------------------------------------------------------------ References ---

def started_refs(in_flight=lambda key: False):
    refs, timers, released = References(), Timers(), []
    refs.start(timers, in_flight, released.append)
    return refs, timers, released


def test_the_last_dropped_reference_releases_its_key_in_one_batch():
    refs, timers, released = started_refs()
    state = refs.track("x")
    assert refs.track("x") is state and refs.track_many(["x", "y"])[0] is state
    for key in ("x", "x", "y"):
        refs.untrack(key)
    assert [delay for delay, _, _ in timers.due] == [RELEASE_BATCH_DELAY]  # one wake per batch
    timers.run()
    assert released == [["y"]] and refs.get("x") is state  # x is still held once
    refs.untrack("x")
    timers.run()
    assert released == [["y"], ["x"]] and refs.get("x") is None


def test_a_key_still_in_flight_is_released_after_it_lands():
    landed = threading.Event()
    refs, timers, released = started_refs(in_flight=lambda key: not landed.is_set())
    refs.track("x")
    refs.untrack("x")
    timers.run()
    assert released == [] and len(timers.due) == 1  # held back, and tried again later
    landed.set()
    timers.run()
    assert released == [["x"]]


def test_a_failed_key_tracked_again_starts_afresh():
    refs, _, _ = started_refs()
    state = refs.track("x")
    state.lose()
    assert refs.track("x") is not state and refs.get("x").status == "pending"
    given = FutureState("y", "finished")
    assert refs.track("y", given) is given


def test_key_updates_move_the_state():
    refs, _, _ = started_refs()
    state = refs.track("x")
    refs.apply({"key": "x", "status": "finished", "type": "int"})
    assert state.status == "finished" and state.type == "int"
    refs.apply({"key": "x", "status": "pending"})
    assert state.status == "pending"
    refs.apply({"key": "x", "status": "error", "exception": KeyError("k"), "traceback": "tb"})
    assert isinstance(state.exception, KeyError) and state.traceback == "tb"
    refs.apply({"key": "unknown", "status": "finished", "type": "int"})  # ignored


def test_closing_cancels_what_is_not_done_and_stops_releasing():
    refs, timers, released = started_refs()
    pending, finished = refs.track("p"), refs.track("f")
    finished.finish("int")
    refs.close()
    assert pending.status == "cancelled" and finished.status == "finished"
    refs.untrack("p")
    assert timers.due == []


def test_drops_before_start_are_only_noted():
    refs = References()
    refs.track_many(["x", "y"])
    refs.untrack("x")  # no loop to wake yet: no error
    timers, released = Timers(), []
    refs.start(timers, lambda key: False, released.append)
    refs.untrack("y")  # the first batch after start takes the earlier drops along
    timers.run()
    assert released == [["x", "y"]]


# ------------------------------------------------------------ EventStream ---

def test_subscriptions_get_a_snapshot_then_batches_until_closed(loop_thread):
    link = FakeLink({"subscribe": [{"event": "snapshot"}]})
    stream = EventStream()
    stream.start(loop_thread, link)
    seen, other = [], []
    first = stream.subscribe(seen.append)
    second = stream.subscribe(other.append)
    assert seen == [[{"event": "snapshot"}]]
    loop_thread.call(stream.publish, [{"event": "key"}])
    assert seen[-1] == other[-1] == [{"event": "key"}]
    first.close()
    loop_thread.call(stream.publish, [{"event": "after"}])
    assert seen[-1] == [{"event": "key"}] and other[-1] == [{"event": "after"}]
    assert link.sent == []  # a subscription is left: the scheduler keeps sending
    second.close()
    assert link.sent == [{"op": "unsubscribe"}]


def test_a_failing_callback_is_logged_and_the_others_still_hear(loop_thread, caplog):
    stream = EventStream()
    stream.start(loop_thread, FakeLink({"subscribe": []}))
    seen = []

    def broken(batch):
        if batch:
            raise RuntimeError("broken callback")
    stream.subscribe(broken)
    stream.subscribe(seen.append)
    with caplog.at_level(logging.ERROR):
        loop_thread.call(stream.publish, [{"event": "key"}])
    assert seen[-1] == [{"event": "key"}]
    assert any("event callback" in r.getMessage() for r in caplog.records)


def test_closing_the_stream_says_so_and_later_unsubscribes_are_no_ops(loop_thread):
    link = FakeLink({"subscribe": []})
    stream = EventStream()
    stream.start(loop_thread, link)
    seen = []
    subscription = stream.subscribe(seen.append)
    loop_thread.call(stream.close)
    assert seen[-1] == [{"event": "closed"}] and stream.closed
    subscription.close()
    assert link.sent == []


def test_unsubscribing_after_the_loop_stopped_is_a_no_op(loop_thread):
    stream = EventStream()
    stream.start(loop_thread, FakeLink({"subscribe": []}))
    subscription = stream.subscribe(print)
    loop_thread.stop()  # as when the cluster owning the loop was closed first
    subscription.close()


# ------------------------------------------------------------ Gathering ---

def test_gathering_answers_local_copies_and_skips_or_raises_failures(loop_thread):
    link = FakeLink({"gather": lambda msg: {k: serialize(k.upper()) for k in msg["keys"]}})
    gathering = Gathering(link, workers=None, view_of=None)
    local, remote, failed = (FutureState(k) for k in ("local", "remote", "failed"))
    local.finish("str", serialize("mine").header)
    remote.finish("str")
    failed.lose()
    states = {"local": local, "remote": remote, "failed": failed}
    serialized = loop_thread.sync(gathering.read(states, "skip", False, no_progress))
    assert gathering.values(serialized) == {"local": "mine", "remote": "REMOTE", "failed": SKIP}
    assert link.requests == [{"op": "gather", "keys": ["remote"]}]
    with pytest.raises(FutureLostError):
        loop_thread.sync(gathering.read(states, "raise", False, no_progress))


def test_gathering_waits_for_pending_keys_and_reads_again_after_a_recompute(loop_thread):
    state = FutureState("k")
    reads = []

    def gather(msg):
        reads.append(msg["keys"])
        if len(reads) == 1:  # its holder died mid-read; the key is being recomputed
            state.reset()
            loop_thread.loop.call_later(0.01, state.finish, "str")
            raise FutureLostError("holder died")
        return {"k": serialize("recomputed")}

    gathering = Gathering(FakeLink({"gather": gather}), workers=None, view_of=None)
    loop_thread.call_later(0.01, state.finish, "str")
    serialized = loop_thread.sync(gathering.read({"k": state}, "raise", False, no_progress))
    assert gathering.values(serialized) == {"k": "recomputed"} and reads == [["k"], ["k"]]


# ------------------------------------------------------------ DoneCallbacks ---

def test_done_callbacks_run_off_the_loop_and_refuse_a_closed_client(loop_thread):
    callbacks = DoneCallbacks()
    client = types.SimpleNamespace(status="running", loop=loop_thread)
    future = types.SimpleNamespace(client=client, _state=FutureState("k"))
    ran = []
    callbacks.add(future, lambda f: ran.append((f, threading.current_thread().name)))
    loop_thread.call(future._state.finish, "int")
    callbacks.close()  # waits for the callback
    assert ran == [(future, ran[0][1])] and ran[0][1].startswith("future-callbacks")
    client.status = "closed"
    with pytest.raises(ClientClosedError, match="closed"):
        callbacks.add(future, print)


def test_settling_a_state_from_the_loop_wakes_an_asyncio_waiter():
    from scatter_magics.engine.client.future import settled

    async def main():
        state = FutureState("k")
        asyncio.get_running_loop().call_later(0.01, state.finish, "int")
        await asyncio.wait_for(settled(state), 10)
        return state.status
    assert asyncio.run(main()) == "finished"
