"""What a widget is given to show: futures, keys and their names, found in containers.

>>> labelled_keys({"a": "k1", "b": ["k2"]})
[('a', 'k1', None), ('b[0]', 'k2', None)]
"""

from __future__ import annotations

from collections.abc import Mapping

PAGE_SIZES = (10, 25, 50, 100, 200)


def labelled_keys(obj, label: str | None = None) -> list[tuple[str | None, str, str | None]]:
    """``[(name, key, status)]`` for every future (or key string) in ``obj``, in order.

    A dict's keys name its values; nested containers add ``[i]`` to the name.
    """
    if isinstance(obj, str):
        return [(label, obj, None)]
    if hasattr(obj, "key") and not isinstance(obj, Mapping):
        return [(label, obj.key, getattr(obj, "status", None))]
    out: list = []
    if isinstance(obj, Mapping):
        for name, value in obj.items():
            sub = str(name) if label is None else f"{label}[{name!r}]"
            out += labelled_keys(value, sub)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, value in enumerate(obj):
            out += labelled_keys(value, None if label is None else f"{label}[{i}]")
    else:
        raise TypeError(f"expected futures, keys or a collection of them, not {type(obj).__name__}")
    return out


def _only_futures(obj, future_type, depth: int = 0) -> bool:
    """Whether ``obj`` is a future or a non-empty (nested) collection of futures only."""
    if isinstance(obj, future_type):
        return True
    if depth > 3 or not isinstance(obj, (list, tuple, set, frozenset, Mapping)) or not obj:
        return False
    values = obj.values() if isinstance(obj, Mapping) else obj
    # An ordinary container fails on its first element, so displaying one stays cheap.
    return all(_only_futures(value, future_type, depth + 1) for value in values)


def _iter_futures(obj):
    if hasattr(obj, "key") and hasattr(obj, "client") and not isinstance(obj, Mapping):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _iter_futures(value)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            yield from _iter_futures(value)


def _names_by_key(keys: list[str], names) -> dict[str, str]:
    if names is None:
        return {}
    if isinstance(names, Mapping):
        return {k: _text(v) for k, v in names.items() if v is not None}
    names = list(names)
    if len(names) != len(keys):
        raise ValueError(f"{len(names)} names for {len(keys)} futures")
    return {k: _text(n) for k, n in zip(keys, names) if n is not None}


def _text(name) -> str:
    # Text as it is: a piece's label (piece_label.PieceLabel) keeps its rows.
    return name if isinstance(name, str) else str(name)


def _page_size(n) -> int:
    return min(max(1, int(n)), max(PAGE_SIZES))
