"""Control characters in text that came from outside: files people edit (park.yaml, economic
imports), forms, JSON, query strings and the command line.

PostgreSQL cannot store NUL in text at all (psycopg raises DataError), and the other C0/C1
control characters (an escape sequence in a firm name rewrites the inspector's terminal) have no
business in a name, an id, a filter or a number. Tab, line feed and carriage return are allowed
only where the caller says so (multi-line comments).
"""

from __future__ import annotations

import re

__all__ = ["LINE_BREAKS", "control_character", "describe_control", "first_control", "printable"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
LINE_BREAKS = "\t\n\r"  # what multi-line text (comments) may carry


def first_control(text: str, *, allow: str = LINE_BREAKS) -> int | None:
    """Index of the first control character not in `allow`, or None."""
    for m in _CONTROL.finditer(text):
        if m.group() not in allow:
            return m.start()
    return None


def describe_control(text: str, index: int) -> str:
    """The reason text for a refused value, e.g. 'must not contain control characters (U+0000 at position 3)'."""
    return f"must not contain control characters (U+{ord(text[index]):04X} at position {index})"


def control_character(text: str, *, allow: str = "") -> str | None:
    """Why `text` is refused, e.g. 'control character U+0000 at position 3 is not allowed', or None."""
    i = first_control(text, allow=allow)
    if i is None:
        return None
    return f"control character U+{ord(text[i]):04X} at position {i} is not allowed"


def printable(text: str, limit: int = 200) -> str:
    """The text with control characters shown as escapes (for error messages and logs)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text[:limit])
