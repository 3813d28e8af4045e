"""Passwords and tokens through the real processes: none in the logs or dead letters, the gateway's token TTL."""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import time

from broker_contracts.envelope import Envelope, encode
from tests.support.farm import Farm, wait_for
from tests.support.wire import one_row


def test_a_whole_session_logs_no_password_and_no_token(farm: Farm, unique: str) -> None:
    farm.stop()  # run the gateway at DEBUG, where a leak would most likely show
    farm.start_gateway("gw-debug", RFARM_LOG_LEVEL="DEBUG")
    farm.start_node(f"n-{unique}", RFARM_LOG_LEVEL="DEBUG")
    name = f"sess{unique}"
    password = f"pw-{secrets.token_hex(8)}"
    wrong = f"wrong-{secrets.token_hex(8)}"
    assert farm.rfarm("register", name, "--password-stdin", stdin=password + "\n", config=name).code == 0
    assert farm.rfarm("login", name, "--password-stdin", stdin=password + "\n", config=name).code == 0
    token = json.loads((farm.root / name / "credentials").read_text())["token"]
    job = farm.rfarm("submit", "leakcheck", "--frames", "1-2", "--json", config=name)
    assert job.code == 0, job
    assert farm.rfarm("wait", str(job.json()["id"]), config=name, timeout=90).code == 0
    assert farm.rfarm("login", name, "--password-stdin", stdin=wrong + "\n", config="elsewhere").code == 1
    # requests that end as dead letters, carrying the token and a password
    r = farm.redis()
    client = secrets.token_hex(16)
    r.xadd(farm.keys.requests, {"m": encode(Envelope.new("job.explode", {}, client, token))})
    bad_version = Envelope.new("auth.login", {"username": name, "password": password}, client, token)
    r.xadd(farm.keys.requests, {"m": encode(bad_version)[:-3]})  # truncated: does not decode
    raw = bad_version.model_dump(mode="json") | {"v": 99}
    from broker_contracts.codec import pack

    r.xadd(farm.keys.requests, {"m": pack(raw)})
    wait_for(lambda: r.xlen(farm.keys.dead) >= 3, what="three dead letters")
    assert farm.rfarm("logout", config=name).code == 0
    time.sleep(1.0)
    farm.stop()

    logs = farm.logs()
    assert "gateway" in logs.lower() and len(logs) > 500  # the logs were really read
    dead = b"".join(b"".join(fields.values()) for _, fields in r.xrange(farm.keys.dead))
    for secret in (password, wrong, token):
        assert secret not in logs
        assert secret.encode() not in dead
    assert b"<redacted>" in dead
    r.close()


def test_gateway_token_ttl_option_expires_logins(farm: Farm, unique: str) -> None:
    farm.stop()
    argv = [sys.executable, "-m", "gateway", "--name", "gw-ttl", "--token-ttl", "1", "--claim-idle", "2"]
    farm._spawn("gw-ttl", argv)
    name = farm.user(f"ttlgw{unique}")
    token = json.loads((farm.root / name / "credentials").read_text())["token"]
    digest = hashlib.sha256(token.encode()).digest()
    (seconds,) = one_row(
        farm.database_url,
        "SELECT EXTRACT(EPOCH FROM expires_at - created_at) FROM sessions WHERE token_hash = %s",
        digest,
    )
    assert 0.5 < float(seconds) < 1.5
    time.sleep(1.5)
    res = farm.rfarm("whoami", config=name)
    assert res.code == 1 and "expired" in res.err, res
    assert "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1
