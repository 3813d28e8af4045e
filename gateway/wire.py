"""Database rows to wire-ready reply bodies, in exactly the form the reply models dump.

The reply models in broker_contracts.messages are the contract. For the replies that carry many
rows (a page of jobs, a job's history) the gateway sends the rows as they come (with their times
already ISO text, made by PostgreSQL: store.db.iso_utc) rather than validating them into models and
dumping them again, which would cost about as much CPU as fetching the page.
tests/integration/test_wire_bodies.py checks that both ways give the same body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from broker_contracts.envelope import Reply, encode_reply
from broker_contracts.messages import JobSummary

SUMMARY_FIELDS = tuple(JobSummary.model_fields)
_SUMMARY_TIMES = ("created_at", "updated_at")


_ID_MARK = 0x7EAD_BEEF_0000_0001  # above 2**32: msgpack writes it as uint 64, 0xcf and 8 bytes


def id_reply_parts(request_id: str) -> tuple[bytes, bytes]:
    """The bytes of the success reply ``{"id": N}`` to ``request_id``, split around N's eight.

    N goes in as a msgpack uint 64 (0xcf, then 8 bytes big-endian: what PostgreSQL's int8send
    gives for an id), so the statement that makes N can store the whole reply itself
    (store.inbox.Answer). Any msgpack reader reads it as the plain integer.
    """
    data = encode_reply(Reply.success(request_id, {"id": _ID_MARK}))
    at = data.index(b"\xcf" + _ID_MARK.to_bytes(8, "big")) + 1
    return data[:at], data[at + 8 :]


def iso(value: datetime) -> str:
    """A datetime as pydantic's JSON mode writes it: ISO 8601, and "Z" for UTC."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """A detail row (store.jobs.get) cut down to a JobSummary dump."""
    out = {name: row[name] for name in SUMMARY_FIELDS}
    for column in _SUMMARY_TIMES:
        out[column] = iso(out[column])
    return out
