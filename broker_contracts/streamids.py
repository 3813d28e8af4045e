"""Redis stream entry ids (``<milliseconds>-<sequence>``) and the refusal of a stream whose ids ran out.

Anyone allowed to XADD may choose an entry's id. One entry with the largest id there is makes every
later ``XADD … *`` on that stream fail; one far in the future makes later ids meaningless as times.
The gateway repairs such a stream (gateway/repair.py); a writer that meets the refusal waits a
moment and sends again.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_PART = 2**64 - 1
# what Redis answers an XADD to a stream whose last id is (or is past) the one asked for
_REFUSALS = (
    "exhausted the last possible ID",
    "equal or smaller than the target stream top item",
)


class StreamId(NamedTuple):
    ms: int
    seq: int

    @classmethod
    def parse(cls, value: bytes | str) -> StreamId:
        """An id as Redis prints it; ValueError for anything else."""
        text = value.decode() if isinstance(value, bytes) else value
        ms, sep, seq = text.partition("-")
        if not sep or not text.isascii() or not ms.isdigit() or not seq.isdigit():
            raise ValueError(f"not a stream id: {text!r}")
        parsed = cls(int(ms), int(seq))
        if parsed.ms > MAX_PART or parsed.seq > MAX_PART:
            raise ValueError(f"not a stream id: {text!r}")
        return parsed

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


def refused_for_its_ids(message: str) -> bool:
    """Whether a Redis error is a stream refusing a new entry because of its last id."""
    return any(text in message for text in _REFUSALS)
