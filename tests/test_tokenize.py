"""Content tokens are deterministic across processes and runs, and tell data apart."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from scatter_magics.tokenize import tokenize

SAMPLES = {
    "int": "1", "float": "1.5", "str": "'text'", "bytes": "b'raw'", "tuple": "(1, 'a', None)",
    "list": "[1, [2, 3]]", "dict": "{'b': 2, 'a': 1}", "set": "{3, 1, 2}",
    "ndarray": "numpy.arange(12).reshape(3, 4)",
    "DataFrame": "pandas.DataFrame({'a': [1, 2], 'b': ['x', 'y']})",
    "Series": "pandas.Series([1.0, 2.0], name='s')",
}


def test_tokens_are_the_same_in_another_process():
    code = ("import numpy, pandas; from scatter_magics.tokenize import tokenize\n" +
            "".join(f"print(tokenize({expr}))\n" for expr in SAMPLES.values()))
    env = {"PYTHONHASHSEED": "12345"}
    import os
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env={**os.environ, **env}).stdout.split()
    ns = {"numpy": np, "pandas": pd}
    assert out == [tokenize(eval(expr, ns)) for expr in SAMPLES.values()]


@pytest.mark.parametrize("a, b", [
    (1, 1.0), (1, "1"), (b"ab", "ab"), ([1, 2], (1, 2)), ([1, [2]], [[1], 2]),
    (np.arange(4), np.arange(4).astype("int32")), (np.arange(4), np.arange(4).reshape(2, 2)),
    (pd.Series([1, 2], name="a"), pd.Series([1, 2], name="b")),
    (pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [1]})),
    (pd.DataFrame({"a": [1.0, 2.0]}), pd.DataFrame({"a": [1.0, 2.5]})),
    (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1, 2]}, index=[5, 6])),
    (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1, 2]}, dtype="int32")),
    (pd.Series(["x", "y"]), pd.Series(["x", "z"])),
])
def test_different_data_different_tokens(a, b):
    assert tokenize(a) != tokenize(b)


def test_equal_data_equal_tokens():
    assert tokenize({"a": 1, "b": [2]}) == tokenize({"b": [2], "a": 1})
    assert tokenize({1, 2, 3}) == tokenize({3, 2, 1})
    a = np.arange(20)[::2]  # non-contiguous
    assert tokenize(a) == tokenize(a.copy())
    assert tokenize(pd.DataFrame({"a": [1, 2]})) == tokenize(pd.DataFrame({"a": [1, 2]}))


def test_arbitrary_picklable_objects_are_tokenized_by_content():
    from fractions import Fraction

    assert tokenize(Fraction(1, 3)) == tokenize(Fraction(1, 3)) != tokenize(Fraction(1, 4))


@pytest.mark.parametrize("value", [7, -2.5, "héllo", None, True, 10**30, range(3)])
def test_a_lone_scalar_gets_the_token_its_fields_stream_to(value):
    import xxhash

    from scatter_magics.tokenize import _update

    streamed = xxhash.xxh3_128()
    _update(streamed, (value,))
    assert tokenize(value) == streamed.hexdigest()  # the shortcut changes no key


@pytest.mark.parametrize("func, args, kwargs", [
    (abs, (-1,), {}), (len, ("text", None, 2.5, True, 10**30), {}), (abs, (), {}),
    (np.add, (1, 2), {}), (abs, ([1],), {}), (abs, (1,), {"a": 1}), (lambda x: x, (1,), {}),
    (pd.DataFrame, ({"a": [1]},), {}),
])
def test_a_task_key_is_the_token_its_call_streams_to(func, args, kwargs):
    """``submit(pure=True)`` keys: the shortcut for plain calls gives every call the key
    the streamed token gives (the same call in any process, the same key)."""
    from scatter_magics.tokenize import task_key

    assert task_key("f", func, args, kwargs, True) == f"f-{tokenize(func, args, kwargs)}"
    assert task_key("f", func, args, kwargs, False) != task_key("f", func, args, kwargs, False)
