"""What strangers and one user can make a real gateway hold: the auth lane under a login flood,
reply streams and watches capped, a huge entry dropped unread."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from broker_contracts.codec import unpack
from broker_contracts.envelope import Envelope, Reply, decode_reply, encode
from gateway.context import GatewayConfig
from gateway.transport import ENTRY_LIMIT
from tests.support.farm import Farm, wait_for
from tests.support.sealing import farm_key, sealed_body
from tests.support.wire import Wire, login, submit

pytestmark = pytest.mark.timeout(240)

CONFIG = GatewayConfig()


def first_replies(farm: Farm, clients: list[str], seen: dict[str, tuple[int, Reply]]) -> dict[str, tuple[int, Reply]]:
    """The first reply on each client's reply stream and when Redis added it (ms), added to
    ``seen``: read as they come, before an error's short-lived stream expires."""
    r = farm.redis()
    pipe = r.pipeline(transaction=False)
    todo = [c for c in clients if c not in seen]
    for client in todo:
        pipe.xrange(farm.keys.reply(client), count=1)
    for client, got in zip(todo, pipe.execute(), strict=True):
        if got:
            eid, fields = got[0]
            msg = decode_reply(fields[b"m"])
            assert isinstance(msg, Reply)
            seen[client] = (int(eid.split(b"-")[0]), msg)
    r.close()
    return seen


def code(reply: Reply) -> str:
    return "ok" if reply.ok else reply.error.code  # type: ignore[union-attr]


def test_a_logged_in_user_is_answered_while_300_strangers_logins_wait(farm: Farm, unique: str) -> None:
    wire = login(farm, f"lane{unique}")
    clients = [secrets.token_hex(16) for _ in range(300)]
    r = farm.redis()
    pipe = r.pipeline(transaction=False)
    key = farm_key(farm.database_url)
    for n, client in enumerate(clients):
        body, _ = sealed_body("auth.login", {"username": f"ghost{unique}{n}", "password": "not-the-password"}, key)
        pipe.xadd(farm.keys.requests, {"m": encode(Envelope.new("auth.login", body, client))})
    mine = wire.envelope("job.list", {"limit": 5})
    pipe.xadd(farm.keys.requests, {"m": encode(mine)})
    pipe.execute()  # the user's request is behind all 300 logins in the stream

    seen: dict[str, tuple[int, Reply]] = {}
    wait_for(
        lambda: len(first_replies(farm, [*clients, wire.client], seen)) == len(clients) + 1,
        timeout=180,
        interval=0.05,
        what="every request to be answered",
    )
    answered_at, answer = seen.pop(wire.client)
    assert answer.re == mine.id and answer.ok, answer
    codes = [code(reply) for _, reply in seen.values()]
    assert set(codes) <= {"auth.invalid_credentials", "rate_limited"}, set(codes)
    hashed = [at for at, reply in seen.values() if code(reply) == "auth.invalid_credentials"]
    # the user was answered while most logins still waited for argon2, not once the flood had
    # drained (Redis's clock, in ms; a login answered in the same ms counts as answered before)
    hashed_before = sum(at <= answered_at for at in hashed)
    assert hashed_before <= len(hashed) // 2, (hashed_before, len(hashed))
    assert codes.count("rate_limited") > 0  # the lane's queue is bounded: the rest are refused at once
    assert r.xpending(farm.keys.requests, "gateway")["pending"] == 0  # every entry acked once answered


def test_reply_streams_per_login_are_capped(farm: Farm, unique: str) -> None:
    wire = login(farm, f"rs{unique}")
    cap = CONFIG.reply_streams_per_login
    r = farm.redis()
    key = farm_key(farm.database_url)
    envelopes = [
        Envelope.new("auth.whoami", {}, secrets.token_hex(16), wire.token, farm_key=key) for _ in range(cap)
    ]
    pipe = r.pipeline(transaction=False)
    for env in envelopes:  # the login's own shell (wire.client) has had no answer on this gateway yet
        pipe.xadd(farm.keys.requests, {"m": encode(env)})
    pipe.execute()
    seen: dict[str, tuple[int, Reply]] = {}
    clients = [env.reply_to for env in envelopes]
    wait_for(lambda: len(first_replies(farm, clients, seen)) == cap, timeout=60, what="the answers")
    assert all(reply.ok for _, reply in seen.values())
    refused = wire.call("auth.whoami", {})  # one reply stream too many for this login
    assert refused.error is not None and refused.error.code == "quota.exceeded", refused
    assert str(cap) in refused.error.message
    again = Wire(farm, token=wire.token)
    again.client = clients[0]  # a stream the login already has still gets answers
    assert again.call("auth.whoami", {}).ok


def test_strangers_reply_streams_are_capped_and_short_lived(farm: Farm, unique: str) -> None:
    cap = CONFIG.anonymous_reply_streams
    r = farm.redis()
    envelopes = [Envelope.new("auth.whoami", {}, secrets.token_hex(16)) for _ in range(cap)]
    pipe = r.pipeline(transaction=False)
    for env in envelopes:
        pipe.xadd(farm.keys.requests, {"m": encode(env)})
    pipe.execute()
    seen: dict[str, tuple[int, Reply]] = {}
    clients = [env.reply_to for env in envelopes]
    wait_for(lambda: len(first_replies(farm, clients, seen)) == cap, timeout=60, what="the answers")
    assert {code(reply) for _, reply in seen.values()} == {"auth.required"}
    # a stream that only ever got an error lapses in seconds, not minutes
    assert 0 < r.ttl(farm.keys.reply(clients[-1])) <= CONFIG.error_reply_ttl
    refused = Wire(farm).call("auth.whoami", {})
    assert refused.error is not None and refused.error.code == "rate_limited", refused
    wait_for(
        lambda: not r.exists(farm.keys.reply(clients[-1])),
        timeout=CONFIG.error_reply_ttl + 5,
        what="the error-only reply stream to expire",
    )
    fine = Wire(farm).call("auth.whoami", {})  # once they lapsed, a stranger is answered again
    assert fine.error is not None and fine.error.code == "auth.required", fine


def test_watches_per_user_are_capped(farm: Farm, unique: str) -> None:
    wire = login(farm, f"wa{unique}")
    job = submit(wire, "watched", "1-3")
    cap = 16  # the default quota (migrations/0007_quotas.sql)
    for n in range(cap):
        assert wire.call("job.watch", {"id": job, "sub": f"s{n}"}).ok
    refused = wire.call("job.watch", {"id": job, "sub": "one-too-many"})
    assert refused.error is not None and refused.error.code == "quota.exceeded", refused
    assert wire.call("job.watch", {"id": job, "sub": "s0"}).ok  # renewing a subscription is not a new one
    r = farm.redis()
    assert r.hlen(farm.keys.watch(job)) == cap


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_huge_entry_is_dead_lettered_unread(farm: Farm, unique: str) -> None:
    wire = login(farm, f"big{unique}")
    gateway = farm.procs["gateway"]
    assert wire.call("auth.whoami", {}).ok
    before = _peak_rss_mib(gateway.pid)
    r = farm.redis()
    size = 96 * 2**20
    r.xadd(farm.keys.requests, {"m": b"\x81" + b"x" * size})
    after = wire.call("auth.whoami", {}, timeout=60)  # behind it in the stream
    assert after.ok, after

    def letters() -> list[dict]:
        return [x for x in (unpack(f[b"m"]) for _, f in r.xrange(farm.keys.dead)) if x["source"] == farm.keys.requests]

    [letter] = wait_for(letters, timeout=60, what="the dead letter")
    # its size: the field's name, the value's first byte and the rest
    assert f"{1 + 1 + size} bytes" in letter["reason"] and str(ENTRY_LIMIT) in letter["reason"], letter
    assert r.xlen(farm.keys.requests) == 0 and r.xpending(farm.keys.requests, "gateway")["pending"] == 0
    grown = _peak_rss_mib(gateway.pid) - before
    assert grown < 16, f"the gateway's peak RSS grew by {grown:.0f} MiB for one {size >> 20} MiB entry"
