"""Database rows to wire-ready reply bodies, in exactly the form the reply models dump.

The reply models in broker_contracts.messages are the contract. For the replies that carry many
rows (a page of jobs, a job's history) the gateway sends the rows as they come (with their times
already ISO text, made by PostgreSQL: store.db.iso_utc) rather than validating them into models and
dumping them again: that round trip cost as much CPU as fetching the page.
tests/test_wire_bodies.py checks that both ways give the same body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from broker_contracts.messages import JobSummary

SUMMARY_FIELDS = tuple(JobSummary.model_fields)
_SUMMARY_TIMES = ("created_at", "updated_at")


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
