"""The user's namespace, read and written by name: ``df``, or a dotted ``self.data.df``.

>>> class Shell: user_ns = {"data": type("Data", (), {"df": 1})()}
>>> bind(Shell, "x", 2); read_variable(Shell, "x"), read_variable(Shell, "data.df")
(2, 1)
>>> read_variable(Shell, "nothing") is MISSING
True
"""

from __future__ import annotations

MISSING = object()  # what read_variable gives for a name that holds nothing


def read_variable(shell, name: str):
    """The value of ``name`` now, or :data:`MISSING`: by name and attribute only, never
    by evaluating text (which could run code, from any thread)."""
    head, *attributes = name.split(".")
    value = shell.user_ns.get(head, MISSING)
    for attribute in attributes:
        if value is MISSING:
            break
        value = getattr(value, attribute, MISSING)
    return value


def bind(shell, target: str, value) -> None:
    """``target = value`` in the user namespace, for a name or a dotted name."""
    parent, _, attr = target.rpartition(".")
    if parent:
        setattr(shell.ev(parent), attr, value)
    else:
        shell.user_ns[target] = value
