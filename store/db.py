"""The connection pool and the one place where driver errors become rfarm errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


def open_pool(url: str, *, min_size: int = 1, max_size: int = 8, name: str = "rfarm") -> ConnectionPool:
    """A pool whose connections hand out dict rows; it reconnects by itself after an outage."""
    pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": False},
        name=name,
        open=False,
        reconnect_timeout=3600,
        check=ConnectionPool.check_connection,
    )
    pool.open(wait=False)
    return pool


@contextmanager
def transaction(pool: ConnectionPool, *, timeout: float = 10.0) -> Iterator[psycopg.Connection]:
    """One transaction on a pooled connection, with driver errors translated once, here."""
    try:
        with pool.connection(timeout=timeout) as conn, conn.transaction():
            yield conn
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
