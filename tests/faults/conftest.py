"""Fault-test fixtures: farms on a Redis or a PostgreSQL of the test's own, which it may kill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.farm import Farm
from tests.support.servers import PostgresCluster, private_postgres, private_redis


@pytest.fixture
def redis_farm(tmp_path: Path, database_url: str, prefix: str) -> Iterator[tuple[Farm, object]]:
    """A farm whose Redis is private (empty after a restart); yields (farm, redis handle)."""
    with private_redis(tmp_path) as (url, server):
        f = Farm(root=tmp_path, redis_url=url, database_url=database_url, prefix=prefix)
        f.start_gateway()
        try:
            yield f, server
        finally:
            f.stop()


@pytest.fixture
def pg_farm(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[tuple[Farm, PostgresCluster]]:
    """A farm whose PostgreSQL is a private cluster; yields (farm, cluster)."""
    with private_postgres(tmp_path) as (url, cluster):
        f = Farm(root=tmp_path, redis_url=redis_url, database_url=url, prefix=prefix)
        f.start_gateway()
        try:
            yield f, cluster
        finally:
            f.stop()
