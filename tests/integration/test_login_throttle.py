"""Login throttling slows guessing without locking the real user out: the real gateway pipeline and
store on real PostgreSQL and Redis, and the real `rfarmctl unlock`."""

from __future__ import annotations

import secrets
from pathlib import Path

import psycopg
from psycopg import sql

from broker_contracts.envelope import Envelope, Reply, encode
from store import users
from tests.support.farm import Farm
from tests.support.gateway import PASSWORD, Gw
from tests.support.sealing import sealed_body

WRONG = "wrong-password"


def login_from(gw: Gw, client: str, name: str, password: str) -> Reply:
    """auth.login as sent by the shell whose reply address is ``client``."""
    body, _ = sealed_body("auth.login", {"username": name, "password": password}, gw.farm_key)
    env = Envelope.new("auth.login", body, client)
    reply, to = gw.handle(encode(env))
    assert reply is not None and to == client
    return reply


def code(reply: Reply) -> str:
    return "ok" if reply.ok else reply.error.code  # type: ignore[union-attr]


def guess_for_long(gw: Gw, attacker: str, name: str, guesses: int) -> None:
    """Wrong passwords from one client, each after the waits so far have passed (as a patient
    attacker would, without the test waiting for them)."""
    with psycopg.connect(gw.db_url, autocommit=True) as conn:
        for _ in range(guesses):
            conn.execute("UPDATE login_throttle SET locked_until = now() WHERE username = %s", (name,))
            conn.execute("UPDATE login_throttle_client SET locked_until = now() WHERE username = %s", (name,))
            assert code(login_from(gw, attacker, name, WRONG)) == "auth.invalid_credentials"


def minute_passes(gw: Gw, name: str) -> None:
    """A minute later, as far as the throttle can tell."""
    with psycopg.connect(gw.db_url, autocommit=True) as conn:
        for table in ("login_throttle", "login_throttle_client"):
            earlier = sql.SQL(
                "UPDATE {} SET locked_until = locked_until - interval '60 seconds', "
                "updated_at = updated_at - interval '60 seconds' WHERE username = %s"
            )
            conn.execute(earlier.format(sql.Identifier(table)), (name,))


def test_someone_elses_failures_keep_the_real_user_out_a_minute_at_most(gw: Gw, unique: str) -> None:
    name = f"victim{unique}"
    gw.ok("auth.register", {"username": name, "password": PASSWORD})
    attacker, own = secrets.token_hex(16), secrets.token_hex(16)
    guess_for_long(gw, attacker, name, 20)  # 15 past the free ones: the wait would be at its cap
    # guessing stays expensive: the attacker's client is kept waiting, even with the right password
    assert code(login_from(gw, attacker, name, WRONG)) == "rate_limited"
    assert code(login_from(gw, attacker, name, PASSWORD)) == "rate_limited"
    with psycopg.connect(gw.db_url) as conn:
        row = conn.execute(
            "SELECT EXTRACT(EPOCH FROM locked_until - now()) FROM login_throttle WHERE username = %s", (name,)
        ).fetchone()
    assert row is not None and 0 < float(row[0]) <= users.THROTTLE_MAX_SECONDS + 1, row
    minute_passes(gw, name)
    # the real user, from their own shell, is let in; the attacker's client is still held off
    assert code(login_from(gw, attacker, name, PASSWORD)) == "rate_limited"
    assert login_from(gw, own, name, PASSWORD).ok
    assert code(login_from(gw, attacker, name, WRONG)) == "rate_limited"


def test_rfarmctl_unlock_lets_the_user_in_at_once(
    gw: Gw, unique: str, tmp_path: Path, redis_url: str, database_url: str, prefix: str
) -> None:
    name = f"locked{unique}"
    gw.ok("auth.register", {"username": name, "password": PASSWORD})
    guess_for_long(gw, secrets.token_hex(16), name, 12)
    own = secrets.token_hex(16)
    assert code(login_from(gw, own, name, PASSWORD)) == "rate_limited"
    farm = Farm(root=tmp_path, redis_url=redis_url, database_url=database_url, prefix=prefix)
    done = farm.rfarmctl("unlock", name)
    assert done.code == 0 and done.out.strip() == f"unlocked {name}", done
    assert login_from(gw, own, name, PASSWORD).ok
    again = farm.rfarmctl("unlock", name)
    assert again.code == 0 and "no failed logins" in again.out, again
    bad = farm.rfarmctl("unlock")
    assert bad.code == 2 and bad.err.count("\n") == 1 and "Traceback" not in bad.err, bad
