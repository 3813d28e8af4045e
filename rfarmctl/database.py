"""What `rfarmctl` does to the database itself: migrate it, create an admin, unlock a user, tell whether
it has users."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from rfarmctl.errors import EXIT_REFUSED, CtlError, unreachable


def migrate_database(url: str) -> list[str]:
    """Create the database if needed and apply pending migrations; the names of those applied."""
    from store.migrate import ensure_database, migrate

    try:
        ensure_database(url)
        return [f"{m.version:04d}_{m.name}" for m in migrate(url)]
    except psycopg.OperationalError as exc:
        raise unreachable("PostgreSQL", url, exc) from exc
    except psycopg.Error as exc:
        raise CtlError(EXIT_REFUSED, f"migration failed: {' '.join(str(exc).split())}") from exc
    except RuntimeError as exc:
        raise CtlError(EXIT_REFUSED, f"migration refused: {exc}") from exc


def create_admin(url: str, username: str, password: str) -> str:
    """Create ``username`` as an admin, or promote it when ``password`` is its password."""
    from gateway.passwords import hash_password, verify_password
    from store import users

    try:
        with psycopg.connect(url, row_factory=dict_row, connect_timeout=10) as conn, conn.transaction():
            found = users.credentials(conn, username)
            if found is None:
                users.create_user(conn, username, hash_password(password), is_admin=True)
                return f"created admin {username}"
            if not verify_password(found.password_hash, password):
                raise CtlError(EXIT_REFUSED, f"{username} exists and that is not its password; nothing changed")
            if found.user.is_admin:
                return f"{username} is already an admin"
            users.set_admin(conn, found.user.id, True)
            return f"{username} is now an admin"
    except psycopg.OperationalError as exc:
        raise unreachable("PostgreSQL", url, exc) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise CtlError(EXIT_REFUSED, "the database has no rfarm schema yet: run `rfarmctl migrate`") from exc


def unlock_user(url: str, username: str) -> int:
    """Forget every failed login for ``username``; how many counts were removed."""
    from store import users

    try:
        with psycopg.connect(url, connect_timeout=10) as conn, conn.transaction():
            return users.unlock(conn, username)
    except psycopg.OperationalError as exc:
        raise unreachable("PostgreSQL", url, exc) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise CtlError(EXIT_REFUSED, "the database has no rfarm schema yet: run `rfarmctl migrate`") from exc


def has_users(url: str) -> bool:
    """Whether anyone has registered on the farm whose (migrated) database is at ``url``."""
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM users)").fetchone()
    except psycopg.OperationalError as exc:
        raise unreachable("PostgreSQL", url, exc) from exc
    return bool(row and row[0])
