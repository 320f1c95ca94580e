"""The scheduler's bookkeeping, driven directly: no sockets, no processes."""

from __future__ import annotations

from concurrent.futures import CancelledError

import pytest

from scatter_magics.engine.scheduler.state import SchedulerState
from scatter_magics.engine.shm.pool import ShmRef
from scatter_magics.engine.wire.serialize import Serialized
from scatter_magics.errors import FutureLostError, NoWorkersError, UnknownWorkerError

A, B = "tcp://127.0.0.1:1001", "tcp://127.0.0.1:1002"


@pytest.fixture
def state() -> SchedulerState:
    s = SchedulerState()
    s.add_worker(A, "worker-0", nthreads=1, memory_limit=100)
    s.add_worker(B, "worker-1", nthreads=3, memory_limit=100)
    return s


def ops(outgoing) -> list:
    return [(dest, msg["op"]) for dest, msg in outgoing]


def test_round_robin_is_weighted_by_threads(state):
    placement = [a for [a] in state.choose_workers(8)]
    assert placement.count(B) == 3 * placement.count(A)


def test_fewer_items_than_threads_go_to_different_workers():
    # Two workers of two threads: two pieces (``--split 2``) land on both, not on one.
    s = SchedulerState()
    s.add_worker(A, "worker-0", nthreads=2, memory_limit=100)
    s.add_worker(B, "worker-1", nthreads=2, memory_limit=100)
    for _ in range(3):  # wherever the round robin stands
        assert {a for [a] in s.choose_workers(2)} == {A, B}
    for n in (1, 3):  # an odd number moves the round robin to the next worker
        s.choose_workers(n)
        assert {a for [a] in s.place({"p0": 10, "p1": 10}).values()} == {A, B}


def test_a_silent_worker_is_unresponsive_and_gets_nothing_until_it_speaks(state):
    state.publishing = True
    state.heard_from(A, now=10.0)
    state.heard_from(B, now=12.0)
    state.check_heartbeats(now=14.0)  # A silent for 4 s > UNRESPONSIVE_AFTER
    assert state.info()["workers"][A]["status"] == "unresponsive"
    assert state.info()["workers"][B]["status"] == "running"
    assert {"event": "worker-status", "address": A, "name": "worker-0",
            "status": "unresponsive"} in state.events
    assert {a for [a] in state.choose_workers(8)} == {B}
    assert state.choose_workers(2, broadcast=True) == [[B], [B]]
    with pytest.raises(NoWorkersError, match="unresponsive.*worker-0"):
        state.choose_workers(1, workers=["worker-0"])
    state.update_metrics(A, memory=1, now=14.5)  # a heartbeat: usable again
    assert state.info()["workers"][A]["status"] == "running"
    assert {a for [a] in state.choose_workers(8)} == {A, B}


def test_resolve_workers_by_name_pair_and_address(state):
    assert state.resolve_workers(["worker-1", ("127.0.0.1", 1001), "127.0.0.1:1002"]) == [B, A]
    with pytest.raises(UnknownWorkerError, match="worker-9.*known workers: worker-0"):
        state.resolve_workers("worker-9")


def test_no_workers_is_a_clear_error():
    with pytest.raises(NoWorkersError):
        SchedulerState().choose_workers(1)


def test_task_goes_where_its_largest_input_lives(state):
    state.add_data("c", {"small": [A], "big": [B]}, {"small": 10, "big": 1000}, {})
    out = state.submit("c", "t", task=b"task", deps={"small", "big"}, restrictions=None)
    assert ops(out) == [(("worker", B), "compute")]
    assert out[0][1]["who_has"] == {"small": [A], "big": [B]}


def test_waiting_task_starts_when_its_input_finishes(state):
    [((_, worker), msg)] = state.submit("c", "first", b"t", set(), None)
    assert msg["op"] == "compute"
    assert state.submit("c", "second", b"t", {"first"}, None) == []
    out = state.task_finished(worker, "first", 8, "int")
    assert (("client", "c"), "key-update") in ops(out)
    assert (("worker", worker), "compute") in ops(out)  # next to its input


def test_losing_the_only_holder_asks_its_clients_then_loses_the_key(state):
    state.add_data("c", {"solo": [A], "both": [A, B]}, {}, {})
    assert state.remove_worker(A) == [(("client", "c"), {"op": "resend", "keys": ["solo"]})]
    assert state.keys["solo"].state == "resending"  # its futures still say finished
    assert state.keys["both"].who_has == {B}
    [(dest, msg)] = state.resends.refused("c", {"solo": None})  # no copy there either
    assert state.keys["solo"].state == "lost"
    assert dest == ("client", "c") and msg["status"] == "lost" and "solo" in str(msg["exception"])


def test_release_by_the_last_client_deletes_on_workers(state):
    state.add_data("c1", {"k": [A, B]}, {"k": 5}, {})
    state.add_data("c2", {"k": [A]}, {"k": 5}, {})
    assert state.release("c1", ["k"]) == []
    out = state.release("c2", ["k"])
    assert sorted(ops(out)) == [(("owner", ""), "key-forgotten"), (("worker", A), "delete-keys"),
                                (("worker", B), "delete-keys")]
    assert "k" not in state.keys and state.workers[A].nbytes == 0


def test_events_are_recorded_only_while_publishing(state):
    state.add_data("c", {"quiet": [A]}, {}, {})
    assert state.events == []
    state.publishing = True
    state.add_data("c", {"loud": [A]}, {"loud": 3}, {"loud": "int"})
    assert state.events == [{"event": "key", "key": "loud", "status": "finished",
                             "workers": [A], "nbytes": 3, "type": "int", "processing_on": None}]


def test_a_task_is_running_in_events_once_its_worker_starts_it(state):
    state.publishing = True
    state.submit("c", "t", task=None, deps=set(), restrictions=None)
    where = state.keys["t"].processing_on
    assert state.events[-1]["status"] == "pending"  # queued: on a worker, not started
    state.task_started("tcp://elsewhere:1", "t")  # not where it was sent: ignored
    assert state.events[-1]["status"] == "pending"
    state.task_started(where, "t")
    assert state.events[-1]["status"] == "running" and state.events[-1]["processing_on"] == where
    assert state.tasks.notify(state.keys["t"])[0][1]["status"] == "pending"  # Futures say pending
    state.task_finished(where, "t", 8, "int")
    assert state.events[-1]["status"] == "finished"



def test_a_running_task_whose_worker_dies_is_pending_again_in_events(state):
    state.publishing = True
    state.submit("c", "t", task=None, deps=set(), restrictions=None)
    first = state.keys["t"].processing_on
    state.task_started(first, "t")
    state.remove_worker(first)
    event = state.events[-1]
    assert event["key"] == "t" and event["status"] == "pending"
    assert event["processing_on"] not in (None, first)  # rerun on the other worker


def test_replication_plan_targets_missing_workers(state):
    state.add_data("c", {"k": [A]}, {}, {})
    assert state.replication_plan(["k"], n=None) == {"k": [B]}
    assert state.replication_plan(["k"], n=1) == {}


def test_replicas_beyond_n_are_deleted_from_the_fullest_workers(state):
    state.add_data("c", {"big": [B]}, {"big": 50}, {})
    state.add_data("c", {"k": [A, B]}, {"k": 10}, {})
    out = state.reduce_replicas(["k"], n=1)
    assert out == [(("worker", B), {"op": "delete-keys", "keys": ["k"]})]
    assert state.keys["k"].who_has == {A} and "k" not in state.workers[B].keys
    assert state.workers[B].nbytes == 50
    assert state.reduce_replicas(["k"], n=1) == []


def test_a_replica_a_running_task_reads_is_kept(state):
    state.add_data("c", {"k": [A, B]}, {"k": 10}, {})
    state.submit("c", "t", task=None, deps={"k"}, restrictions=[B])
    assert state.keys["t"].processing_on == B
    state.reduce_replicas(["k"], n=1)
    assert state.keys["k"].who_has == {B}


def test_replicas_a_worker_did_not_store_are_dropped_and_a_last_one_lost(state):
    state.add_data("c", {"both": [A, B], "only": [A]}, {"both": 5, "only": 7}, {})
    out = state.drop_replicas(A, ["both", "only"], "refused")
    assert state.keys["both"].who_has == {B} and state.keys["both"].state == "memory"
    assert state.keys["only"].state == "lost" and "refused" in str(state.keys["only"].exception)
    assert (("client", "c"), "key-update") in ops(out)
    assert state.workers[A].keys == set() and state.workers[A].nbytes == 0


def test_cancel_of_a_key_other_clients_hold_cancels_it_only_for_the_caller(state):
    state.add_data("c1", {"k": [A]}, {}, {})
    state.add_data("c2", {"k": [A]}, {}, {})
    [(dest, msg)] = state.cancel("c1", ["k"])
    assert dest == ("client", "c1") and msg["status"] == "cancelled"
    assert state.keys["k"].state == "memory" and state.keys["k"].wanted_by == {"c2"}
    out = state.cancel("c1", ["k"], force=True)
    assert (("client", "c2"), "key-update") in ops(out) and "k" not in state.keys


def test_a_task_on_a_forgotten_key_is_cancelled_not_lost(state):
    [(dest, msg)] = state.submit("c1", "t", task=None, deps={"gone"}, restrictions=None)
    assert dest == ("client", "c1") and msg["status"] == "cancelled"
    assert isinstance(msg["exception"], CancelledError) and "gone" in str(msg["exception"])


def test_deletes_to_one_worker_merge_without_passing_its_other_messages():
    from scatter_magics.engine.scheduler.outgoing import merge_deletes

    w1, w2 = ("worker", "tcp://a:1"), ("worker", "tcp://b:1")
    first = {"op": "delete-keys", "keys": ["k1"]}
    outgoing = [(w1, first), (w2, {"op": "delete-keys", "keys": ["k2"]}),
                (w1, {"op": "delete-keys", "keys": ["k3"]}), (w1, {"op": "compute", "key": "t"}),
                (w1, {"op": "delete-keys", "keys": ["k4"]})]
    assert merge_deletes(outgoing) == [
        (w1, {"op": "delete-keys", "keys": ["k1", "k3"]}),
        (w2, {"op": "delete-keys", "keys": ["k2"]}),
        (w1, {"op": "compute", "key": "t"}),
        (w1, {"op": "delete-keys", "keys": ["k4"]})]
    assert first == {"op": "delete-keys", "keys": ["k1"]}  # the state's messages are not changed


def test_a_failed_scatter_takes_back_only_what_is_not_recorded(state):
    state.add_data("c", {"held": [A]}, {"held": 8}, {"held": "int"})
    sent = {A: ["held", "new"], B: ["held"], "tcp://127.0.0.1:9": ["gone"]}
    assert state.unrecorded(sent) == {A: ["new"], B: ["held"], "tcp://127.0.0.1:9": ["gone"]}


def test_placement_with_room_everywhere_is_round_robin_by_threads(state):
    sizes = {f"k{i}": 10 for i in range(8)}
    first, second = state.place(sizes), state.place({"next": 10})
    assert [a for [a] in first.values()] == [A, B, B, B, A, B, B, B]
    assert second == {"next": [A]}  # the round-robin goes on from where it stopped
    assert state.place({"all": 10}, broadcast=True) == {"all": [A, B]}


def test_a_standing_broadcast_reaches_workers_that_join_later(state):
    state.add_data("c", {"x": [A, B]}, {"x": 10}, {"x": "int"}, broadcast=True)
    state.add_data("c", {"y": [A]}, {"y": 10}, {"y": "int"})  # a plain scatter stays put
    C = "tcp://127.0.0.1:1003"
    out = state.add_worker(C, "worker-2", nthreads=1, memory_limit=100, replaces="worker-0")
    assert out == [(("worker", C), {"op": "acquire", "who_has": {"x": [A, B]}})]
    state.acquired(C, {"x": 10}, [])
    assert state.who_has(["x", "y"]) == {"x": [A, B, C], "y": [A]}


def test_a_lost_result_is_recomputed_when_its_inputs_remain(state):
    state.add_data("c", {"x": [A, B]}, {"x": 10}, {"x": "int"})
    state.add_data("c", {"s": [A]}, {"s": 10}, {"s": "int"})
    [((_, ran_on), compute)] = state.submit("c", "y", "task", {"x"}, ["worker-0"])
    assert ran_on == A and compute["op"] == "compute"
    state.keys["y"].restrictions = set()  # (only to choose where it first ran)
    state.task_finished(A, "y", 10, "int")
    assert state.who_has(["y"]) == {"y": [A]}
    out = state.remove_worker(A, "was killed by SIGKILL")
    assert ((("client", "c"), {"op": "key-update", "key": "y", "status": "pending", "type": "int",
                               "nbytes": None, "exception": None, "traceback": None}) in out)
    assert ("worker", B) in [dest for dest, msg in out if msg["op"] == "compute"]
    assert (("client", "c"), {"op": "resend", "keys": ["s"]}) in out
    state.resends.refused("c", {"s": None})  # the client had no copy of it
    lost = state.keys["s"].exception  # scattered, held only by A: lost, and says what to do
    assert state.keys["s"].state == "lost"
    assert "'s'" in str(lost) and "worker-0" in str(lost) and "scatter it again" in str(lost)


# Issue 19, item 9: "scheduler failed on 'release-keys'" with "AttributeError: 'frozenset'
# object has no attribute 'discard'": forgetting a task unlinked it from each input's
# ``dependents``, which is the shared empty frozenset until an edge is linked, and two
# edges never are.

def test_releasing_a_task_that_failed_at_submit_keeps_its_other_inputs(state):
    state.add_data("c", {"x": [A]}, {"x": 8}, {"x": "int"})
    # It fails at its first input: the inputs after it were never linked to it.
    [(_, msg)] = state.submit("c", "t", task=None, deps=["gone", "x"], restrictions=None)
    assert msg["status"] == "cancelled"
    assert state.release("c", ["t"]) == [(("owner", ""), {"op": "key-forgotten", "key": "t"})]
    assert "t" not in state.keys and state.keys["x"].state == "memory"  # c still holds x


def test_releasing_a_task_whose_lost_input_was_scattered_again(state):
    state.add_data("c", {"x": [A]}, {"x": 8}, {"x": "int"})
    state.submit("c", "t", task=None, deps=["x"], restrictions=[B])
    state.task_finished(B, "t", 8, "int")
    state.remove_worker(A)  # x, held only there, is lost; t stays on B
    state.add_data("c", {"x": [B]}, {"x": 8}, {"x": "int"})  # the same key: a new record
    out = state.release("c", ["t"])
    assert (("worker", B), {"op": "delete-keys", "keys": ["t"]}) in out
    assert "t" not in state.keys and state.keys["x"].state == "memory"


def test_an_input_scattered_again_stays_while_a_recomputed_task_reads_it(state):
    C = "tcp://127.0.0.1:1003"
    state.add_worker(C, "worker-2", nthreads=1, memory_limit=100)
    state.add_data("c", {"x": [A]}, {"x": 8}, {"x": "int"})
    state.submit("c", "t", task=b"task", deps=["x"], restrictions=[B])
    state.keys["t"].restrictions = set()  # (only to choose where it first ran)
    state.task_finished(B, "t", 8, "int")
    state.remove_worker(A)  # x is lost
    state.add_data("c", {"x": [C]}, {"x": 8}, {"x": "int"})  # and scattered again
    out = state.remove_worker(B)  # t is recomputed, from the new x
    assert (("worker", C), "compute") in ops(out)
    assert state.release("c", ["x"]) == []  # t reads it: it stays
    assert state.keys["x"].who_has == {C}


# ------------------------------------------------------------ the parts, alone ---

def test_the_replica_book_keeps_both_sides_in_step():
    from scatter_magics.engine.scheduler.events import EventLog
    from scatter_magics.engine.scheduler.records import WorkerInfo
    from scatter_magics.engine.scheduler.replicas import ReplicaBook

    workers = {a: WorkerInfo(a, name, 1, 100) for a, name in ((A, "worker-0"), (B, "worker-1"))}
    keys: dict = {}
    book = ReplicaBook(workers, keys, EventLog())
    assert book.hold("c", {"x": [A, B], "y": [A]}, {"x": 10, "y": 5}, {}) == []
    book.add(keys["y"], B)
    book.add(keys["y"], B)  # twice: counted once
    assert (workers[A].keys, workers[A].nbytes) == ({"x", "y"}, 15)
    assert (workers[B].keys, workers[B].nbytes) == ({"x", "y"}, 15)
    assert book.drop(keys["x"], B, delete=False) == []
    assert (workers[B].nbytes, keys["x"].who_has) == (5, {A})
    assert book.worker_left(workers.pop(A)) == [keys["x"]]  # its last copy was there
    assert keys["y"].who_has == {B}
    assert book.drop_all(keys["y"]) == [(("worker", B), {"op": "delete-keys", "keys": ["y"]})]
    assert (workers[B].keys, workers[B].nbytes, keys["y"].who_has) == (set(), 0, set())


def test_the_worker_book_says_who_woke_up_and_the_state_tops_them_up(state):
    state.add_data("c", {"x": [A]}, {"x": 10}, {"x": "int"}, broadcast=True)
    state.acquired(B, {"x": 10}, [])
    state.check_heartbeats(now=10.0)  # both silent since 0
    assert state.worker_book.heard_from(A, now=10.5) is state.workers[A]
    assert state.worker_book.heard_from(A, now=11.0) is None  # already running
    state.drop_replicas(B, ["x"], "refused")  # B lacks the standing x now
    assert state.heard_from(B, now=11.0) == [(("worker", B), {"op": "acquire",
                                                              "who_has": {"x": [A]}})]


# ------------------------------------------------------------ issue 20: data that survives ---

def shared_copy(name: str = "seg-1") -> Serialized:
    return Serialized(b"header", [ShmRef(name, 0, 100), memoryview(b"small inline buffer")])


def test_a_lost_shared_memory_key_is_put_on_a_survivor_from_its_copy(state):
    state.add_data("c", {"big": [A]}, {"big": 100}, {"big": "ndarray"}, shared=["big"],
                   copies={"big": shared_copy()})
    out = state.remove_worker(A, "was killed by SIGKILL")
    [(dest, msg)] = [(d, m) for d, m in out if m["op"] == "put-data"]
    assert dest == ("worker", B) and msg["data"]["big"].buffers[0] == ShmRef("seg-1", 0, 100)
    assert type(msg["data"]["big"].buffers[1]) is bytes  # no view of the caller's memory kept
    assert not [m for _, m in out if m["op"] in ("key-update", "resend")]  # nobody hears of it
    assert state.keys["big"].state == "memory" and state.who_has(["big"]) == {"big": [B]}


def test_a_copy_waits_for_a_worker_and_a_replacement_inherits_its_workers(state):
    state.add_data("c", {"big": [A]}, {"big": 100}, {"big": "ndarray"}, shared=["big"],
                   workers=["worker-0"], copies={"big": shared_copy()})
    state.submit("c", "total", "task", {"big"}, None)  # computed on A, then A dies
    out = state.remove_worker(A, "was killed by SIGKILL")
    assert state.keys["big"].state == "resending" and not ops(out)  # B may not hold it
    assert state.keys["total"].state == "waiting"  # the task waits for its input
    out = state.add_worker("tcp://127.0.0.1:1003", "worker-2", 1, 100, replaces="worker-0")
    assert ("worker", "tcp://127.0.0.1:1003") in [d for d, m in out if m["op"] == "put-data"]
    assert ("worker", "tcp://127.0.0.1:1003") in [d for d, m in out if m["op"] == "compute"]
    assert state.keys["big"].state == "memory"


def test_data_a_client_sends_again_is_placed_as_before_and_releases_its_readers(state):
    state.add_data("c", {"x": [A]}, {"x": 8}, {"x": "int"}, broadcast=True, workers=["worker-0"])
    state.submit("c", "y", "task", {"x"}, None)
    assert state.remove_worker(A, "died")[0] == (("client", "c"), {"op": "resend", "keys": ["x"]})
    assert state.resends.targets(["x"]) == {"x": []}  # only worker-0 may hold it
    state.add_worker("tcp://127.0.0.1:1003", "worker-2", 1, 100, replaces="worker-0")
    assert state.resends.targets(["x", "unknown"]) == {"x": ["tcp://127.0.0.1:1003"]}
    out = state.add_data(None, {"x": ["tcp://127.0.0.1:1003"]}, {"x": 8}, {"x": "int"})
    assert ops(out) == [(("worker", "tcp://127.0.0.1:1003"), "compute")]
    assert not state.resends.active and state.keys["x"].state == "memory"
    assert state.resends.refused("c", {"x": None}) == []  # too late: it is held again


def test_the_last_refusal_loses_the_key_with_the_first_reason_given(state):
    state.add_data("c1", {"b": [A]}, {"b": 8}, {"b": "list"})
    state.add_data("c2", {"b": [A]}, {"b": 8}, {"b": "list"})
    out = state.remove_worker(A, "was killed by SIGKILL")
    assert sorted(d for d, m in out if m["op"] == "resend") == [("client", "c1"), ("client", "c2")]
    why = FutureLostError("b changed after it was scattered and its only worker died: "
                          "%scatter b again")
    assert state.resends.refused("c1", {"b": why}) == []  # c2 may still have it
    out = state.forget_client("c2")  # leaving is a refusal
    assert state.keys["b"].state == "lost" and state.keys["b"].exception is why
    assert [(d, m["status"]) for d, m in out if m["op"] == "key-update"] == [
        (("client", "c1"), "lost")]


def test_a_busy_worker_gets_data_only_when_no_other_may(state):
    state.publishing = True
    state.heard_from(A, now=10.0)
    state.heard_from(B, now=13.5)
    state.check_heartbeats(now=14.0, busy={A})  # silent, but its process runs
    assert state.info()["workers"][A]["status"] == "busy"
    assert {"event": "worker-status", "address": A, "name": "worker-0",
            "status": "busy"} in state.events
    assert {a for [a] in state.choose_workers(8)} == {B}
    assert state.choose_workers(1, workers=["worker-0"]) == [[A]]  # it waits for A
    state.check_heartbeats(now=15.0)  # no longer running: frozen
    assert state.info()["workers"][A]["status"] == "unresponsive"
    with pytest.raises(NoWorkersError, match="unresponsive"):
        state.choose_workers(1, workers=["worker-0"])


def test_published_keys_outlive_their_client_until_unpublished(state):
    state.add_data("c1", {"x": [A], "y": [B]}, {"x": 8, "y": 4}, {"x": "int", "y": "int"})
    assert state.datasets.publish({"df": {"data": b"pickle", "keys": ["x", "y"]}}, False) == []
    with pytest.raises(KeyError, match="Dataset df already exists"):
        state.datasets.publish({"df": {"data": b"other", "keys": []}}, override=False)
    assert state.forget_client("c1") == []
    assert state.datasets.summaries() == [{"name": "df", "nbytes": 12, "keys": 2,
                                           "workers": ["worker-0", "worker-1"]}]
    [got] = state.datasets.get("c2", ["df"])
    assert got["data"] == b"pickle" and got["states"]["x"]["status"] == "finished"
    assert state.datasets.get("c2", ["nothing"]) == [None]
    # Published again with y only: x is held by c2 (it got the dataset), so nothing goes.
    assert state.datasets.publish({"df": {"data": b"v2", "keys": ["y"]}}, override=True) == []
    state.release("c2", ["x", "y"])
    assert "x" not in state.keys and "y" in state.keys
    out = state.datasets.unpublish(["df", "never-published"])
    assert (("worker", B), {"op": "delete-keys", "keys": ["y"]}) in out
    assert state.datasets.names() == [] and "y" not in state.keys




# ---------------------------------------------------------------- task options (issue 19) ---

def sent_computes(outgoing) -> list:
    return [(dest[1], msg["key"]) for dest, msg in outgoing if msg["op"] == "compute"]


def test_a_task_with_retries_left_runs_again_then_fails(state):
    [(address, _)] = sent_computes(state.submit("c", "t", b"task", set(), None, {"retries": 1}))
    again = state.task_erred(address, "t", ValueError("once"), "tb")
    [(address, key)] = sent_computes(again)  # sent again, nobody told of the error
    assert key == "t" and not [m for _, m in again if m["op"] == "key-update"]
    failed = state.task_erred(address, "t", ValueError("twice"), "tb")
    assert [m["status"] for _, m in failed if m["op"] == "key-update"] == ["error"]


def test_retry_runs_a_failed_task_and_its_failed_input_again(state):
    [(a1, _)] = sent_computes(state.submit("c", "in", b"task", set(), None))
    state.submit("c", "out", b"task", {"in"}, None)
    state.task_erred(a1, "in", ValueError("bad"), "tb")
    assert state.keys["out"].state == "error"
    out = state.retry(["out"])
    assert sent_computes(out)[0][1] == "in"  # its input first; "out" waits for it
    assert state.keys["out"].state == "waiting" and state.keys["out"].waiting_on == {"in"}
    assert [m["status"] for _, m in out if m["op"] == "key-update"] == ["pending", "pending"]


def test_a_task_needing_resources_waits_for_a_worker_that_declared_them(state):
    assert sent_computes(state.submit("c", "t", b"task", set(), None, {"resources": {"GPU": 1}})) == []
    out = state.add_worker("tcp://127.0.0.1:1003", "gpu", 1, 100, resources={"GPU": 2})
    [(address, _)] = sent_computes(out)
    assert address == "tcp://127.0.0.1:1003"
    compute = next(m for _, m in out if m["op"] == "compute")
    assert compute["resources"] == {"GPU": 1}


def test_loose_restrictions_to_a_worker_that_is_gone_run_anywhere(state):
    with pytest.raises(UnknownWorkerError):
        state.submit("c", "strict", b"task", set(), ["tcp://127.0.0.1:9"])
    [(address, _)] = sent_computes(state.submit("c", "loose", b"task", set(), ["tcp://127.0.0.1:9"],
                                           {"loose": True}))
    assert address in (A, B)
    [(address, _)] = sent_computes(state.submit("c", "kept", b"task", set(), [A], {"loose": True}))
    assert address == A  # a restriction that can be kept is kept


def test_waiting_tasks_go_out_by_priority_when_a_worker_comes(state):
    state.remove_worker(A)
    state.remove_worker(B)
    for key, priority in [("low", 0), ("high", 5), ("mid", 1)]:
        state.submit("c", key, b"task", set(), None, {"priority": priority})
    out = state.add_worker(A, "worker-0", 1, 100)
    assert [key for _, key in sent_computes(out)] == ["high", "mid", "low"]
    assert [m["priority"][0] for _, m in out if m["op"] == "compute"] == [-5, -1, 0]


def test_submits_apart_by_more_than_fifo_timeout_are_later_batches(state):
    state.submit("c", "a", b"task", set(), None, now=0.0)
    state.submit("c", "b", b"task", set(), None, now=0.05)
    state.submit("c", "c", b"task", set(), None, now=1.0)
    state.submit("c", "d", b"task", set(), None, {"fifo_timeout": 5.0}, now=2.0)
    generations = [state.keys[k].options.priority[1] for k in "abcd"]
    assert generations[0] == generations[1] < generations[2] == generations[3]


def test_fire_and_forget_keeps_a_task_until_it_ran(state):
    [(address, _)] = sent_computes(state.submit("c", "t", b"task", set(), None))
    state.fire_and_forget(["t"])
    assert state.release("c", ["t"]) == [] and "t" in state.keys  # still wanted
    state.task_finished(address, "t", 8, "int")
    assert "t" not in state.keys  # ran, then let go


def test_a_seceded_task_holds_no_thread(state):
    [(address, _)] = sent_computes(state.submit("c", "t", b"task", set(), [A]))
    ws = state.workers[A]
    assert ws.threads_in_use() == 1 and ws.stack_time() > 0
    state.task_seceded(A, "t")  # its thread is free: no queue there for placement, stealing
    assert ws.threads_in_use() == 0 and ws.stack_time() == 0
    state.task_finished(A, "t", 8, "int")
    assert ws.long_running == set() and ws.processing == {} and ws.busy == 0


def test_cancel_everything_cancels_every_key_for_every_client(state):
    state.add_data("c1", {"x": [A]}, {"x": 8}, {"x": "int"})
    state.submit("c2", "t", b"task", {"x"}, None)
    out = state.cancel_everything()
    assert state.keys == {}
    assert {(dest, m["key"]) for dest, m in out if m["op"] == "key-update"} >= {
        (("client", "c1"), "x"), (("client", "c2"), "t")}


def test_a_wait_the_client_gave_up_ends_and_takes_no_lease():
    import asyncio

    from scatter_magics.engine.scheduler.server import Scheduler

    async def main():
        scheduler = Scheduler("secret")
        semaphores = scheduler.semaphores
        take = {"name": "l", "lease": "first", "max_leases": 1}
        assert await semaphores.acquire("c1", take)
        waiting = asyncio.ensure_future(semaphores.acquire(
            "c2", {"name": "l", "lease": "second", "max_leases": 1, "wait_id": "w"}))
        await asyncio.sleep(0)  # (let it start waiting)
        scheduler.waits.cancel("c2", {"wait_id": "w"})  # what a remote client sends on Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert semaphores.release("c1", {"name": "l", "lease": "first"})
        assert semaphores.value("c3", {"name": "l"}) == 0  # nobody holds it for c2
        assert await semaphores.acquire("c3", {"name": "l", "lease": "third", "max_leases": 1,
                                               "timeout": 1})
        semaphores.client_left("c3")
        assert semaphores.value("c1", {"name": "l"}) == 0
        scheduler.server.close()

    asyncio.run(main())

# ------------------------------------------------------------ what the views show ---

def test_the_overview_is_the_summary_and_a_lost_key_holds_no_bytes(state):
    state.add_data("c", {"x": [A, B], "y": [A]}, {"x": 10, "y": 1000}, {})
    assert state.overview()["keys"] == {"count": 2, "by_status": {"finished": 2},
                                        "nbytes": 1010, "replicas": 3, "replica_nbytes": 1020,
                                        "names": 2}
    state.remove_worker(A, "was killed by SIGKILL")  # y's only holder: c is asked for it
    assert state.overview()["keys"]["by_status"] == {"finished": 2}  # on its way back
    state.resends.refused("c", {"y": None})  # c kept no copy of it: lost
    overview = state.overview()
    assert overview["keys"]["by_status"] == {"finished": 1, "lost": 1}
    assert overview["keys"]["nbytes"] == 10 and [w["name"] for w in overview["workers"]] == [
        "worker-1"]
    [lost] = state.key_list(0, 10, status="lost")["keys"]
    assert lost["key"] == "y" and lost["died"] == ["worker-0"] and lost["name"] == "y"


def test_heartbeats_feed_the_memory_history_a_sample_a_second(state):
    state.add_data("c", {"x": [A]}, {"x": 64}, {})
    state.update_metrics(A, memory=5000, now=1.0)
    state.history.tick(100.0)  # B has not reported yet: not drawn at 0, left out
    state.update_metrics(A, memory=6000, now=2.0)
    state.update_metrics(B, memory=7000, now=2.0)
    state.history.tick(101.0)
    state.remove_worker(B)
    state.history.tick(102.0)
    history = state.history.as_dict()
    zero, one = history["workers"]
    assert history["times"] == [100.0, 101.0, 102.0]
    assert zero["memory"] == [5000, 6000, 6000] and zero["nbytes"] == [64, 64, 64]
    assert one["name"] == "worker-1" and one["memory"] == [None, 7000, None]  # it left


def test_an_ended_task_is_in_the_task_stream_and_in_its_key_event(state):
    state.publishing = True
    state.submit("c", "f-1", task=b"task", deps=set(), restrictions=None)
    [address] = [a for a, ws in state.workers.items() if ws.processing]
    timing = {"start": 10.0, "stop": 10.5, "thread": 1, "transfers": [], "function": "inc"}
    state.task_finished(address, "f-1", 28, "int", timing=timing)
    [run] = state.task_stream.since(0, now=11.0)["tasks"]
    assert (run["key"], run["name"], run["worker"], run["thread"]) == ("f-1", "inc", address, 1)
    assert [e["task"] for e in state.events if e.get("task")] == [run]
    state.submit("c", "g-1", task=b"task", deps=set(), restrictions=None)
    state.task_erred(state.keys["g-1"].processing_on, "g-1", ValueError("x"), "",
                     dict(timing, function="g"))
    assert state.task_stream.since(1, now=11.0)["tasks"][0]["status"] == "error"
    state.task_finished(address, "h-1", 8, "int")  # no timing (an older worker): no record
    assert state.task_stream.index == 2


def test_the_overview_counts_a_split_value_once_by_name(state):
    """The sidebar's "names": the pieces df[0/4] … df[3/4] are one value, df."""
    pieces = {f"df[{i}/4]-{i:032x}": [A if i % 2 else B] for i in range(4)}
    state.add_data("c", {**pieces, "x-" + "f" * 32: [A]}, dict.fromkeys([*pieces, "x-" + "f" * 32], 8),
                   {})
    assert state.overview()["keys"]["count"] == 5 and state.overview()["keys"]["names"] == 2


# ------------------------------------------------------ placement and stealing ---

def five_workers() -> tuple[SchedulerState, list[str]]:
    s = SchedulerState()
    addresses = [f"tcp://127.0.0.1:{2000 + i}" for i in range(5)]
    for i, address in enumerate(addresses):
        s.add_worker(address, f"worker-{i}", nthreads=4, memory_limit=0)
    return s, addresses


def computes(outgoing) -> dict:
    """``{key: worker address}`` of the compute messages in ``outgoing``."""
    return {msg["key"]: dest[1] for dest, msg in outgoing if msg["op"] == "compute"}


def test_tasks_reading_a_small_input_spread_over_every_idle_worker():
    # Issue 19's case: 40 tasks, each reading one small input held by worker 0, on
    # 5 workers x 4 threads: a copy of a few bytes beats a queue on worker 0.
    s, addresses = five_workers()
    s.add_data("c", {"x": [addresses[0]]}, {"x": 28}, {"x": "int"})
    placed = {}
    for i in range(40):
        placed.update(computes(s.submit("c", f"slow-{i}", b"t", {"x"}, None)))
    assert sorted(list(placed.values()).count(a) for a in addresses) == [8] * 5


def test_tasks_stay_with_a_large_input_while_its_queue_is_shorter_than_the_copy():
    s, addresses = five_workers()
    s.add_data("c", {"big": [addresses[0]]}, {"big": 2 * 10**9}, {"big": "ndarray"})
    placed = {}
    for i in range(12):  # 12 tasks of ~0.5 s on 4 threads: 1.5 s queued; the copy ~8 s
        placed.update(computes(s.submit("c", f"use-{i}", b"t", {"big"}, None)))
    assert set(placed.values()) == {addresses[0]}


def test_tasks_stay_with_a_large_input_in_shared_memory_placed_and_when_others_idle():
    s, addresses = five_workers()
    s.add_data("c", {"big": [addresses[0]]}, {"big": 2 * 10**9}, {"big": "ndarray"},
               shared=["big"])
    placed = {}
    for i in range(20):
        placed.update(computes(s.submit("c", f"use-{i}", b"t", {"big"}, None)))
    assert set(placed.values()) == {addresses[0]}  # where who_has says the data is
    assert s.balance() == []  # idle workers do not take them: large inputs stay put
    s.add_data("c", {"big": [addresses[1]]}, {"big": 2 * 10**9}, {"big": "ndarray"},
               shared=["big"])  # a second holder may take some
    thieves = {m["key"] for _, m in s.balance() if m["op"] == "steal"}
    assert thieves and all(s.stealing.in_flight[k].thief == addresses[1] for k in thieves)


def test_a_burst_of_tasks_over_inputs_split_across_workers_runs_each_where_its_input_is():
    # notebooks/broadcast-model.ipynb: 8 batches of 4 MB, 4 on each of 2 workers, scored
    # by 8 short tasks submitted at once (their durations not known yet).
    s = SchedulerState()
    s.add_worker(A, "worker-0", nthreads=1, memory_limit=0)
    s.add_worker(B, "worker-1", nthreads=1, memory_limit=0)
    holders = [A] * 4 + [B] * 4
    batches = [f"batch-{i}" for i in range(8)]
    s.add_data("c", {b: [h] for b, h in zip(batches, holders)},
               dict.fromkeys(batches, 4_096_122), {}, shared=batches)
    placed = {}
    for i in range(8):
        placed.update(computes(s.submit("c", f"score-{i}", b"t", {f"batch-{i}"}, None)))
    assert [placed[f"score-{i}"] for i in range(8)] == holders


def test_a_worker_without_room_for_the_inputs_is_passed_over():
    s = SchedulerState()
    s.add_worker(A, "worker-0", nthreads=1, memory_limit=0)
    s.add_worker(B, "worker-1", nthreads=1, memory_limit=1000)
    s.add_data("c", {"x": [A]}, {"x": 5000}, {"x": "bytes"})
    placed = {}
    for i in range(3):  # worker-0 gets busier and busier, but worker-1 cannot hold x
        placed.update(computes(s.submit("c", f"use-{i}", b"t", {"x"}, None)))
    assert set(placed.values()) == {A}


def queued_on_one_worker(n: int, restrictions=None) -> SchedulerState:
    s = SchedulerState()
    s.add_worker(A, "worker-0", nthreads=1, memory_limit=0)
    for i in range(n):
        assert computes(s.submit("c", f"slow-{i}", b"t", set(), restrictions)) == {f"slow-{i}": A}
    return s


def test_a_worker_that_joins_steals_queued_tasks_and_runs_them_once_given_up():
    s = queued_on_one_worker(4)
    out = s.add_worker(B, "worker-1", nthreads=1, memory_limit=0)
    steals = [msg["key"] for dest, msg in out if msg["op"] == "steal" and dest == ("worker", A)]
    assert steals == ["slow-3", "slow-2"]  # the last sent: they would start last on A
    assert computes(s.steal_response(A, "slow-3", withdrawn=True, fetched={})) == {"slow-3": B}
    assert s.keys["slow-3"].processing_on == B
    assert list(s.workers[A].processing) == ["slow-0", "slow-1", "slow-2"]
    assert list(s.workers[B].processing) == ["slow-3"]
    # A kept slow-2 (a thread had it): it stays, and another is asked for instead.
    out = s.steal_response(A, "slow-2", withdrawn=False, fetched={})
    assert [(dest, m["op"], m["key"]) for dest, m in out] == [(("worker", A), "steal", "slow-1")]
    assert s.keys["slow-2"].processing_on == A
    assert computes(s.steal_response(A, "slow-1", withdrawn=True, fetched={})) == {"slow-1": B}
    assert s.stealing.in_flight == {}
    assert s.balance() == []  # slow-2 is not asked for again; slow-0 would start no sooner
    # The result comes from whichever worker ran it, as usual.
    [(dest, msg)] = s.task_finished(B, "slow-3", 28, "int", duration=0.5)
    assert (dest, msg["status"]) == (("client", "c"), "finished")


def test_stealing_never_moves_a_task_off_its_workers_restriction():
    s = queued_on_one_worker(4, restrictions=[A])
    out = s.add_worker(B, "worker-1", nthreads=1, memory_limit=0)
    assert [m for _, m in out if m["op"] == "steal"] == []
    assert s.balance() == []


def test_tasks_known_to_be_quick_are_not_worth_a_steal():
    s = SchedulerState()
    s.add_worker(A, "worker-0", nthreads=1, memory_limit=0)
    s.durations.record("inc-0", 1e-5)  # learned: inc takes 10 µs
    for i in range(50):
        s.submit("c", f"inc-{i}", b"t", set(), None)
    out = s.add_worker(B, "worker-1", nthreads=1, memory_limit=0)
    assert [m for _, m in out if m["op"] == "steal"] == []


def test_given_up_inputs_are_replicas_and_a_gone_thief_means_placing_again():
    s = queued_on_one_worker(3)
    s.add_data("c", {"x": [A]}, {"x": 8}, {"x": "int"})
    s.add_worker(B, "worker-1", nthreads=1, memory_limit=0)  # steals slow-2
    s.remove_worker(B, "was killed by SIGKILL")
    s.add_worker("tcp://127.0.0.1:1003", "worker-2", nthreads=1, memory_limit=0)
    moved = computes(s.steal_response(A, "slow-2", withdrawn=True, fetched={"x": 8}))
    assert moved == {"slow-2": "tcp://127.0.0.1:1003"}
    assert s.who_has(["x"]) == {"x": [A]}  # x was A's already; a fetched copy counts too


def test_a_steal_from_a_worker_that_died_is_dropped_and_its_tasks_rerun_once():
    s = queued_on_one_worker(3)
    s.add_worker(B, "worker-1", nthreads=1, memory_limit=0)
    assert "slow-2" in s.stealing.in_flight
    out = s.remove_worker(A, "was killed by SIGKILL")
    assert sorted(computes(out)) == ["slow-0", "slow-1", "slow-2"]
    assert set(computes(out).values()) == {B}
    assert s.stealing.in_flight == {}
    assert s.steal_response(A, "slow-2", withdrawn=True, fetched={}) == []  # a late answer


def test_durations_reported_by_workers_weigh_the_queues():
    s = SchedulerState()
    s.add_worker(A, "worker-0", nthreads=1, memory_limit=0)
    s.submit("c", "slow-0", b"t", set(), None)
    s.task_finished(A, "slow-0", 28, "int", duration=3.0)
    s.submit("c", "slow-1", b"t", set(), None)
    assert s.workers[A].busy == 3.0
    s.task_finished(A, "slow-1", 28, "int", duration=1.0)
    assert s.durations.expected("slow-9") == 2.0 and s.workers[A].busy == 0.0


def test_a_tasks_duration_is_read_from_the_timing_its_worker_reports():
    """Workers report when a task started and stopped (for the task stream), not its
    duration besides: placement learns it from those."""
    s = SchedulerState()
    s.add_worker(A, "worker-0", nthreads=1, memory_limit=0)
    s.submit("c", "slow-0", b"t", set(), None)
    s.task_finished(A, "slow-0", 28, "int", timing={"start": 10.0, "stop": 13.0, "thread": 0})
    s.submit("c", "slow-1", b"t", set(), None)
    assert s.durations.expected("slow-9") == 3.0 and s.workers[A].busy == 3.0
