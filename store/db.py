"""The connection pool and the one place where driver errors become rfarm errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from weakref import WeakKeyDictionary

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from broker_contracts.errors import ErrorCode, RfarmError


class StoreUnavailable(RfarmError):
    """PostgreSQL cannot be reached right now; the request should wait and be tried again."""

    def __init__(self, message: str = "the farm's database is unavailable") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


class Conflict(RfarmError):
    """A unique constraint refused a write; ``constraint`` names which."""

    def __init__(self, constraint: str | None, message: str) -> None:
        super().__init__(ErrorCode.REQUEST_INVALID, message)
        self.constraint = constraint


# A database host that drops off the network resets nothing: without these a statement sent on an
# open connection would wait for the kernel's retransmissions (about 15 minutes) and a connect for
# its SYN retries. With them a lost link is an OperationalError (StoreUnavailable) within seconds:
# data unacknowledged for 10 s, or an idle connection unanswered for 5 s + 3 probes of 2 s.
NETWORK_TIMEOUTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}


def open_pool(url: str, *, min_size: int = 1, max_size: int = 8, name: str = "rfarm") -> ConnectionPool:
    """A pool whose connections hand out dict rows; it reconnects by itself after an outage.

    Its connections are in autocommit: a read (``reading``) is sent as it is, with no BEGIN or
    COMMIT, and ``transaction`` opens a transaction block explicitly (psycopg's transaction() on an
    autocommit connection sends BEGIN and COMMIT; nested, it makes a savepoint).
    """
    given = psycopg.conninfo.conninfo_to_dict(url)
    network = {k: v for k, v in NETWORK_TIMEOUTS.items() if k not in given}  # the URL's own win
    pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": True, **network},
        name=name,
        open=False,
        reconnect_timeout=3600,
        check=_check_if_idle,
        configure=_configure,
    )
    pool.open(wait=False)
    return pool


def iso_utc(column: str) -> str:
    """SQL for a timestamptz as the ISO 8601 text the reply models write ("…T…Z"), made by PostgreSQL:
    a page of rows then needs no datetime made and formatted again in Python."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _configure(conn: psycopg.Connection) -> None:
    """Each pooled session: in UTC, and costed for a store that lives in memory.

    UTC: psycopg makes a datetime with the fixed UTC offset, where a zone such as the server's
    Etc/UTC costs a zoneinfo lookup per value (half the CPU of loading a page of jobs).

    random_page_cost 1.1 (the usual setting for SSDs and cached data, against the default 4, which
    prices a random page as a disk seek): the farm's statements reach a few rows by primary key
    (a batch of 50 task ids). At 4, with a `tasks` table of a few thousand rows, the planner found
    one sequential scan of the whole table cheaper than 50 index probes, for every batch.
    """
    conn.execute("SET TIME ZONE 'UTC'; SET random_page_cost = 1.1")


# When each pooled connection last finished a piece of work: a connection busy a moment ago is
# not checked again (a round trip per request); one idle for a while is, before it is handed out.
_last_used: WeakKeyDictionary[psycopg.Connection, float] = WeakKeyDictionary()
CHECK_IDLE_AFTER = 2.0


def _check_if_idle(conn: psycopg.Connection) -> None:
    if time.monotonic() - _last_used.get(conn, 0.0) > CHECK_IDLE_AFTER:
        ConnectionPool.check_connection(conn)


_COLUMN_NAMES: dict[str, list[str]] = {}


def column_names(cur: psycopg.Cursor, query: str) -> list[str]:
    """The names of the columns of the answer ``cur`` holds to ``query`` (text fixed in code, so
    its columns are too): read from the first answer and remembered, since psycopg makes a Column
    object per column per answer to give them (a fifth of the CPU of a page of jobs)."""
    names = _COLUMN_NAMES.get(query)
    if names is None:
        names = _COLUMN_NAMES[query] = [c.name for c in cur.description or ()]
    return names


@contextmanager
def transaction(pool: ConnectionPool, *, timeout: float = 10.0) -> Iterator[psycopg.Connection]:
    """One transaction on a pooled connection, with driver errors translated once, here."""
    with _translated(), pool.connection(timeout=timeout) as conn:
        with conn.transaction():
            yield conn
        _last_used[conn] = time.monotonic()


@contextmanager
def reading(pool: ConnectionPool, *, timeout: float = 10.0) -> Iterator[psycopg.Connection]:
    """A pooled connection (in autocommit) for reads: no BEGIN, no COMMIT, each statement on its own.

    Under READ COMMITTED every statement takes its own snapshot inside a transaction too, so a
    sequence of reads sees nothing different; it only saves two round trips.
    """
    with _translated(), pool.connection(timeout=timeout) as conn:
        yield conn
        _last_used[conn] = time.monotonic()


def reachable(pool: ConnectionPool, *, timeout: float = 2.0) -> bool:
    """Whether PostgreSQL answers a trivial statement now (for a loop that should not take work it
    cannot finish while the database is away)."""
    try:
        with reading(pool, timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except StoreUnavailable:
        return False
    return True


@contextmanager
def _translated() -> Iterator[None]:
    """Driver errors become rfarm errors once, here."""
    try:
        yield
    except pgerrors.UniqueViolation as exc:
        diag = exc.diag
        raise Conflict(diag.constraint_name, "that already exists") from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise StoreUnavailable() from exc
    except pgerrors.AdminShutdown as exc:  # pragma: no cover - subsumed above on most versions
        raise StoreUnavailable() from exc
    except TimeoutError as exc:  # the pool had no connection in time
        raise StoreUnavailable() from exc
    except psycopg.errors.QueryCanceled as exc:
        raise StoreUnavailable("the farm's database took too long") from exc
