"""The one summary every view renders (scatter_magics/summary.py), its history and task
stream: pure, tested alone, without a cluster."""

from __future__ import annotations

import random

from scatter_magics.history import MemoryHistory, columns
from scatter_magics.summary import (
    STATUSES,
    KeyTally,
    keys_phrase,
    memory_phrase,
    record,
    summarize,
)
from scatter_magics.task_stream import TaskStream, from_dask

A, B = "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"
WORKERS = [{"address": B, "name": "worker-10", "nthreads": 2, "memory_limit": 1000, "memory": 7},
           {"address": A, "name": "worker-9", "nthreads": 1, "memory_limit": 1000, "memory": 5}]


def key(status, workers=(), nbytes=None, running_on=None):
    return record({"status": status, "workers": list(workers), "nbytes": nbytes,
                   "processing_on": running_on})


def test_keys_are_distinct_replicas_apart_and_lost_bytes_never_count():
    summary = summarize(WORKERS, [key("finished", [A, B], 100), key("finished", [A], 10),
                                  key("lost", [], 800), key("running", [], None, B),
                                  key("error"), key("pending")])
    assert summary["keys"] == {"count": 6, "by_status": {"pending": 1, "running": 1,
                                                         "finished": 2, "error": 1, "lost": 1},
                               "nbytes": 110, "replicas": 3, "replica_nbytes": 210}
    assert sum(summary["keys"]["by_status"].values()) == summary["keys"]["count"]
    nine, ten = summary["workers"]  # worker-9 before worker-10
    assert (nine["name"], nine["nbytes"], nine["nkeys"], nine["memory"]) == ("worker-9", 110, 2, 5)
    assert ten["by_status"] == {"running": 1, "finished": 1} and ten["nbytes"] == 100
    assert summary["totals"] == {"n_workers": 2, "nthreads": 3, "memory": 12,
                                 "memory_limit": 2000, "nbytes": 210}
    assert keys_phrase(summary["keys"]) == "6 keys (3 replicas), 110 B in memory"
    assert memory_phrase(nine) == "data 110 B of 1000 B · process 5 B"
    assert memory_phrase({"nbytes": 0, "memory": 0, "memory_limit": 0}).endswith("(no limit) · process 0 B")


def test_a_tally_kept_change_by_change_equals_the_whole_count():
    """The widgets keep a KeyTally as events arrive; the scheduler counts all at once. Any
    sequence of changes must end where a fresh count of the final state ends."""
    rng = random.Random(17)
    tally, state = KeyTally(), {}
    choices = [key("finished", [A], 3), key("finished", [A, B], 3), key("lost", [], 3),
               key("running", [], None, A), key("pending"), key("error"), None]
    for _ in range(2000):
        k = rng.randrange(50)
        new = rng.choice(choices)
        tally.change(state.get(k), new)
        if new is None:
            state.pop(k, None)
        else:
            state[k] = new
    whole = summarize(WORKERS, state.values())
    assert tally.keys() == whole["keys"]
    for w in whole["workers"]:
        assert {k: w[k] for k in ("nkeys", "nbytes", "by_status")} == tally.worker(w["address"])


def test_released_keys_leave_a_cluster_summary_but_stay_rows_of_a_futures_table():
    assert record({"status": "released", "workers": [A], "nbytes": 5})[1] == ()
    tally = KeyTally()
    tally.change(None, key("released"))
    assert tally.keys()["count"] == 1 and tally.keys(statuses=STATUSES[:-1])["count"] == 0


def test_history_samples_once_a_second_and_keeps_five_minutes():
    history = MemoryHistory()
    for second in range(400):
        history.update(A, "worker-9", memory=second, nbytes=2 * second)
        if second == 100:
            history.update(B, "worker-10", memory=1, nbytes=1)
        if second == 200:
            history.remove(B)
        assert history.tick(float(second), slack=0.5)
        assert not history.tick(second + 0.25, slack=0.5)  # at most one a second
    answer = history.as_dict()
    assert len(answer["times"]) == 300 and answer["times"][-1] == 399.0
    nine, ten = answer["workers"]
    assert nine["memory"][-1] == 399 and nine["nbytes"][-1] == 798
    assert ten["name"] == "worker-10" and ten["memory"][0] == 1 and ten["memory"][-1] is None
    brief = history.as_dict(step=5)
    assert len(brief["times"]) == 60 and brief["times"][-1] == 399.0  # still ends now
    assert brief["interval"] == 5.0
    assert columns([], {}) == {"interval": 1.0, "times": [], "workers": []}


def test_a_timer_of_half_a_second_with_jitter_keeps_five_minutes_a_sample_a_second():
    # The embedded scheduler ticks every 0.5 s (HEARTBEAT_CHECK_INTERVAL), a little late
    # or early each time: taking every tick held 2.5 minutes in the 300 samples.
    history, jitter = MemoryHistory(), random.Random(5)
    history.update(A, "worker-0", memory=1, nbytes=1)
    now = 0.0
    while now < 400:
        history.tick(now, slack=0.5)
        now += 0.5 + jitter.uniform(-0.05, 0.05)
    times = history.as_dict()["times"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert times[-1] - times[0] >= 295 and all(0.9 <= g <= 1.1 for g in gaps), (
        times[-1] - times[0], min(gaps), max(gaps))


def test_task_stream_keeps_the_last_minute_and_reads_from_a_cursor():
    stream = TaskStream(limit=100)
    for i in range(150):
        stream.add({"key": f"f-{i}", "name": "f", "worker": A, "thread": 0, "start": float(i),
                    "stop": i + 0.5, "status": "finished", "transfers": []})
    first = stream.since(0, now=150.0)
    assert first["index"] == 150 and [t["key"] for t in first["tasks"]][0] == "f-90"
    assert stream.since(148, now=150.0)["tasks"][0]["key"] == "f-148"
    assert stream.since(150, now=150.0)["tasks"] == []
    assert len(stream.records) == 100  # bounded, however many ran


def test_dask_startstops_become_records_with_transfers():
    rec = from_dask("g-1", "g", A, 140, [
        {"action": "transfer", "start": 1.0, "stop": 1.5, "source": B, "nbytes": 10},
        {"action": "compute", "start": 2.0, "stop": 3.0}], "error")
    assert (rec["start"], rec["stop"], rec["status"], rec["thread"]) == (2.0, 3.0, "error", 140)
    assert rec["transfers"] == [{"start": 1.0, "stop": 1.5, "from": B, "nbytes": 10}]
    assert from_dask("h-1", "h", A, 1, [{"action": "transfer", "start": 0, "stop": 1}],
                     "finished") is None
