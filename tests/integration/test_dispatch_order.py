"""The dispatcher's deal against the real PostgreSQL: users in turn within a priority, weights,
priority over fairness, and a limit never passed, also across two dispatches."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from broker_contracts.messages import SubmitRequest
from broker_contracts.work import NodeHeartbeat
from store import dispatch, limits, nodes, shares, submit, users
from store.db import open_pool, transaction

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool]:
    pool = open_pool(database_url, max_size=2, name="dispatch-order")
    yield pool
    pool.close()


@pytest.fixture
def farm_pool(pool: ConnectionPool) -> str:
    """A pool of its own with one live node offering noop."""
    name = f"p{secrets.token_hex(4)}"
    hb = NodeHeartbeat(node=f"n{name}", pool=name, slots=4, tags=[], profiles=["noop"], running=[], version="t",
                       host="h", lease=30)
    with transaction(pool) as conn:
        nodes.heartbeat(conn, hb)
    return name


def user(pool: ConnectionPool) -> users.User:
    with transaction(pool) as conn:
        return users.create_user(conn, f"u{secrets.token_hex(4)}", "not-a-hash")


def job(pool: ConnectionPool, owner: users.User, where: str, frames: str, **fields: object) -> int:
    body = {"name": "j", "frames": frames, "renderer": "noop", "pool": where, **fields}
    with transaction(pool) as conn:
        return submit.submit(conn, owner, SubmitRequest.model_validate(body))


def take(pool: ConnectionPool, where: str, n: int) -> list[int]:
    """The job ids of the tasks dispatched, in the order they are published."""
    with transaction(pool) as conn:
        return [t["job_id"] for t in dispatch.take_ready(conn, where, n)]


def test_users_take_turns_then_weights_then_priority(pool: ConnectionPool, farm_pool: str) -> None:
    a, b = user(pool), user(pool)
    ja = job(pool, a, farm_pool, "1-20")
    jb = job(pool, b, farm_pool, "1-20")
    assert take(pool, farm_pool, 6) == [ja, jb, ja, jb, ja, jb]
    # each holds 3 now; b weighs 2: b is given slots until it holds twice what a holds (8 for a's 4;
    # at the tie the older job goes first)
    with transaction(pool) as conn:
        shares.set_share(conn, b.username, 2.0)
    assert take(pool, farm_pool, 6) == [jb, jb, jb, jb, ja, jb]
    urgent = job(pool, a, farm_pool, "1-2", priority=90)
    assert take(pool, farm_pool, 3)[:2] == [urgent, urgent]


def test_a_limit_is_never_passed_and_others_go_past_it(pool: ConnectionPool, farm_pool: str) -> None:
    a, b = user(pool), user(pool)
    name = f"lic{secrets.token_hex(3)}"
    with transaction(pool) as conn:
        limits.set_limit(conn, name, 2)
    capped = job(pool, a, farm_pool, "1-10", limits=[name])
    free = job(pool, b, farm_pool, "1-10")
    first = take(pool, farm_pool, 8)
    assert first.count(capped) == 2 and first.count(free) == 6
    assert capped not in take(pool, farm_pool, 8)  # the two dispatched still hold it
    with transaction(pool) as conn:
        assert [(x.name, x.count, x.in_use) for x in limits.listed(conn) if x.name == name] == [(name, 2, 2)]
        limits.set_limit(conn, name, 3)
    assert take(pool, farm_pool, 8).count(capped) == 1
