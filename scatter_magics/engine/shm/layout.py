"""Where buffers go in a segment: one key's buffers one after another, or a *run* of keys
whose buffers are consecutive slices of the same memory laid out as they lie.

A run is what ``%scatter arr --split`` (or ``client.scatter(np.array_split(arr, 8))``)
sends: each piece's buffer starts where the previous piece's ends, so the pieces are
copied once, together, into one segment, and each piece's ref points into it. Any
consecutive items whose large buffers continue one another's make a run, whatever made
them; the copy is correct either way (every byte comes from the buffer it belongs to).

>>> continues([(100, 50)], [(150, 50)]), continues([(100, 50)], [(160, 50)])
(True, False)
>>> run_offsets([[(100, 50), (1000, 8)], [(150, 50), (1008, 8)]])
(192, [[0, 128], [50, 136]])
"""

from __future__ import annotations

COPY_CHUNK = 64 << 20  # bytes written between progress reports (and chances for Ctrl-C)


def bytes_view(buffer) -> memoryview:
    """``buffer`` as a flat view of unsigned bytes."""
    view = memoryview(buffer)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def aligned(n: int) -> int:
    return (n + 63) & ~63  # keep every buffer cache-line (and SIMD) aligned


def write_in_pieces(segment, offset: int, view: memoryview, on_copied, copy=None) -> None:
    """``segment.write`` of ``view`` at ``offset``, reporting ``on_copied(nbytes)`` per piece;
    ``copy`` is the segment's copier for pages that exist (``copier.ParallelCopy``)."""
    if on_copied is None:
        segment.write(offset, view, copy)
        return
    for start in range(0, view.nbytes, COPY_CHUNK):
        piece = view[start:start + COPY_CHUNK]
        segment.write(offset + start, piece, copy)
        on_copied(piece.nbytes)


def spans(views: list[memoryview], threshold: int) -> list[tuple[int, int]] | None:
    """``[(address, nbytes)]`` of the views of ``threshold`` bytes or more, or None if the
    addresses cannot be read (no numpy) or there is no such view."""
    large = [v for v in views if v.nbytes >= threshold]
    if not large:
        return None
    try:
        import numpy as np  # reads the address of a read-only buffer too (ctypes cannot)
    except ImportError:
        return None
    return [(np.frombuffer(v, np.uint8).ctypes.data, v.nbytes) for v in large]


def continues(previous: list[tuple[int, int]], item: list[tuple[int, int]]) -> bool:
    """Whether each span of ``item`` starts where the same span of ``previous`` ends."""
    return len(previous) == len(item) and all(
        address == before + n for (before, n), (address, _) in zip(previous, item))


def run_offsets(items: list[list[tuple[int, int]]]) -> tuple[int, list[list[int]]]:
    """``(segment size, [[offset of each span] per item])`` for a run: position ``j`` of
    every item lies in one region, as in memory, regions one after another, aligned."""
    bases, size = [], 0
    for j in range(len(items[0])):
        start = items[0][j][0]
        end = items[-1][j][0] + items[-1][j][1]
        bases.append((size, start))
        size += aligned(end - start)
    return size, [[base + address - start for (base, start), (address, _) in zip(bases, item)]
                  for item in items]
