"""Sizes are written one way: the front ends' formatter (``static/sizes.js``, run in node)
writes every size exactly as ``scatter_magics.sizes.format_bytes`` does."""

from __future__ import annotations

import json
import random

import pytest

from scatter_magics.notebook.esm import STATIC
from scatter_magics.sizes import UNITS, format_bytes
from tests.node_support import run_module

pytestmark = pytest.mark.timeout(60)

# sizes.js is imported from a data: URL of its text: node reads a data: URL as an ES
# module whatever its version, while a bare .js path outside any package.json is
# loaded as one only by node >= 20.19 (module syntax detection).
FORMAT_IN_NODE = """
import { readFileSync } from "node:fs";
const source = readFileSync(%s, "utf8");
const url = "data:text/javascript;base64," + Buffer.from(source).toString("base64");
const { formatBytes } = await import(url);
const values = JSON.parse(readFileSync(0, "utf8"));
console.log(JSON.stringify(values.map(formatBytes)));
""" % json.dumps(str(STATIC / "sizes.js"))

EDGES = [
    None, 0, 1, -1, 0.5, -0.5, 1023, 1023.9, -1023, 1024, -1024, 1025, 1536, -1536,
    10 * 1024 - 1, 10 * 1024, 100 * 1024 - 1, 100 * 1024, 1023 * 1024, 1024**2 - 1,
    1024**2, 10 * 2**20 + 1, 150 * 2**20, 1023.9 * 2**20, 1023.99 * 2**20,
    99.96 * 2**30, 99.94 * 2**30, 9.996 * 2**30, 9.994 * 2**30, 500 * 2**30,
    2**40, 3.5 * 2**40, 2**50, 2**60, -(2**60), 2**70, 10**30,
    # Exact ties, where rounding half to even (Python) and half up (toFixed) part ways:
    1.125 * 1024, 1.375 * 1024, 10.25 * 1024, 10.75 * 1024, 100.5 * 1024, 101.5 * 1024,
    -100.5 * 1024, 2.5 * 2**50 * 1024, 1000.5 * 2**50,
]


def js_format_bytes(values: list) -> list[str]:
    return run_module(FORMAT_IN_NODE, values)


def sweep(n: int = 3000, seed: int = 16) -> list:
    """Sizes across every unit: whole and fractional, both signs, and exact ties."""
    rng = random.Random(seed)
    values = []
    for _ in range(n):
        unit = 1024 ** rng.randrange(len(UNITS) + 1)
        sign = rng.choice((1, -1))
        values.append(sign * rng.randrange(1, 1024 * unit))  # integer bytes
        values.append(sign * rng.uniform(1, 1024) * unit)  # any double
        values.append(sign * rng.randrange(8, 8192) / 8 * unit)  # x.125, x.5: ties
    return values


@pytest.mark.parametrize("values", [EDGES, sweep()], ids=["edges", "sweep"])
def test_javascript_writes_sizes_as_python_does(values):
    expected = [format_bytes(n) for n in values]
    got = js_format_bytes(values)
    wrong = [(n, want, js) for n, want, js in zip(values, expected, got) if want != js]
    assert not wrong, f"{len(wrong)} of {len(values)} differ (value, Python, JS): {wrong[:10]}"


def test_units_are_binary_and_spelled_kib():
    assert js_format_bytes([1536, 150 * 2**20, 3 * 2**30, None]) == \
        ["1.5 KiB", "150 MiB", "3 GiB", ""]
