"""Text that cannot be stored: PostgreSQL's text holds no NUL character, and UTF-8 has no
unpaired surrogate. One check, used wherever text comes in (query strings, JSON and form
bodies, layer rows), so that such input is a 422 naming where it is, never a 500."""

from __future__ import annotations

from typing import Any


def text_problem(s: str) -> str | None:
    """What is wrong with a string for storage, or None."""
    if "\x00" in s:
        return f"contains a NUL character (at position {s.index(chr(0))})"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"contains an unpaired surrogate (at position {e.start})"
    return None


def find_bad_text(value: Any, where: str = "body") -> str | None:
    """The first string in a JSON-like value (keys included) that cannot be stored, as
    'where.path: problem'; None when all can."""
    if isinstance(value, str):
        p = text_problem(value)
        return f"{where}: {p}" if p else None
    if isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            p = text_problem(key)
            if p:
                return f"{where}: a key {p}"
            found = find_bad_text(v, f"{where}.{key[:40]}")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = find_bad_text(v, f"{where}[{i}]")
            if found:
                return found
    return None
