"""FutureState: settled on the loop thread, waited on from others."""

from __future__ import annotations

import threading

import pytest

from scatter_magics.engine.client.future import FutureState

pytestmark = pytest.mark.timeout(60)


def test_a_wait_that_starts_as_the_state_settles_never_misses_it():
    states = [FutureState(f"k-{i}") for i in range(3000)]
    go = threading.Barrier(2)

    def settle_all():
        go.wait()
        for state in states:
            state.finish("int")

    settler = threading.Thread(target=settle_all)
    settler.start()
    go.wait()
    missed = [s.key for s in states if not s.wait(timeout=10)]
    settler.join()
    assert missed == []


def test_reset_makes_a_settled_state_wait_again():
    state = FutureState("k")
    state.finish("int")
    assert state.wait(timeout=0)
    state.reset()
    assert not state.wait(timeout=0.01)
    threading.Timer(0.05, state.finish).start()
    assert state.wait(timeout=10) and state.status == "finished"
