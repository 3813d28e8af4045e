"""Poison messages are dead-lettered after a bounded number of deliveries while the rest flows;
a vanished shell's reply stream expires; every stream stays under its cap under load."""

from __future__ import annotations

import time

import pytest

from broker_contracts.codec import pack, unpack
from broker_contracts.envelope import encode
from broker_contracts.signing import NodeCredential, Signer
from gateway.context import GatewayConfig
from gateway.streams import DEAD_MAXLEN, WORK_MAXLEN
from gateway.transport import REQUESTS_MAXLEN
from render_nodes.link import EVENTS_MAXLEN
from tests.support.farm import Farm, wait_for
from tests.support.wire import Wire, all_terminal, login, submit

pytestmark = pytest.mark.timeout(180)

MAX_DELIVERIES = GatewayConfig().max_deliveries


def dead_letters(farm: Farm, source: str) -> list[dict]:
    out = []
    for _, fields in farm.redis().xrange(farm.keys.dead):
        record = unpack(fields[b"m"])
        if record["source"] == source:
            out.append({**record, "payload": fields.get(b"payload")})
    return out


def test_a_request_that_always_kills_the_gateway_is_dead_lettered(farm: Farm, unique: str) -> None:
    wire = login(farm, f"p{unique}")
    farm.stop()
    mark = f"POISON-{unique}"
    env = {"RFARM_FAULT_POINT": f"poison:{mark}"}
    before = wire.envelope("auth.whoami", {})
    poison = wire.envelope("job.submit", {"name": mark})
    after = wire.envelope("auth.whoami", {})
    for e in (before, poison, after):  # one batch: the innocent ones sit next to the poison
        wire.send(e)
    crashes = 0
    deadline = time.monotonic() + 120
    gw = farm.start_gateway("gw", **env)
    answer = None
    while answer is None and time.monotonic() < deadline:
        answer = wire.wait(poison, timeout=0.5)
        if gw.poll() is not None:
            assert gw.returncode == 88, gw.returncode
            crashes += 1
            farm.procs.pop("gw")
            gw = farm.start_gateway("gw", **env)
    assert answer is not None, f"no answer to the poison after {crashes} crashes"
    assert not answer.ok and answer.error is not None and answer.error.code == "internal", answer
    assert crashes == MAX_DELIVERIES, crashes  # bounded: delivery number MAX_DELIVERIES + 1 gives up
    for innocent in (before, after):  # the others kept flowing
        got = wire.wait(innocent, timeout=10)
        assert got is not None, "an innocent request was never answered"
    [letter] = dead_letters(farm, farm.keys.requests)
    assert f"delivered {MAX_DELIVERIES + 1} times" in letter["reason"], letter
    assert mark.encode() in letter["payload"] and wire.token.encode() not in letter["payload"]  # type: ignore[union-attr]
    assert farm.redis().xpending(farm.keys.requests, "gateway")["pending"] == 0
    fine = wire.call("auth.whoami", {})
    assert fine.ok, fine


def test_an_event_the_ledger_cannot_apply_is_dead_lettered_and_others_flow(farm: Farm, unique: str) -> None:
    wire = login(farm, f"e{unique}")
    bad = {"kind": "heartbeat", "node": f"bad-{unique}", "ts": time.time(),
           "info": {"node": f"bad-{unique}", "pool": "default", "slots": 2**40, "tags": [], "profiles": [],
                    "running": [], "version": "x", "host": "h", "lease": 2.0}}
    r = farm.redis()
    data = pack(bad)  # signed by a node of the farm: it passes the ledger's check and fails to apply
    key = Signer(NodeCredential.parse(farm.credential(f"bad-{unique}")).seed)
    r.xadd(farm.keys.events, {"m": data, "s": key.sign_event(farm.prefix, data)})
    farm.start_node(f"ok-{unique}")
    job_id = submit(wire, "flows", "1-3")
    wait_for(lambda: all_terminal(farm.database_url, [job_id]), timeout=60, what="the job")
    [letter] = wait_for(lambda: dead_letters(farm, farm.keys.events), what="the dead letter")
    assert "could not be applied" in letter["reason"], letter
    assert r.xpending(farm.keys.events, "ledger")["pending"] == 0


def test_a_vanished_shells_reply_stream_expires(farm: Farm, unique: str) -> None:
    wire = login(farm, f"v{unique}")
    farm.stop()
    farm.start_gateway("gw-ttl", "--reply-ttl", "2")
    env = wire.envelope("auth.whoami", {})
    wire.send(env)  # and never read: the shell is gone
    r = farm.redis()
    key = farm.keys.reply(wire.client)
    wait_for(lambda: r.exists(key), what="the reply")
    assert 0 < r.ttl(key) <= 2
    wait_for(lambda: not r.exists(key), timeout=5, what="the reply stream to expire")


def test_streams_stay_under_their_caps_under_load(farm: Farm, unique: str) -> None:
    wire = login(farm, f"c{unique}")
    for n in range(2):
        farm.start_node(f"c{n}-{unique}", "--slots", "4")
    jobs = [submit(wire, f"load{n}", "1-10") for n in range(10)]
    r = farm.redis()
    # a hostile client: thousands of requests, never trimmed, one reply stream it never reads
    hostile = Wire(farm, token=wire.token)
    pipe = r.pipeline(transaction=False)
    for _ in range(3000):
        pipe.xadd(farm.keys.requests, {"m": encode(hostile.envelope("auth.whoami", {}))})
    pipe.execute()
    wait_for(lambda: all_terminal(farm.database_url, jobs), timeout=120, what="the jobs")
    wait_for(lambda: r.xpending(farm.keys.requests, "gateway")["pending"] == 0 and r.xlen(farm.keys.requests) < 200,
             timeout=60, what="the requests to be answered and trimmed")
    lengths = {
        "requests": r.xlen(farm.keys.requests),
        "reply": r.xlen(farm.keys.reply(hostile.client)),
        "events": r.xlen(farm.keys.events),
        "work": r.xlen(farm.keys.work("default")),
        "dead": r.xlen(farm.keys.dead),
    }
    caps = {"requests": REQUESTS_MAXLEN, "reply": GatewayConfig().reply_maxlen + 100, "events": EVENTS_MAXLEN,
            "work": WORK_MAXLEN, "dead": DEAD_MAXLEN}
    print("stream lengths after load:", lengths)
    assert lengths["requests"] < 200, lengths  # answered entries are deleted, not kept until MAXLEN
    for name, cap in caps.items():
        assert lengths[name] <= cap, (name, lengths)
    assert 0 < r.ttl(farm.keys.reply(hostile.client)) <= GatewayConfig().reply_ttl
