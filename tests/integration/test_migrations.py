"""Migrations: applied once, in order, safely from several processes, giving the schema the code uses."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from store.migrate import available, migrate

# What the code reads and writes: every table with the columns the store's SQL names.
EXPECTED = {
    "users": {"id", "username", "password_hash", "is_admin", "created_at"},
    "login_throttle": {"username", "failures", "locked_until"},
    "sessions": {"token_hash", "user_id", "expires_at", "revoked_at"},
    "jobs": {"id", "owner_id", "name", "status", "paused", "renderer", "params", "frame_first", "frame_last",
             "chunk", "priority", "max_attempts", "pool", "requires", "after_job", "frames_total", "frames_done",
             "tasks_total", "reason", "created_at", "updated_at", "started_at", "finished_at"},
    "tasks": {"id", "job_id", "seq", "frame_first", "frame_last", "status", "attempt", "failures", "run_id",
              "done_frames", "work_msg", "node", "pool", "priority", "dispatched_at", "lease_until",
              "started_at", "finished_at", "exit_code", "error"},
    "job_history": {"job_id", "from_status", "to_status", "at", "reason", "actor"},
    "task_history": {"task_id", "job_id", "attempt", "from_status", "to_status", "at", "reason", "actor"},
    "task_logs": {"task_id", "attempt", "node", "output"},
    "task_blocklist": {"job_id", "node", "failures"},
    "inbox": {"request_id", "body_hash", "reply", "created_at"},
    "outbox": {"id", "stream", "payload"},
    "farm_identity": {"one", "farm_id", "created_at"},
    "nodes": {"id", "pool", "slots", "tags", "profiles", "running", "version", "host", "lease", "specs", "state",
              "last_seen"},
    "node_credentials": {"name", "public_key", "created_at", "revoked_at"},
    "signing_keys": {"purpose", "private_key", "public_key", "created_at"},
    # scheduling (migrations/0009): fair share, limits, task timeouts
    "user_shares": {"user_id", "weight"},
    "farm_limits": {"name", "count"},
}
EXPECTED["jobs"] |= {"limits", "task_timeout"}
EXPECTED["tasks"] |= {"owner_id"}


@pytest.fixture
def empty_db(pg_admin_url: str) -> Iterator[str]:
    name = f"rfarm_mig_{secrets.token_hex(4)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_empty_database_gets_the_schema_the_code_uses(empty_db: str) -> None:
    applied = migrate(empty_db)
    assert [m.version for m in applied] == [m.version for m in available()]
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    for table, wanted in EXPECTED.items():
        assert wanted <= columns.get(table, set()), f"{table} lacks {wanted - columns.get(table, set())}"
    assert migrate(empty_db) == []  # applied once


def test_several_migrators_at_once_apply_each_file_once(empty_db: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(len(migrate(empty_db)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [0, 0, 0, len(available())]
    with psycopg.connect(empty_db) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count is not None and count[0] == len(available())


def test_a_changed_applied_migration_is_refused(empty_db: str, tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "0001_first.sql").write_text("CREATE TABLE t (a int);")
    migrate(empty_db, folder)
    (folder / "0001_first.sql").write_text("CREATE TABLE t (a bigint);")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        migrate(empty_db, folder)
