"""The gateway's request loop driven in-process, against the real PostgreSQL and Redis."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import msgpack
import psycopg
import redis
from psycopg_pool import ConnectionPool

from broker_contracts.envelope import Envelope, Reply
from gateway.context import GatewayConfig
from gateway.transport import RequestLoop

TABLES = ("users", "sessions", "login_throttle", "jobs", "tasks", "job_history", "task_history", "inbox", "outbox")
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

    def call(self, type_: str, body: dict[str, Any], token: str | None = None, *, rid: str | None = None) -> Reply:
        raw = Envelope.new(type_, {}, secrets.token_hex(16), token).model_dump(mode="json")
        raw["body"] = body  # packed as it is: bytes stay bytes, as a hostile sender would send them
        if rid is not None:
            raw["id"] = rid
        reply, to = self.handle(msgpack.packb(raw, use_bin_type=True))
        assert reply is not None and to == raw["reply_to"] and reply.re == raw["id"]
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
