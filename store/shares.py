"""Each user's weight in fair share (migrations/0009, `rfarmctl share`): a user with weight 2 is
given twice the slots of a user with weight 1 when both have work waiting. Default 1."""

from __future__ import annotations

import psycopg

from broker_contracts.errors import ErrorCode, RfarmError

MAX_WEIGHT = 1000.0


def set_share(conn: psycopg.Connection, username: str, weight: float) -> None:
    if not 0 < weight <= MAX_WEIGHT:
        raise RfarmError(ErrorCode.REQUEST_INVALID, f"a weight is more than 0 and at most {MAX_WEIGHT:g}")
    row = conn.execute(
        """INSERT INTO user_shares (user_id, weight) SELECT id, %s FROM users WHERE username = %s
           ON CONFLICT (user_id) DO UPDATE SET weight = EXCLUDED.weight RETURNING user_id""",
        (weight, username),
    ).fetchone()
    if row is None:
        raise RfarmError(ErrorCode.REQUEST_INVALID, f"no user named {username}")


def unset(conn: psycopg.Connection, username: str) -> bool:
    cur = conn.execute(
        "DELETE FROM user_shares s USING users u WHERE u.id = s.user_id AND u.username = %s", (username,)
    )
    return cur.rowcount == 1


def listed(conn: psycopg.Connection) -> list[tuple[str, float]]:
    rows = conn.execute(
        "SELECT u.username, s.weight FROM user_shares s JOIN users u ON u.id = s.user_id ORDER BY u.username"
    ).fetchall()
    return [(r["username"], float(r["weight"])) for r in rows]  # type: ignore[call-overload]


def weight_of(conn: psycopg.Connection, user_id: int) -> float:
    row = conn.execute("SELECT weight FROM user_shares WHERE user_id = %s", (user_id,)).fetchone()
    return 1.0 if row is None else float(row["weight"])  # type: ignore[call-overload]
