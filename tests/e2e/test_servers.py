"""The servers tests rely on: private ones that go down and come back, embedded ones that keep data."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest
import redis

from rfarmctl.embedded import MAX_BULK, start_embedded_postgres, start_embedded_redis
from tests.support.servers import embedded_postgres, embedded_redis, private_postgres, private_redis


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def _pg_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_private_redis_stops_starts_and_dies(tmp_path: Path) -> None:
    with private_redis(tmp_path) as (url, server):
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        server.stop()
        assert not _redis_answers(url)
        server.start()
        assert _redis_answers(url)
        assert client.get("k") is None  # not persistent: it came back empty
        client.set("k", "v")
        server.kill()
        assert not _redis_answers(url)
        server.start()
        assert client.get("k") is None
        client.close()
    assert not _redis_answers(url)


def test_private_redis_persistent_keeps_data_over_a_restart(tmp_path: Path) -> None:
    with private_redis(tmp_path, persistent=True) as (url, server):
        client = redis.Redis.from_url(url)
        client.xadd("s", {"m": b"x"})
        server.stop()
        server.start()
        assert client.xlen("s") == 1
        client.close()


def test_private_postgres_is_migrated_and_survives_stop_and_kill(tmp_path: Path) -> None:
    with private_postgres(tmp_path) as (url, cluster):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO users (username, password_hash) VALUES ('pat', 'x')")
        cluster.stop()
        assert not _pg_answers(url)
        cluster.start()
        cluster.kill()
        assert cluster.pid is None
        assert not _pg_answers(url)
        cluster.start()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM users WHERE username = 'pat'").fetchone() == (1,)
        data = cluster.data
    assert not _pg_answers(url)
    assert not data.exists()


def test_private_postgres_unmigrated_gives_the_admin_database(tmp_path: Path) -> None:
    with private_postgres(tmp_path, migrated=False) as (url, _cluster):
        assert url.endswith("/postgres")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)


def test_embedded_redis_yields_a_working_url(tmp_path: Path) -> None:
    with embedded_redis(tmp_path) as url:
        assert _redis_answers(url)
    assert not _redis_answers(url)


@pytest.mark.timeout(120)
def test_embedded_postgres_yields_a_working_url(tmp_path: Path) -> None:
    with embedded_postgres(tmp_path) as url:
        assert _pg_answers(url)
    assert not _pg_answers(url)


@pytest.mark.timeout(120)
def test_embedded_servers_of_up_keep_their_data_between_runs(tmp_path: Path) -> None:
    """What `rfarmctl up` relies on: stop it, start it, the jobs are still there."""
    server = start_embedded_redis(tmp_path / "redis")
    client = redis.Redis.from_url(server.url)
    client.xadd("rf:req", {"m": b"kept"})
    client.close()
    server.stop()
    url = server.url
    server = start_embedded_redis(tmp_path / "redis")
    assert server.url == url  # the same address: shells that knew the farm still find it
    client = redis.Redis.from_url(server.url)
    assert client.xlen("rf:req") == 1
    client.close()
    server.stop()

    pg = start_embedded_postgres(tmp_path / "pg")
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    pg.stop()
    assert not pg.running()
    pg = start_embedded_postgres(tmp_path / "pg")
    with psycopg.connect(pg.url()) as conn:
        assert conn.execute("SELECT to_regclass('kept') IS NOT NULL").fetchone() == (True,)
    pg.stop()


def test_embedded_redis_of_up_moves_only_when_its_port_is_taken_and_says_so(tmp_path: Path) -> None:
    said: list[str] = []
    server = start_embedded_redis(tmp_path / "redis", say=said.append)
    port = server.port
    server.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        server = start_embedded_redis(tmp_path / "redis", say=said.append)
        try:
            assert server.port != port and _redis_answers(server.url)
        finally:
            server.stop()
    assert said == [f"port {port}, where this Redis listened last time, is taken: it listens on {server.port} now"]
    server = start_embedded_redis(tmp_path / "redis", say=said.append)  # the new port is the one kept now
    server.stop()
    assert server.port != port and len(said) == 1


def test_embedded_redis_of_up_refuses_a_value_over_1_mib(tmp_path: Path) -> None:
    server = start_embedded_redis(tmp_path / "redis")
    client = redis.Redis.from_url(server.url)
    try:
        assert MAX_BULK == "1mb" and client.config_get("proto-max-bulk-len") == {"proto-max-bulk-len": "1048576"}
        client.xadd("rf:req", {"m": b"x" * (1024 * 1024 - 64)})
        # Redis answers "invalid bulk length" and closes the connection: the client may see either
        with pytest.raises((redis.ResponseError, redis.ConnectionError)) as refused:
            client.xadd("rf:req", {"m": b"x" * (2 * 1024 * 1024)})
        assert isinstance(refused.value, redis.ConnectionError) or "invalid bulk length" in str(refused.value)
        client.connection_pool.disconnect()  # the server may have closed the connection: ask on a new one
        assert client.xlen("rf:req") == 1
    finally:
        client.close()
        server.stop()
