"""The label of a piece of a value ``%scatter --split`` cut: ``df[0/4]``, knowing its rows.

A :class:`PieceLabel` travels where every label travels (``RememberedNames.labels()``, the
widgets' names); to anything that does not know pieces it is the text ``df[0/4]``. The views
that do show each piece on its own, with its rows and bytes, instead of grouping the
elements of a split collection under ``df[…]``.

>>> label = PieceLabel("df[0/4]", 250_000)
>>> label, piece_text(label, 4 * 2**20), with_rows("DataFrame", label)
('df[0/4]', 'df[0/4] · 250,000 rows · 4 MiB', 'DataFrame · 250,000 rows')
>>> with_rows("list", "rows[3]")
'list'
"""

from __future__ import annotations

from ..sizes import format_bytes


class PieceLabel(str):
    """``df[i/n]``, the label of piece ``i`` of ``n``, with the piece's ``rows``."""

    def __new__(cls, text: str, rows: int):
        label = super().__new__(cls, text)
        label.rows = rows
        return label


def is_piece(label) -> bool:
    return isinstance(label, PieceLabel)


def rows_text(label) -> str:
    """``'250,000 rows'`` for a piece's label; ``''`` for any other."""
    rows = getattr(label, "rows", None) if is_piece(label) else None
    return "" if rows is None else f"{rows:,} row{'' if rows == 1 else 's'}"


def with_rows(type_name: str | None, label) -> str | None:
    """A type as a futures table shows it: with the rows of a piece, if it is one."""
    rows = rows_text(label)
    return f"{type_name or '?'} · {rows}" if rows else type_name


def piece_text(label, nbytes: int | None = None) -> str:
    """``'df[0/4] · 250,000 rows · 4 MiB'``: a piece where a view lists what a worker holds."""
    parts = [str(label), rows_text(label), format_bytes(nbytes) if nbytes else ""]
    return " · ".join(p for p in parts if p)
