"""Which characters may not reach a terminal as they are: one rule for refusing and for escaping.

A character is unsafe when it is not printable and not a plain space: C0 controls (ESC, newline,
tab, NUL…), DEL, C1 controls (U+0080–U+009F), format characters (bidi overrides and isolates
U+202A–U+202E and U+2066–U+2069, zero-width characters, the BOM), line and paragraph separators,
surrogates, private-use and unassigned code points. Names refuse them where they are created;
the shell shows any that reach it escaped (``shell.safe.printable``).
"""

from __future__ import annotations

import unicodedata


def is_unsafe(char: str) -> bool:
    """Whether one character could move a cursor, reorder text or be invisible on a terminal."""
    return not char.isprintable() and unicodedata.category(char) != "Zs"


def first_unsafe(text: str) -> str | None:
    """The first unsafe character of ``text``, or None when it has none."""
    if text.isprintable():
        return None
    return next((c for c in text if is_unsafe(c)), None)


def escape_char(char: str) -> str:
    """``\\n``, ``\\x1b``, ``\\u202e`` or ``\\U000e0001``: how an unsafe character is shown."""
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def no_unsafe(value: str) -> str:
    """A pydantic validator: ``value`` unchanged, or ValueError naming the first unsafe character."""
    bad = first_unsafe(value)
    if bad is not None:
        raise ValueError(f"must not contain control or invisible characters (found {escape_char(bad)})")
    return value
