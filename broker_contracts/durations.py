"""Durations as people write them: ``90``, ``90s``, ``15m``, ``2h`` (whole numbers, one unit;
a bare number is seconds), and back in the shortest exact spelling (7200 s is ``2h``)."""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600}
MAX_SECONDS = 7 * 24 * 3600  # a week: longer is a mistake, not a render
_DURATION = re.compile(r"\s*(\d{1,9})\s*([smh]?)\s*", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """Seconds, or ValueError with a message fit for the user."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text.strip()!r} is not a duration: write it like 90s, 15m or 2h")
    seconds = int(match.group(1)) * UNITS[(match.group(2) or "s").lower()]
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"a duration is more than 0 and at most {format_duration(MAX_SECONDS)}")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact spelling: 7200 → 2h, 5400 → 90m, 45 → 45s."""
    for unit in ("h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"
