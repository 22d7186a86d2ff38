"""What the start-up checks of library internals read of a function: its code's names and its parameters."""

from __future__ import annotations

import inspect


def names_used(function, *, strings: bool = False) -> set[str]:
    """Attribute and global names a function's code (and the functions nested in it) refers to;
    with ``strings``, its string constants too (dictionary keys such as ``"flask.app"``)."""
    code = getattr(function, "__code__", None)
    if code is None:
        return set()
    names: set[str] = set()
    pending = [code]
    while pending:
        current = pending.pop()
        names.update(current.co_names)
        if strings:
            names.update(const for const in current.co_consts if isinstance(const, str))
        pending.extend(const for const in current.co_consts if hasattr(const, "co_names"))
    return names


def parameters(function) -> list[str]:
    """The function's parameter names in order; none if it has no signature."""
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return []
