"""The statuses of broker_contracts/states.py as SQL.

Every status in a statement of the store is written by these two functions from the enums and
the sets of the transition tables, never typed out: whoever edits states.py edits every guard.
The text is the same for the same set, so prepared statements keep their plans, and a status
stays a literal (not a parameter) where a partial index (migrations/0001) must match it.
"""

from __future__ import annotations

from collections.abc import Iterable

from broker_contracts.states import JobStatus, TaskStatus

Status = TaskStatus | JobStatus


def literal(status: Status) -> str:
    """``'queued'``: an enum member's value, which is a fixed lowercase word, quoted for SQL."""
    return f"'{status.value}'"


def one_of(statuses: Iterable[Status]) -> str:
    """``('failed', 'cancelled')`` for ``status IN …``, in the enum's order."""
    members = set(statuses)
    if not members:
        raise ValueError("an empty set of statuses matches nothing")
    return "(" + ", ".join(literal(s) for s in sorted(members, key=lambda s: list(type(s)).index(s))) + ")"
