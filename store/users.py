"""Users, sessions and login throttling."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from broker_contracts.errors import ErrorCode, RfarmError

# Failed logins are counted twice: per (username, client) and per username. From one client, after
# THROTTLE_FREE_FAILURES each failure doubles its wait up to THROTTLE_CLIENT_MAX_SECONDS. Per
# username, whoever fails, the wait doubles only up to THROTTLE_MAX_SECONDS: what a stranger's
# failures can cost the real user, who logs in from a client of their own. The count per username
# starts again once it has seen no failure for THROTTLE_FORGET_SECONDS.
THROTTLE_FREE_FAILURES = 5
THROTTLE_MAX_SECONDS = 60
THROTTLE_CLIENT_MAX_SECONDS = 900
THROTTLE_FORGET_SECONDS = 900


@dataclass(frozen=True)
class User:
    id: int
    username: str
    is_admin: bool


@dataclass(frozen=True)
class Credentials:
    user: User
    password_hash: str


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def create_user(conn: psycopg.Connection, username: str, password_hash: str, *, is_admin: bool = False) -> User:
    row = conn.execute(
        """INSERT INTO users (username, password_hash, is_admin) VALUES (%s, %s, %s)
           ON CONFLICT (username) DO NOTHING RETURNING id""",
        (username, password_hash, is_admin),
    ).fetchone()
    if row is None:
        raise RfarmError(ErrorCode.AUTH_USERNAME_TAKEN, f"the username {username!r} is taken")
    return User(row["id"], username, is_admin)  # type: ignore[call-overload]


def set_admin(conn: psycopg.Connection, user_id: int, is_admin: bool) -> None:
    conn.execute("UPDATE users SET is_admin = %s WHERE id = %s", (is_admin, user_id))


def set_password_hash(conn: psycopg.Connection, user_id: int, password_hash: str) -> None:
    conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))


def credentials(conn: psycopg.Connection, username: str) -> Credentials | None:
    row = conn.execute(
        "SELECT id, username, is_admin, password_hash FROM users WHERE username = %s", (username,)
    ).fetchone()
    if row is None:
        return None
    r: dict = row  # type: ignore[assignment]
    return Credentials(User(r["id"], r["username"], r["is_admin"]), r["password_hash"])


def throttle_wait(conn: psycopg.Connection, username: str, client: str) -> float:
    """Seconds until ``username`` may try again from ``client``; 0 when it may now. Locks the
    username's row for the attempt."""
    row = conn.execute(
        """SELECT GREATEST(0,
                  (SELECT EXTRACT(EPOCH FROM locked_until - now()) FROM login_throttle
                   WHERE username = %(u)s FOR UPDATE),
                  (SELECT EXTRACT(EPOCH FROM locked_until - now()) FROM login_throttle_client
                   WHERE username = %(u)s AND client = %(c)s))::float AS wait""",
        {"u": username, "c": client},
    ).fetchone()
    return float(row["wait"]) if row and row["wait"] else 0.0  # type: ignore[call-overload]


def record_failure(conn: psycopg.Connection, username: str, client: str) -> None:
    """One more failure, for the username and for the client; past the free ones each failure
    doubles the wait, up to each one's cap."""
    conn.execute(
        """INSERT INTO login_throttle AS t (username, failures, locked_until) VALUES (%(u)s, 1, NULL)
           ON CONFLICT (username) DO UPDATE SET
             failures = CASE WHEN t.updated_at < now() - make_interval(secs => %(forget)s) THEN 1
                             ELSE t.failures + 1 END,
             updated_at = now(),
             locked_until = CASE WHEN t.updated_at >= now() - make_interval(secs => %(forget)s)
                                      AND t.failures + 1 > %(free)s
               THEN now() + make_interval(secs => LEAST(%(cap)s, 2 ^ LEAST(t.failures + 1 - %(free)s, 30)))
               ELSE NULL END""",
        {"u": username, "free": THROTTLE_FREE_FAILURES, "cap": THROTTLE_MAX_SECONDS, "forget": THROTTLE_FORGET_SECONDS},
    )
    conn.execute(
        """INSERT INTO login_throttle_client AS t (username, client, failures, locked_until)
           VALUES (%(u)s, %(c)s, 1, NULL)
           ON CONFLICT (username, client) DO UPDATE SET
             failures = t.failures + 1,
             updated_at = now(),
             locked_until = CASE WHEN t.failures + 1 > %(free)s
               THEN now() + make_interval(secs => LEAST(%(cap)s, 2 ^ LEAST(t.failures + 1 - %(free)s, 30)))
               ELSE NULL END""",
        {"u": username, "c": client, "free": THROTTLE_FREE_FAILURES, "cap": THROTTLE_CLIENT_MAX_SECONDS},
    )


def clear_failures(conn: psycopg.Connection, username: str, client: str) -> None:
    """A right password: the username's count and this client's start again (other clients' stay)."""
    conn.execute("DELETE FROM login_throttle WHERE username = %s", (username,))
    conn.execute("DELETE FROM login_throttle_client WHERE username = %s AND client = %s", (username, client))


def unlock(conn: psycopg.Connection, username: str) -> int:
    """Forget every failed login for ``username`` (an operator's `rfarmctl unlock`); how many
    counts (the username's, each client's) were removed."""
    removed = conn.execute("DELETE FROM login_throttle WHERE username = %s", (username,)).rowcount
    removed += conn.execute("DELETE FROM login_throttle_client WHERE username = %s", (username,)).rowcount
    return removed


def prune_throttle(conn: psycopg.Connection) -> int:
    """Drop counts that have seen no failure for a day (made-up names, one-off clients)."""
    idle = "updated_at < now() - interval '1 day' AND (locked_until IS NULL OR locked_until < now())"
    removed = conn.execute(f"DELETE FROM login_throttle WHERE {idle}").rowcount
    removed += conn.execute(f"DELETE FROM login_throttle_client WHERE {idle}").rowcount
    return removed


def create_session(conn: psycopg.Connection, user_id: int, token: str, ttl_seconds: float) -> datetime:
    row = conn.execute(
        """INSERT INTO sessions (token_hash, user_id, expires_at)
           VALUES (%s, %s, now() + make_interval(secs => %s)) RETURNING expires_at""",
        (token_hash(token), user_id, ttl_seconds),
    ).fetchone()
    return row["expires_at"]  # type: ignore[call-overload,no-any-return]


# A session's user and whether the token still holds, as columns (me_*) any statement can carry:
# store.jobs.list_page answers the session and the page in one round trip.
SESSION_COLUMNS = """u.id AS me_id, u.username AS me_username, u.is_admin AS me_is_admin,
                     s.revoked_at IS NOT NULL AS me_revoked, s.expires_at < now() AS me_expired"""
SESSION_JOIN = "sessions s JOIN users u ON u.id = s.user_id"
SESSION_FROM = f"{SESSION_JOIN} WHERE s.token_hash = %(token_hash)s"


def authenticate(conn: psycopg.Connection, token: str) -> User:
    """The user a token belongs to, or an error saying plainly why not."""
    row = conn.execute(f"SELECT {SESSION_COLUMNS} FROM {SESSION_FROM}", {"token_hash": token_hash(token)}).fetchone()
    return session_user(row)  # type: ignore[arg-type]


def session_user(row: dict[str, Any] | None) -> User:
    """The user of a row with SESSION_COLUMNS (None: no such session), or the error saying why not."""
    if row is None or row["me_revoked"]:
        raise RfarmError(ErrorCode.AUTH_TOKEN_INVALID, "you are not logged in (the token is not valid): log in again")
    if row["me_expired"]:
        raise RfarmError(ErrorCode.AUTH_TOKEN_EXPIRED, "your login has expired: log in again")
    return User(row["me_id"], row["me_username"], row["me_is_admin"])


def revoke_session(conn: psycopg.Connection, token: str) -> None:
    conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL",
        (token_hash(token),),
    )
