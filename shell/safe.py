"""What the farm sends is shown, never obeyed: one pure function every view prints fields through."""

from __future__ import annotations

import json
from typing import Any

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


def json_text(value: Any) -> str:
    """One JSON document (non-ASCII kept readable) with every unsafe character in its strings
    written as a ``\\u`` escape: ``--json`` output is as safe on a terminal as the tables."""
    text = json.dumps(value, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(_json_escape(c) if is_unsafe(c) else c for c in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
