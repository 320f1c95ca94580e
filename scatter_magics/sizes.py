"""Sizes in bytes, written one way everywhere: binary units spelled ``KiB``, ``MiB``, ``GiB``.

Every message, view and error of the package writes a size with :func:`format_bytes`;
the notebook widget and the JupyterLab extension use its JavaScript twin
(``scatter_magics/notebook/static/sizes.js``), which a test checks against this one.
:func:`parse_bytes` reads what users type (``"2GiB"``, ``"500 MB"``, ``1e9``).

>>> format_bytes(0), format_bytes(1536), format_bytes(150 * 2**20), format_bytes(None)
('0 B', '1.5 KiB', '150 MiB', '')
>>> parse_bytes("2GiB"), parse_bytes("1.5 kB"), parse_bytes(4096)
(2147483648, 1500, 4096)
"""

from __future__ import annotations

import re

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

# What parse_bytes accepts: binary units by their IEC names, decimal ones by SI names
# (as Dask's parse_bytes does), case-insensitively, with or without the "B".
_MULTIPLIERS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15,
    "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30,
    "ti": 2**40, "tib": 2**40, "pi": 2**50, "pib": 2**50,
}
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*")


def format_bytes(n: int | float | None) -> str:
    """A short size: whole bytes, else three significant digits under 100, else an integer.

    ``1536`` → ``'1.5 KiB'``, ``150 * 2**20`` → ``'150 MiB'``, ``None`` → ``''``.

    >>> [format_bytes(n) for n in (1023, 1024, 10 * 2**20 + 1, 99.96 * 2**30, 2**60)]
    ['1023 B', '1 KiB', '10 MiB', '100 GiB', '1024 PiB']
    """
    if n is None:
        return ""
    size = float(n)
    for unit in UNITS:
        if abs(size) < 1024 or unit == UNITS[-1]:
            break
        size /= 1024
    if unit == "B":
        return f"{int(size)} B"
    return f"{size:.3g} {unit}" if abs(size) < 100 else f"{size:.0f} {unit}"


def parse_bytes(text: str | int | float) -> int:
    """Bytes from a number or text like ``"2GiB"``, ``"512 MiB"``, ``"1.5e9"``, ``"4 GB"``.

    Raises ``ValueError`` naming the text when it is not a size.

    >>> parse_bytes("512 MiB") == 512 * 2**20
    True
    >>> parse_bytes("lots")
    Traceback (most recent call last):
    ...
    ValueError: 'lots' is not a size: use bytes, or a number with a unit such as '2GiB' or '500MB'
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    match = _SIZE.fullmatch(str(text))
    unit = match.group(2).lower() if match else None
    if unit not in _MULTIPLIERS:
        raise ValueError(f"{text!r} is not a size: use bytes, or a number with a unit "
                         "such as '2GiB' or '500MB'")
    return int(float(match.group(1)) * _MULTIPLIERS[unit])
