"""Per-user quotas (migrations/0007): the farm's defaults, each user's overrides, and the limits
that hold for a user (an override where set, else the default). Submit checks its two limits in
its own statement (store/jobs.py, with LIMITS below); a watch reads max_watches here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from broker_contracts.errors import ErrorCode, RfarmError

FIELDS = ("max_queued_tasks", "max_submits_per_minute", "max_watches")

# The submit limits of the one row of a CTE ``owner`` (column id): store/jobs.py's submit statement.
LIMITS = """SELECT COALESCE(q.max_queued_tasks, d.max_queued_tasks) AS max_queued_tasks,
                   COALESCE(q.max_submits_per_minute, d.max_submits_per_minute) AS max_submits_per_minute
            FROM owner CROSS JOIN quota_defaults d LEFT JOIN user_quotas q ON q.user_id = owner.id"""


@dataclass(frozen=True)
class Quota:
    """One row of ``quota list``: a user's overrides (None: the default holds), or the defaults."""

    username: str | None
    max_queued_tasks: int | None
    max_submits_per_minute: int | None
    max_watches: int | None


def max_watches(conn: psycopg.Connection, user_id: int) -> int:
    row = conn.execute(
        """SELECT COALESCE(q.max_watches, d.max_watches) AS n
           FROM quota_defaults d LEFT JOIN user_quotas q ON q.user_id = %s""",
        (user_id,),
    ).fetchone()
    if row is None:
        raise RfarmError(ErrorCode.INTERNAL, "the database has no quota defaults: run `rfarmctl migrate`")
    return int(row["n"])  # type: ignore[call-overload]


def set_default(conn: psycopg.Connection, limits: dict[str, int]) -> None:
    """Change the named default limits (FIELDS); the others stay."""
    _check(limits)
    if limits:
        assignments = ", ".join(f"{name} = %({name})s" for name in limits)
        conn.execute(f"UPDATE quota_defaults SET {assignments}", limits)


def set_user(conn: psycopg.Connection, username: str, limits: dict[str, int]) -> None:
    """Override the named limits for one user; the others stay as they were (or the default)."""
    _check(limits)
    columns = ", ".join(limits)
    values = ", ".join(f"%({name})s" for name in limits)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in limits) if limits else None
    row = conn.execute(
        f"""INSERT INTO user_quotas (user_id{", " + columns if limits else ""})
            SELECT id{", " + values if limits else ""} FROM users WHERE username = %(username)s
            ON CONFLICT (user_id) DO {f"UPDATE SET {updates}" if updates else "NOTHING"}
            RETURNING user_id""",
        {**limits, "username": username},
    ).fetchone()
    if row is None and not _exists(conn, username):
        raise RfarmError(ErrorCode.REQUEST_INVALID, f"no such user: {username}")


def unset_user(conn: psycopg.Connection, username: str) -> bool:
    """Drop a user's overrides (the defaults hold again); False if they had none."""
    cur = conn.execute(
        "DELETE FROM user_quotas q USING users u WHERE u.id = q.user_id AND u.username = %s", (username,)
    )
    if cur.rowcount == 0 and not _exists(conn, username):
        raise RfarmError(ErrorCode.REQUEST_INVALID, f"no such user: {username}")
    return cur.rowcount > 0


def listed(conn: psycopg.Connection) -> list[Quota]:
    """The defaults first (username None), then every user with an override, by name."""
    defaults = conn.execute(f"SELECT {', '.join(FIELDS)} FROM quota_defaults").fetchone()
    if defaults is None:
        raise RfarmError(ErrorCode.INTERNAL, "the database has no quota defaults: run `rfarmctl migrate`")
    rows: list[dict[str, Any]] = conn.execute(  # type: ignore[assignment]
        f"""SELECT u.username, {", ".join("q." + f for f in FIELDS)}
            FROM user_quotas q JOIN users u ON u.id = q.user_id ORDER BY u.username"""
    ).fetchall()
    return [Quota(None, **defaults)] + [Quota(**r) for r in rows]  # type: ignore[arg-type]


def _check(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        if name not in FIELDS:
            raise ValueError(f"not a quota: {name}")
        if value < 0:
            raise RfarmError(ErrorCode.REQUEST_INVALID, f"{name.replace('_', '-')} must be 0 or more, not {value}")


def _exists(conn: psycopg.Connection, username: str) -> bool:
    return conn.execute("SELECT 1 FROM users WHERE username = %s", (username,)).fetchone() is not None
