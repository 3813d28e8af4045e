"""What the farm sends is shown, never obeyed: one pure function every view prints fields through."""

from __future__ import annotations

from broker_contracts.text import escape_char, is_unsafe


def printable(text: str | None) -> str:
    """``text`` with every character that could drive a terminal written as an escape.

    ESC, newlines, C1 controls and bidi overrides become ``\\x1b``, ``\\n``, ``\\x9b``, ``\\u202e``;
    everything else (letters of any script, emoji, spaces) is kept. None shows as an empty string.
    """
    if not text:
        return ""
    if text.isprintable():
        return text
    return "".join(escape_char(c) if is_unsafe(c) else c for c in text)
