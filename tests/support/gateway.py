"""The gateway's request loop driven in-process, against the real PostgreSQL and Redis."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import msgpack
import psycopg
import redis
from nacl.public import PublicKey
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from broker_contracts.envelope import Envelope, Reply
from broker_contracts.sealing import seal_token
from gateway.context import GatewayConfig
from gateway.transport import RequestLoop
from store import quotas
from tests.support.sealing import opened_login, sealed_body

TABLES = (
    "users", "sessions", "login_throttle", "jobs", "tasks", "job_history", "task_history", "inbox", "outbox",
    "user_load",
)
PASSWORD = "correct-horse-battery"


class Gw:
    """A RequestLoop driven directly: payload in, (reply, where) out; plus row counts."""

    def __init__(self, r: redis.Redis, pool: ConnectionPool, config: GatewayConfig) -> None:
        self.r = r
        self.pool = pool
        self.config = config
        self.keys = config.keys
        self.loop = RequestLoop(r, pool, config, f"fuzz-{secrets.token_hex(2)}", threading.Event())

    def handle(self, payload: bytes) -> tuple[Reply | None, str | None]:
        return self.loop.pipeline.handle(payload)

    @property
    def farm_key(self) -> PublicKey:
        return self.loop.pipeline.key.public

    def call(self, type_: str, body: dict[str, Any], token: str | None = None, *, rid: str | None = None) -> Reply:
        """As rfarm sends it: a login's or register's password and the token sealed to the farm's key
        (the token for this request); a login's reply comes back with its token opened."""
        wire, answer = sealed_body(type_, body, self.farm_key)
        raw = Envelope.new(type_, {}, secrets.token_hex(16)).model_dump(mode="json")
        raw["body"] = wire  # packed as it is: bytes stay bytes, as a hostile sender would send them
        if rid is not None:
            raw["id"] = rid
        if token is not None:
            raw["token"] = seal_token(self.farm_key, token, raw["id"], type_, wire, raw["reply_to"])
        reply, to = self.handle(msgpack.packb(raw, use_bin_type=True))
        assert reply is not None and to == raw["reply_to"] and reply.re == raw["id"]
        if answer is not None and reply.ok and isinstance(reply.body, dict):
            return reply.model_copy(update={"body": opened_login(reply.body, answer)})
        return reply

    def ok(self, type_: str, body: dict[str, Any], token: str | None = None) -> Any:
        reply = self.call(type_, body, token)
        assert reply.ok, reply
        return reply.body

    def user(self, name: str, *, admin: bool = False, password: str = PASSWORD) -> str:
        """Register (admin: then promote) and log in; returns the token."""
        self.ok("auth.register", {"username": name, "password": password})
        if admin:
            with psycopg.connect(self.db_url) as conn:
                conn.execute("UPDATE users SET is_admin = true WHERE username = %s", (name,))
        return str(self.ok("auth.login", {"username": name, "password": password})["token"])

    def lift_quotas(self, name: str) -> None:
        """As an operator would for a load test: ``name``'s quotas out of the way, for a test that
        submits more than the shipped 60 jobs a minute and is not about quotas."""
        with psycopg.connect(self.db_url, row_factory=dict_row) as conn, conn.transaction():
            quotas.set_user(conn, name, dict.fromkeys(quotas.FIELDS, 1_000_000_000))

    @property
    def db_url(self) -> str:
        return str(self.pool.conninfo)

    def counts(self) -> dict[str, int]:
        query = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in TABLES)
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute(query).fetchone()
        assert row is not None
        return dict(zip(TABLES, row, strict=True))

    def dead_count(self) -> int:
        return int(self.r.xlen(self.keys.dead))
