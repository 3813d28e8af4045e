"""Fixtures: real Redis and real PostgreSQL, a fresh database and key prefix per test run; the farms built on them.

Nothing here reaches a server until a test asks for a fixture that needs one, so tests/unit runs with none."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest
import redis
from psycopg import sql

from gateway.context import GatewayConfig
from store.db import open_pool
from store.migrate import migrate
from tests.support import blender as blender_support
from tests.support.farm import Farm
from tests.support.gateway import Gw
from tests.support.nodes import NodeRig


def _answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("RFARM_TEST_REDIS_URL")
    if url:
        yield url
        return
    if _answers("redis://127.0.0.1:6379"):
        yield "redis://127.0.0.1:6379/0"
        return
    if os.environ.get("CI"):
        pytest.fail("no Redis answers at 127.0.0.1:6379 and RFARM_TEST_REDIS_URL is not set")
    from tests.support.servers import embedded_redis

    with embedded_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("RFARM_TEST_DATABASE_URL")
    if url:
        yield url
        return
    if _answers("postgresql://127.0.0.1:5432"):
        yield "postgresql://127.0.0.1:5432/postgres"
        return
    if os.environ.get("CI"):
        pytest.fail("no PostgreSQL answers at 127.0.0.1:5432 and RFARM_TEST_DATABASE_URL is not set")
    from tests.support.servers import embedded_postgres

    with embedded_postgres(tmp_path_factory.mktemp("pg")) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str, run_id: str) -> Iterator[str]:
    """A database of this test run's own, migrated, dropped at the end."""
    name = f"rfarm_test_{run_id}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    migrate(url)
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def blender() -> str:
    """The blender executable: under CI a missing one fails the test (CI installs it), else skips it."""
    found = blender_support.find()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("blender is not installed (CI installs it: apt-get install -y blender)")
        pytest.skip("blender is not installed (apt-get install -y blender)")
    return found


@pytest.fixture(scope="session")
def scenes(blender: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tiny .blend files made by Blender: cube.blend (12 frames), nocamera.blend."""
    folder = tmp_path_factory.mktemp("scenes")
    blender_support.make_scene(blender, blender_support.CUBE, folder / "cube.blend")
    blender_support.make_scene(blender, blender_support.NO_CAMERA, folder / "nocamera.blend")
    return folder


@pytest.fixture
def prefix(redis_url: str, run_id: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = f"rft{run_id}{secrets.token_hex(3)}"
    yield value
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{value}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@pytest.fixture
def farm(tmp_path: Path, redis_url: str, database_url: str, prefix: str) -> Iterator[Farm]:
    """A gateway (started) and the means to start nodes and run `rfarm`; all stopped afterwards."""
    f = Farm(root=tmp_path, redis_url=redis_url, database_url=database_url, prefix=prefix)
    f.start_gateway()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture
def gw(redis_url: str, database_url: str, prefix: str) -> Iterator[Gw]:
    """The gateway's request loop in-process, on its own pool and Redis client, closed afterwards."""
    pool = open_pool(database_url, max_size=4, name="fuzz")
    pool.wait(timeout=10)
    r = redis.Redis.from_url(redis_url)
    try:
        yield Gw(r, pool, GatewayConfig(prefix=prefix))
    finally:
        pool.close()
        r.close()


@pytest.fixture
def rig(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[NodeRig]:
    """Render nodes against Redis with no gateway: work put in by hand, their reports read back."""
    r = NodeRig(redis_url, prefix, tmp_path)
    yield r
    r.close()


@pytest.fixture
def unique() -> str:
    """A short random suffix for usernames, so tests sharing a database never collide."""
    return secrets.token_hex(3)
