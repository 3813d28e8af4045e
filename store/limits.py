"""Named limits (migrations/0009): counters an operator sets, which the tasks of jobs naming them
take while running or dispatched. The dispatcher asks ``room`` under the limits' row locks."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.states import TaskStatus
from store.statuses import literal


@dataclass(frozen=True)
class Limit:
    name: str
    count: int
    in_use: int


def held_by(t: str) -> str:
    """A task (alias ``t``) that holds a slot and its job's limits: running, or dispatched and not
    yet started (the predicate of the index tasks_held, migrations/0009)."""
    queued, running = literal(TaskStatus.QUEUED), literal(TaskStatus.RUNNING)
    return f"({t}.status = {running} OR ({t}.status = {queued} AND {t}.dispatched_at IS NOT NULL))"


def _in_use(names: str) -> str:
    """Tasks holding each limit named by the expression ``names`` (a text[]), per name."""
    return f"""SELECT l AS name, count(*)::int AS n FROM tasks t JOIN jobs j ON j.id = t.job_id,
                      unnest(j.limits) AS l
               WHERE {held_by("t")} AND j.limits && {names} AND l = ANY({names}) GROUP BY l"""


def room(conn: psycopg.Connection, names: list[str]) -> dict[str, int]:
    """How many more tasks each set limit of ``names`` admits, with the limits' rows locked until
    the transaction ends (a limit not set is left out: it caps nothing).

    The count of what holds them is a statement of its own, after the lock: under READ COMMITTED
    it sees every dispatch that held the lock before this one committed."""
    counts = {
        r["name"]: r["count"]  # type: ignore[call-overload]
        for r in conn.execute(
            "SELECT name, count FROM farm_limits WHERE name = ANY(%s) ORDER BY name FOR UPDATE", (names,)
        ).fetchall()
    }
    if not counts:
        return {}
    used = {r["name"]: r["n"] for r in conn.execute(_in_use("%(names)s::text[]"), {"names": list(counts)})}  # type: ignore[call-overload]
    return {name: max(0, count - used.get(name, 0)) for name, count in counts.items()}


def set_limit(conn: psycopg.Connection, name: str, count: int) -> None:
    if count < 0:
        raise RfarmError(ErrorCode.REQUEST_INVALID, "a limit's count is 0 or more")
    conn.execute(
        """INSERT INTO farm_limits (name, count) VALUES (%s, %s)
           ON CONFLICT (name) DO UPDATE SET count = EXCLUDED.count, updated_at = now()""",
        (name, count),
    )


def unset(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM farm_limits WHERE name = %s", (name,)).rowcount == 1


def listed(conn: psycopg.Connection) -> list[Limit]:
    rows = conn.execute("SELECT name, count FROM farm_limits ORDER BY name").fetchall()
    names = [r["name"] for r in rows]  # type: ignore[call-overload]
    used = (
        {r["name"]: r["n"] for r in conn.execute(_in_use("%(names)s::text[]"), {"names": names})}  # type: ignore[call-overload]
        if names
        else {}
    )
    return [Limit(r["name"], r["count"], used.get(r["name"], 0)) for r in rows]  # type: ignore[call-overload]


def missing(conn: psycopg.Connection, names: list[str]) -> list[str]:
    """The names of ``names`` that are not set."""
    found = {r["name"] for r in conn.execute("SELECT name FROM farm_limits WHERE name = ANY(%s)", (names,))}  # type: ignore[call-overload]
    return sorted(set(names) - found)
