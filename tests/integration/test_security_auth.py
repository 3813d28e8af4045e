"""Passwords, tokens and login throttling, in-process against the real store.

tests/e2e/test_security_auth.py tries the same through the real processes."""

from __future__ import annotations

import hashlib
import re
import secrets
import time

import psycopg
from argon2 import PasswordHasher

from broker_contracts.envelope import Envelope, encode
from gateway.context import GatewayConfig
from gateway.passwords import needs_rehash
from gateway.transport import RequestLoop
from store import users
from tests.support.gateway import PASSWORD, Gw
from tests.support.sealing import opened_login, sealed_body
from tests.support.wire import one_row


def test_passwords_are_argon2id_and_rehashed_when_parameters_change(gw: Gw, unique: str) -> None:
    name = f"hash{unique}"
    gw.ok("auth.register", {"username": name, "password": PASSWORD})
    (stored,) = one_row(gw.db_url, "SELECT password_hash FROM users WHERE username = %s", name)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored and not needs_rehash(stored)

    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)  # yesterday's parameters
    with psycopg.connect(gw.db_url) as conn:
        conn.execute("UPDATE users SET password_hash = %s WHERE username = %s", (weak, name))
    assert needs_rehash(weak)
    gw.ok("auth.login", {"username": name, "password": PASSWORD})
    (rehashed,) = one_row(gw.db_url, "SELECT password_hash FROM users WHERE username = %s", name)
    assert rehashed != weak and rehashed.startswith("$argon2id$") and not needs_rehash(rehashed)
    gw.ok("auth.login", {"username": name, "password": PASSWORD})  # the new hash verifies
    assert one_row(gw.db_url, "SELECT password_hash FROM users WHERE username = %s", name) == (rehashed,)


def test_only_the_token_hash_is_stored_and_logout_revokes(gw: Gw, unique: str) -> None:
    token = gw.user(f"tok{unique}")
    assert len(token) >= 43  # 256 random bits
    digest = hashlib.sha256(token.encode()).digest()
    with psycopg.connect(gw.db_url) as conn:
        rows = conn.execute("SELECT * FROM sessions").fetchall()
        mine = conn.execute("SELECT token_hash FROM sessions WHERE token_hash = %s", (digest,)).fetchall()
    assert len(mine) == 1
    assert token not in repr(rows) and token.encode() not in b"".join(bytes(r[0]) for r in rows)
    assert gw.ok("auth.whoami", {}, token)["username"] == f"tok{unique}"
    gw.ok("auth.logout", {}, token)
    (revoked,) = one_row(gw.db_url, "SELECT revoked_at FROM sessions WHERE token_hash = %s", digest)
    assert revoked is not None
    for type_, body in (("auth.whoami", {}), ("job.list", {}), ("auth.logout", {})):
        reply = gw.call(type_, body, token)
        assert reply.error is not None and reply.error.code == "auth.token_invalid", reply


def test_tokens_expire_after_the_configured_ttl_in_process(gw: Gw, unique: str) -> None:
    short = RequestLoop(gw.r, gw.pool, GatewayConfig(prefix=gw.config.prefix, token_ttl=1), "ttl", gw.loop.stop)
    gw.ok("auth.register", {"username": f"ttl{unique}", "password": PASSWORD})
    body, answer = sealed_body("auth.login", {"username": f"ttl{unique}", "password": PASSWORD}, gw.farm_key)
    env = Envelope.new("auth.login", body, secrets.token_hex(16))
    reply, _ = short.pipeline.handle(encode(env))
    assert reply is not None and reply.ok and isinstance(reply.body, dict) and answer is not None
    token = opened_login(reply.body, answer)["token"]
    assert gw.ok("auth.whoami", {}, token)
    time.sleep(1.3)
    expired = gw.call("auth.whoami", {}, token)
    assert expired.error is not None and expired.error.code == "auth.token_expired"


def test_default_token_lifetime_is_seven_days(gw: Gw, unique: str) -> None:
    assert GatewayConfig().token_ttl == 7 * 24 * 3600
    token = gw.user(f"week{unique}")
    digest = hashlib.sha256(token.encode()).digest()
    (seconds,) = one_row(gw.db_url, "SELECT EXTRACT(EPOCH FROM expires_at - created_at) FROM sessions "
                      "WHERE token_hash = %s", digest)
    assert abs(float(seconds) - 7 * 24 * 3600) < 5


def _answer(gw: Gw, name: str, password: str) -> tuple[str, str]:
    reply = gw.call("auth.login", {"username": name, "password": password})
    assert reply.error is not None, reply
    return reply.error.code, re.sub(r"\d+", "N", reply.error.message.replace(name, "USER"))


def test_throttling_after_five_failures_same_for_unknown_users(gw: Gw, unique: str) -> None:
    known, ghost = f"thr{unique}", f"ghost{unique}"
    gw.ok("auth.register", {"username": known, "password": PASSWORD})
    for _ in range(users.THROTTLE_FREE_FAILURES):  # five free failures: answered at once, alike
        answer = _answer(gw, known, "wrong-password")
        assert answer == _answer(gw, ghost, "wrong-password")
        assert answer[0] == "auth.invalid_credentials"
    # the sixth failure starts a delay: now even the right password is refused, for both alike
    assert _answer(gw, known, "wrong-password") == _answer(gw, ghost, "wrong-password")
    throttled_known = _answer(gw, known, PASSWORD)
    throttled_ghost = _answer(gw, ghost, PASSWORD)
    assert throttled_known == throttled_ghost
    assert throttled_known[0] == "rate_limited"
    # the delay grows with each further failure (doubling, capped)
    waits = []
    with psycopg.connect(gw.db_url) as conn:
        for _ in range(4):
            users.record_failure(conn, known, secrets.token_hex(16))
            row = conn.execute("SELECT EXTRACT(EPOCH FROM locked_until - now()) FROM login_throttle "
                               "WHERE username = %s", (known,)).fetchone()
            assert row is not None
            waits.append(float(row[0]))
    assert waits == sorted(waits) and waits[-1] > 2 * waits[0], waits
    assert max(waits) <= users.THROTTLE_MAX_SECONDS
    with psycopg.connect(gw.db_url) as conn:  # once the delay is over, the right password works again
        conn.execute("UPDATE login_throttle SET locked_until = now() WHERE username = %s", (known,))
    assert gw.ok("auth.login", {"username": known, "password": PASSWORD})["token"]
    (left,) = one_row(gw.db_url, "SELECT count(*) FROM login_throttle WHERE username = %s", known)
    assert left == 0  # a success clears the count
