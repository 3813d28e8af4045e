"""Frame ranges and their split into tasks (chunks)."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_FRAMES = 100_000
# the whole text (fullmatch), ASCII digits and spaces only; a minus sign is read to be refused clearly
_RANGE = re.compile(r" *(-?[0-9]{1,7}) *(?:- *(-?[0-9]{1,7}))? *")


@dataclass(frozen=True)
class FrameRange:
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def chunks(self, size: int) -> list[tuple[int, int]]:
        """Split into (first, last) pairs of at most ``size`` frames, in order."""
        return [(start, min(start + size - 1, self.last)) for start in range(self.first, self.last + 1, size)]

    def __str__(self) -> str:
        return f"{self.first}" if self.first == self.last else f"{self.first}-{self.last}"


def parse_frames(text: str) -> FrameRange:
    """'1-100' or '7' to a FrameRange; ValueError with a message fit for a user.

    Frames are numbered from 0: a negative frame would reach a renderer's command line as an option.
    """
    match = _RANGE.fullmatch(text or "")
    if not match:
        raise ValueError(f"frame range {text!r} is not like '1-100' or '7'")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if first < 0 or last < 0:
        raise ValueError(f"frame range {text!r} has a negative frame: frames are numbered from 0")
    if last < first:
        raise ValueError(f"frame range {text!r} ends before it starts")
    if last - first + 1 > MAX_FRAMES:
        raise ValueError(f"frame range {text!r} has more than {MAX_FRAMES} frames")
    return FrameRange(first, last)
