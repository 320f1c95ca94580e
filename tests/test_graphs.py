"""Dask graphs and collections on the cluster: ``Client.get``, ``compute``, ``persist``,
and a running Client as dask's default scheduler (issue 19, item 6).

Each test runs against a scatter_magics ``Client`` and a ``distributed.Client`` of the
same shape (tests/test_parity.py's way): the same values, the same exception types.
"""

from __future__ import annotations

import operator
import os
import subprocess
import sys
import textwrap

import cloudpickle
import numpy as np
import pandas as pd
import pytest

dask = pytest.importorskip("dask")
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402

from tests.test_parity import is_future  # noqa: E402

pytestmark = pytest.mark.timeout(120)
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests


def pid(*inputs) -> int:
    return os.getpid()


def test_get_runs_an_old_style_graph_and_packs_nested_keys(any_client):
    dsk = {"x": 1, "y": (operator.add, "x", 10), "z": (operator.mul, "y", 2), "w": (pid,)}
    assert any_client.get(dsk, "z") == 22
    assert any_client.get(dsk, ["z", ["y", "x"]]) == [22, [11, 1]]
    assert any_client.get(dsk, "w") != os.getpid()  # on a worker
    futures = any_client.get(dsk, ["z"], sync=False)
    assert is_future(futures[0]) and futures[0].result() == 22


def test_get_reraises_a_tasks_own_exception(any_client):
    # Keys of their own: distributed reuses a key still in memory from the test before
    # (released, not yet forgotten) instead of running the new graph's task.
    with pytest.raises(ZeroDivisionError):
        any_client.get({"bad-x": (operator.truediv, 1, 0), "bad-y": (operator.neg, "bad-x")},
                       "bad-y")


def test_compute_gives_futures_of_delayed_values_fed_with_scattered_data(any_client):
    inc = dask.delayed(operator.add)
    [data] = any_client.scatter([np.arange(10)])
    total = dask.delayed(np.sum)(inc(data, 1))
    future = any_client.compute(total)
    assert is_future(future) and future.result() == 55
    both = any_client.compute([total, inc(1, 1), 7])
    assert is_future(both[0]) and both[2] == 7
    assert any_client.gather(both[:2]) == [55, 2]
    assert any_client.compute([total, 7], sync=True) == [55, 7]


def test_dask_compute_and_dot_compute_run_on_the_workers(any_client):
    lazy = dask.delayed(pid)(dask.delayed(pid)())
    assert lazy.compute() != os.getpid()
    (a, b) = dask.compute(lazy, dask.delayed(operator.add)(2, 3))
    assert a != os.getpid() and b == 5


def test_arrays_bags_and_dataframes_compute_as_locally(any_client):
    x = da.arange(10_000, chunks=1_000).reshape(100, 100)
    assert float((x + x.T).sum().compute()) == float((np.arange(10_000).reshape(100, 100) * 2).sum())
    bag = db.from_sequence(range(100), npartitions=5).map(lambda v: v * 3).filter(lambda v: v % 2)
    assert bag.sum().compute() == sum(v * 3 for v in range(100) if v * 3 % 2)
    frame = pd.DataFrame({"k": np.arange(1_000) % 7, "v": np.arange(1_000.0)})
    ddf = dd.from_pandas(frame, npartitions=4)
    pd.testing.assert_series_equal(ddf.groupby("k").v.sum().compute(),
                                   frame.groupby("k").v.sum())
    assert ddf.shuffle("k", shuffle_method="tasks").v.sum().compute() == frame.v.sum()


def test_persist_keeps_the_chunks_on_the_cluster(any_client):
    x = da.ones((40, 40), chunks=10)
    persisted = any_client.persist(x)
    chunks = list(persisted.__dask_graph__().values())
    assert len(chunks) == 16 and all(is_future(c) for c in chunks)
    assert float((persisted * 2).sum().compute()) == 3200.0
    again = (x + 1).persist()  # dask's own persist, through the default scheduler
    assert all(is_future(c) for c in again.__dask_graph__().values())
    assert float(again.sum().compute()) == 3200.0


def test_p2p_shuffle_and_actors_are_refused_at_once_and_the_cluster_stays_usable():
    from scatter_magics import Client
    from scatter_magics.errors import DistributedOnlyGraphError

    frame = dd.from_pandas(pd.DataFrame({"k": range(100)}), npartitions=4)
    with Client(n_workers=1) as client:
        with pytest.raises(DistributedOnlyGraphError, match="%cluster start --dask"):
            client.compute(frame.shuffle("k", shuffle_method="p2p"))
        lazy = dask.delayed(operator.add)(1, 2)
        with pytest.raises(NotImplementedError, match="--dask"):
            client.compute(lazy, actors=True)  # said, not ignored (Dask's differ row)
        with pytest.raises(TypeError, match="resources"):
            client.persist(lazy, resources={"GPU": -1})
        assert client.who_has() == {}  # nothing was sent
        assert client.compute(lazy, retries=0, priority=0).result() == 3  # Dask's defaults
        assert frame.shuffle("k", shuffle_method="tasks").k.sum().compute() == 4950


def flaky_once(marker: str, value):
    """Raises the first time it runs for ``marker`` (a file made then), then ``value``."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ValueError("the first run fails")
    return value


def gpu_count() -> int:
    from scatter_magics import get_worker

    return get_worker().resources.get("GPU", 0)


def test_graph_task_options_reach_every_task(any_client, tmp_path):
    # retries=: a graph task that fails once runs again (Dask applies it to every task).
    lazy = dask.delayed(flaky_once)(str(tmp_path / "once"), 5) + 1
    assert any_client.compute(lazy, retries=1).result() == 6
    lazy = dask.delayed(flaky_once)(str(tmp_path / "never"), 5)
    with pytest.raises(ValueError, match="first run"):
        any_client.compute(lazy, retries=0).result()
    # priority= and workers= with allow_other_workers=: accepted, the values the same.
    first = next(iter(any_client.scheduler_info()["workers"]))
    x = da.ones(100, chunks=25)
    assert float(any_client.compute(x.sum(), priority=5, workers=[first],
                                    allow_other_workers=True).result()) == 100.0
    assert any_client.get({"a": 1, "b": (operator.add, "a", 1)}, "b", priority=-1) == 2


def test_graph_resources_run_only_where_a_worker_has_them():
    from scatter_magics import Client

    with Client(n_workers=1, threads_per_worker=1, resources={"GPU": 2}) as client:
        assert client.compute(dask.delayed(gpu_count)(), resources={"GPU": 1}).result() == 2
        no_tpu = client.compute(dask.delayed(gpu_count)(), resources={"TPU": 1})  # none has
        assert client.compute(dask.delayed(operator.add)(1, 2)).result() == 3  # sent after
        assert no_tpu.status == "pending"
        no_tpu.cancel()


def test_the_default_scheduler_is_ours_only_while_a_client_runs():
    from scatter_magics import Client
    from scatter_magics.engine.client.dask_default import CURRENT

    before = dask.config.get("scheduler", None)
    with Client(n_workers=1):
        assert dask.config.get("scheduler") is CURRENT
        assert dask.config.get("dataframe.shuffle.method") == "tasks"
    assert dask.config.get("scheduler", None) == before


def test_a_client_started_after_a_dask_client_takes_the_default_back():
    """The newest client is dask's scheduler, as among Dask's own clients, even while an
    older client of ours still runs; the user's setting returns when ours have closed."""
    import distributed

    from scatter_magics import Client
    from scatter_magics.engine.client.dask_default import CURRENT

    before = dask.config.get("scheduler", None)
    with Client(n_workers=1):
        with distributed.Client(processes=False, n_workers=1, dashboard_address=None):
            assert dask.config.get("scheduler") == "dask.distributed"
            with Client(n_workers=1):
                assert dask.config.get("scheduler") is CURRENT
                assert dask.delayed(operator.add)(1, 2).compute() == 3
    assert dask.config.get("scheduler", None) == before


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_dask_imported_after_the_client_started_uses_it():
    out = run_python("""
        import os, sys
        from scatter_magics import Client
        client = Client(n_workers=1)
        assert "dask" not in sys.modules
        import dask
        print(dask.delayed(os.getpid)().compute() != os.getpid())
        client.close()
        print(dask.config.get("scheduler", None))
    """)
    assert out.split() == ["True", "None"]


def test_without_dask_the_client_works_and_graphs_name_what_is_missing():
    out = run_python("""
        import sys
        sys.modules["dask"] = None  # as if dask were not installed
        from scatter_magics import Client
        from scatter_magics.errors import MissingDependencyError
        with Client(n_workers=1) as client:
            print(client.gather(client.submit(sum, client.scatter([1, 2]))))
            try:
                client.get({"x": 1}, "x")
            except MissingDependencyError as exc:
                print("missing:", "scatter_magics[dask]" in str(exc))
    """)
    assert out.split() == ["3", "missing:", "True"]
