"""``%scatter NAME --split``, ``%gather NAME`` and ``scatter_magics.split`` / ``join``: a big
value cut into pieces across the workers, computed on where each piece lives, and put
back together; on the embedded engine and on a real Dask cluster (test_magics' fixtures).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from scatter_magics import Client, join, split
from scatter_magics.notebook.widget import ClusterWidget, FuturesWidget
from tests.conftest import wait_for, workers_info
from tests.test_magics import client, ip, magics, run, shared, usage_error  # noqa: F401

pytestmark = pytest.mark.timeout(60)
pd = pytest.importorskip("pandas")


def holders(client, futures) -> list[list[str]]:
    """The workers holding each future, in order."""
    found = client.who_has(futures)
    return [sorted(found[f.key]) for f in futures]


def frame(n: int) -> "pd.DataFrame":
    rng = np.random.default_rng(n)
    return pd.DataFrame({"k": pd.Categorical(rng.integers(0, 7, n)), "x": rng.random(n),
                         "n": np.arange(n, dtype=np.int32)}, index=np.arange(n) * 3 + 10)


def test_a_million_row_dataframe_split_over_two_workers_comes_back_equal(shared, client):
    df = shared.user_ns["df"] = frame(1_000_000)
    parts = run(shared, "parts = %scatter df --split\nparts")
    assert [f.key.rpartition("-")[0] for f in parts] == ["df[0/2]", "df[1/2]"]
    assert sorted(w for [w] in holders(client, parts)) == sorted(client.scheduler_info()["workers"])
    back = run(shared, "%gather df")
    assert back.equals(df) and back.index.equals(df.index) and (back.dtypes == df.dtypes).all()
    pieces = run(shared, "%gather parts --pieces")
    assert [len(p) for p in pieces] == [500_000, 500_000]
    assert pieces[1].index[0] == df.index[500_000]
    assert run(shared, "%gather parts").equals(df)  # the futures themselves join too
    run(shared, "%gather df --into")
    assert shared.user_ns["df"].equals(df)


def test_an_array_split_into_8_comes_back_equal_with_its_dtype(shared, client):
    arr = shared.user_ns["arr"] = np.arange(4_000_000, dtype=np.int32).reshape(-1, 4)
    parts = run(shared, "%scatter arr --split 8")
    assert len(parts) == 8 and all(w for w in holders(client, parts))
    back = run(shared, "%gather arr")
    assert back.dtype == np.int32 and back.shape == arr.shape and np.array_equal(back, arr)
    assert [p.shape[0] for p in run(shared, "%gather arr --pieces")] == [125_000] * 8


def test_an_arrays_pieces_are_one_copy_in_one_segment_on_the_embedded_engine(shared, client):
    """Splitting costs one copy of the whole, not one per piece: the pieces' refs point
    into one segment, as the pool's counters say."""
    if not isinstance(client, Client):
        pytest.skip("a Dask cluster has no shared-memory pool")
    pool = client.cluster.shm_pool
    arr = shared.user_ns["arr"] = np.random.default_rng(7).random(2**20 * 8)  # 64 MiB
    before = pool.stats()
    parts = run(shared, "%scatter arr --split 8")
    after = pool.stats()
    assert after["copied_bytes"] - before["copied_bytes"] == arr.nbytes
    assert after["segments"] - before["segments"] <= 1  # a free one may have been reused
    assert after["keys"] - before["keys"] == 8
    sums = client.gather(client.map(np.sum, parts))  # each worker reads its pieces there
    assert np.isclose(sum(sums), arr.sum()) and np.array_equal(run(shared, "%gather arr"), arr)
    df = shared.user_ns["df"] = frame(999_998)  # so is a DataFrame's, column by column
    before = pool.stats()
    run(shared, "%scatter df --split")
    after = pool.stats()
    large = df["x"].nbytes + df["n"].nbytes + df.index.nbytes  # the codes (1 MB) are inline
    assert after["copied_bytes"] - before["copied_bytes"] == large
    assert after["segments"] - before["segments"] <= 1
    assert run(shared, "%gather df").equals(df)


def test_each_piece_sits_on_the_worker_the_views_say(shared, client):
    """The futures widget, the cluster widget and %cluster: a row per piece, named
    s[i/4], with its rows, its bytes and the worker that holds it."""
    shared.user_ns["s"] = pd.Series(np.arange(1000.0), name="s")
    parts = run(shared, "%scatter s --split 4")
    where = {f"s[{i}/4]": w for i, w in enumerate(holders(client, parts))}
    names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
    labels = magics(shared).names.labels
    futures, cluster = FuturesWidget(client, parts, names=labels()), ClusterWidget(client, labels)
    try:
        wait_for(lambda: len(futures.rows) == 4 and all(
            r["status"] == "finished" and r["workers"] for r in futures.rows),
            what="the futures widget to show where the pieces are")
        assert {r["name"]: sorted(r["workers"]) for r in futures.rows} == where
        assert {r["type"] for r in futures.rows} == {"Series · 250 rows"}
        def pieces_held():  # what earlier tests left may still be on its way out
            return {hold: w["address"] for w in cluster.workers for hold, _ in w["holds"]
                    if hold.startswith("s[")}
        wait_for(lambda: len(pieces_held()) == 4, what="the cluster widget to list the pieces")
        assert {hold.split(" · ")[0]: [a] for hold, a in pieces_held().items()} == where
        assert all(re.fullmatch(r"s\[\d/4\] · 250 rows · [\d.]+ K?i?B", h) for h in pieces_held())
    finally:
        futures.close(), cluster.close()
    summary = run(shared, "%cluster")
    assert [row[0] for row in summary.pieces] == list(where)
    assert [(row[1], row[3]) for row in summary.pieces] == [
        ("250", names[w[0]]) for w in where.values()]
    assert "Pieces of split values" in repr(summary) and "s[3/4]" in summary._repr_html_()


def test_a_task_mapped_over_the_pieces_runs_where_each_piece_is(shared, client):
    """One task per piece, on the worker that holds it: no piece moves (issue 19's
    placement work must keep this)."""
    shared.user_ns["df"] = frame(100_000)
    parts = run(shared, "%scatter df --split 6")
    partial = client.map(lambda piece: piece.groupby("k", observed=True)["x"].sum(), parts)
    sums = client.gather(partial)
    assert holders(client, partial) == holders(client, parts)
    total = pd.concat(sums).groupby(level=0, observed=True).sum()
    expected = shared.user_ns["df"].groupby("k", observed=True)["x"].sum()
    pd.testing.assert_series_equal(total, expected, check_names=False)


def test_split_with_workers_size_and_a_name_after_a_bare_split(shared, client):
    shared.user_ns["arr"] = np.zeros(2**20 // 8 * 16)  # 16 MiB
    parts = run(shared, "%scatter arr --split 3 -w worker-1")
    worker_1 = [a for a, w in workers_info(client).items() if w["name"] == "worker-1"]
    assert holders(client, parts) == [worker_1] * 3
    assert len(run(shared, "%scatter arr --split-size 4MiB")) == 4
    assert len(run(shared, "%scatter --split arr")) == 2  # one piece per worker thread
    shared.user_ns["rows"] = [1, 2, 3]
    assert len(run(shared, "%scatter --split rows")) == 3  # a list: one future per item
    assert run(shared, "%scatter rows --split 2") and run(shared, "%gather rows") == [1, 2, 3]


def test_an_empty_list_or_dict_splits_into_nothing_and_gathers_back_empty(shared, client):
    shared.user_ns["rows"], shared.user_ns["table"] = [], {}
    assert dict(run(shared, "%scatter rows table --split")) == {"rows": [], "table": {}}
    assert run(shared, "%gather rows") == [] and run(shared, "%gather table") == {}
    shared.user_ns["seven"] = 7
    run(shared, "%scatter seven")
    assert run(shared, "%gather seven rows") == {"seven": 7, "rows": []}


@pytest.mark.parametrize("value, line, message", [
    (3, "x --split", "--split x: cannot cut a value of type int into pieces: it has no length"),
    ((i for i in range(3)), "x --split", "of type generator into pieces: it has no length "
                                         "(make it a list first)"),
    (np.arange(5), "x --split 8", "--split 8 x: cannot cut 5 rows into 8 pieces"),
    ({"a": 1}, "x --split 2", "it has no order to slice (--split alone scatters it item by item)"),
    (np.arange(5), "x --split 2 --split-size 1MiB", "give one of them"),
    (np.arange(5), "x --split 0", "'0' is not a whole number >= 1"),
])
def test_what_cannot_be_cut_is_refused_in_one_line_and_nothing_is_sent(shared, client, value,
                                                                        line, message):
    shared.user_ns["x"] = value
    said = usage_error(shared, f"%scatter {line}")
    assert message in said and "\n" not in said
    assert not [k for k in client.who_has() if str(k).startswith("x")]


def test_split_and_join_from_python_on_either_engine(client):
    """What the magics do, from code: on our Client and on a distributed.Client alike."""
    values = pd.Series(np.arange(10_000) % 13, index=np.arange(10_000)[::-1])
    futures = client.scatter(split(values, client=client))  # one piece per worker thread
    assert len(futures) == 2
    back = join(client.gather(futures))
    assert back.equals(values) and back.index.equals(values.index)
    assert join(client.gather(client.scatter(split("abcdefgh", 3)))) == "abcdefgh"
