"""``scatter_magics.split`` and ``join``: what can be cut, into how many pieces, and put back
equal to what it was (no cluster needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scatter_magics import join, split
from scatter_magics.pieces import count_for_size


@pytest.mark.parametrize("value", [
    np.arange(24, dtype=np.int16).reshape(8, 3),
    pd.DataFrame({"k": pd.Categorical(list("abcabcab")), "x": np.arange(8.0)},
                 index=pd.Index(list("qwertyui"), name="id")),
    pd.Series(np.arange(8), index=np.arange(8)[::-1], name="s"),
    pd.Index(np.arange(8) * 2),
    "abcdefgh", b"abcdefgh", list(range(8)), tuple(range(8)), range(3, 19, 2),
], ids=lambda v: type(v).__name__)
def test_pieces_are_slices_and_join_gives_back_an_equal_value(value):
    pieces = split(value, 3)
    assert [len(p) for p in pieces] == [3, 3, 2]
    assert all(type(p) is type(value) for p in pieces)
    back = join(pieces)
    assert type(back) is type(value)
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and np.array_equal(back, value)
    elif isinstance(value, pd.Index):
        assert back.equals(value)
    elif isinstance(value, (pd.DataFrame, pd.Series)):
        assert back.equals(value) and back.index.equals(value.index)
        if isinstance(value, pd.DataFrame):
            assert (back.dtypes == value.dtypes).all() and back.index.name == "id"
    else:
        assert back == value


class Tagged(np.ndarray):
    """An ndarray subclass that does not take part in ``np.concatenate``."""


def test_a_masked_array_keeps_its_mask_and_a_subclass_its_type():
    masked = np.ma.masked_array(np.arange(8), mask=[0, 1] * 4)
    back = join(split(masked, 3))
    assert type(back) is np.ma.MaskedArray
    assert back.mask.tolist() == masked.mask.tolist() and back.sum() == masked.sum() == 12
    tagged = np.arange(8).view(Tagged)
    back = join(split(tagged, 3))
    assert type(back) is Tagged and np.array_equal(back, tagged)


def test_an_arrays_pieces_are_views_and_sizes_ask_for_a_count():
    arr = np.zeros((1000, 4))
    assert all(np.shares_memory(p, arr) for p in split(arr, 4))
    assert [len(p) for p in split(arr, size="8KiB")] == [250] * 4  # 32 KiB in 8 KiB pieces
    assert count_for_size(arr, 1000, 10**9) == 1 and count_for_size(arr, 1000, 1) == 1000


@pytest.mark.parametrize("value, n, error, message", [
    (3, 2, TypeError, "type int into pieces: it has no length"),
    ((i for i in range(3)), 2, TypeError, "no length (make it a list first)"),
    (np.array(3.0), 2, TypeError, "type ndarray into pieces: it has no length"),
    ({"a": 1}, 2, TypeError, "it has no order to slice"),
    ({1, 2}, 2, TypeError, "it has no order to slice"),
    (np.arange(3), 4, ValueError, "cannot cut 3 rows into 4 pieces"),
    (np.arange(3), 0, ValueError, "a whole number >= 1, not 0"),
])
def test_what_cannot_be_cut_says_why(value, n, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        split(value, n)


def test_join_refuses_what_it_cannot_put_together():
    with pytest.raises(ValueError, match="at least one piece"):
        join([])
    with pytest.raises(TypeError, match="different types"):
        join([np.arange(2), [1, 2]])
    with pytest.raises(TypeError, match="no way to put them back together"):
        join([object(), object()])


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"a": np.arange(1000), "x": np.random.default_rng(0).random(1000)}),  # columns
    pd.DataFrame(np.random.default_rng(1).random((1000, 3)), columns=list("abc")),  # rows
], ids=["from columns", "from a 2-D array"])
def test_a_dataframes_pieces_are_views_that_pickle_without_a_copy(frame):
    import pickle

    frame.attrs["unit"] = "m"
    pieces = split(frame, 4)
    for piece in pieces:
        buffers = []
        pickle.dumps(piece, protocol=5, buffer_callback=buffers.append)
        columns = [frame[c].to_numpy(copy=False) for c in frame]
        shared = [b for b in buffers
                  if any(np.shares_memory(np.asarray(b.raw()), c) for c in columns)]
        # Every value of the piece travels as a view of the frame's own memory: nothing
        # copied. (Other buffers may carry the column labels: pyarrow-backed strings.)
        assert sum(b.raw().nbytes for b in shared) == piece.to_numpy().nbytes
    back = join(pieces)
    assert back.equals(frame) and back.attrs == {"unit": "m"} and list(back.columns) == list(frame)
