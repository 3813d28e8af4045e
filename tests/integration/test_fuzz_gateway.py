"""Bad input against the gateway's real request loop (in-process, real PostgreSQL and Redis).

Every fuzzed payload gets an error reply or a dead letter, never an exception or an internal
error, and an invalid request writes nothing. Also: SQL-like strings come back verbatim, a reused
request id with another body is refused, and 50 shells registering one name at once make one user.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.public import PublicKey
from pydantic import ValidationError

from broker_contracts.codec import pack
from broker_contracts.envelope import decode_envelope, decode_reply
from broker_contracts.errors import DecodeError
from broker_contracts.keys import GATEWAY_GROUP
from broker_contracts.messages import REQUEST_TYPES, SubmitRequest
from broker_contracts.sealing import seal_token
from broker_contracts.tables import from_table
from gateway.streams import ensure_group
from tests.support.gateway import PASSWORD, Gw
from tests.support.sealing import sealed_body
from tests.support.strategies import NASTY_TEXT, TEXT, VALUES, field_names, mutated_map

FUZZ = settings(max_examples=600, deadline=None, database=None, suppress_health_check=list(HealthCheck))


# --- what a payload should get ----------------------------------------------------------------------


def expected(payload: bytes) -> str:
    """'dead' (undecodable), 'unknown' (unknown type), 'invalid' (body refused) or 'valid'."""
    try:
        env = decode_envelope(payload)
    except DecodeError:
        return "dead"
    row = REQUEST_TYPES.get(env.type)
    if row is None:
        return "unknown"
    try:
        row.body.model_validate(env.body)
    except ValidationError:
        return "invalid"
    return "valid"


# integers at the edges of PostgreSQL's integer types, where a bound missing from a model shows
EDGES = st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), 2**64 - 1, 10**7, -1, 0])
FIELD_VALUES = st.one_of(EDGES, VALUES)

# a valid body per request type, for the fuzzer to start from (then drop fields or change values)
BASE_BODIES: dict[str, dict[str, Any]] = {
    "auth.register": {"username": "fuzzer", "password": PASSWORD},
    "auth.login": {"username": "fuzzer", "password": "not-it"},
    "job.submit": {"name": "fuzzed", "frames": "1-3", "chunk": 2, "renderer": "fractal", "priority": 10},
    "job.list": {"status": "queued", "all": False, "limit": 5},
    "job.history": {"id": 1, "tasks": True},
    "job.priority": {"id": 1, "priority": 5},
    "job.logs": {"id": 1, "frame": 1},
    "job.watch": {"id": 1, "sub": "s1"},
}


def base_body(type_: str, key: PublicKey) -> dict[str, Any]:
    """BASE_BODIES' body of ``type_`` as rfarm sends it (a password sealed to the farm's key)."""
    return sealed_body(type_, dict(BASE_BODIES.get(type_, {})), key)[0]


@st.composite
def payloads(draw: st.DrawFn, token: str, key: PublicKey, job_id: int = 1) -> bytes:
    shape = draw(st.sampled_from(["bytes", "truncated", *["envelope"] * 8]))
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    type_ = draw(st.one_of(st.sampled_from(sorted(REQUEST_TYPES)), st.sampled_from(sorted(REQUEST_TYPES)), TEXT))
    model = REQUEST_TYPES[type_].body if type_ in REQUEST_TYPES else SubmitRequest
    base = base_body(type_, key) if type_ in BASE_BODIES else ({"id": job_id} if "id" in field_names(model) else {})
    if "id" in base:
        base["id"] = job_id  # the caller's own job, so that handlers run past the ownership check
    body = draw(st.one_of(st.just(base), *[mutated_map(field_names(model), base, FIELD_VALUES)] * 4, VALUES))
    raw: dict[str, Any] = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "type": type_,
        "reply_to": secrets.token_hex(16),
        "token": draw(st.sampled_from([token, token, None, "garbage", "\x00", token + "x"])),
        "ts": time.time(),
        "body": body,
    }
    if raw["token"] == token and isinstance(body, dict):  # sealed for this request, as rfarm sends it
        with contextlib.suppress(ValueError, TypeError, OverflowError):  # a body msgpack cannot carry
            raw["token"] = seal_token(key, token, raw["id"], type_, body, raw["reply_to"])
    if draw(st.integers(0, 7)) == 0:  # now and then the envelope itself is wrong
        raw = draw(mutated_map(list(raw), raw))
    try:
        data = msgpack.packb(raw, use_bin_type=True)
    except (ValueError, TypeError, OverflowError):
        data = pack({"v": 1, "id": raw.get("id"), "type": "job.list", "reply_to": "x"})
    if shape == "truncated":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    return data


def test_fuzzed_requests_get_an_answer_or_a_dead_letter_and_invalid_ones_write_nothing(gw: Gw, unique: str) -> None:
    token = gw.user(f"fuzz{unique}")
    job_id = gw.ok("job.submit", {"name": "target", "frames": "1-4"}, token)["id"]
    seen: dict[str, int] = {}

    @FUZZ
    @given(payload=payloads(token, gw.farm_key, job_id))
    def check(payload: bytes) -> None:
        kind = expected(payload)
        seen[kind] = seen.get(kind, 0) + 1
        rows, dead = gw.counts(), gw.dead_count()
        reply, to = gw.handle(payload)  # must not raise
        if reply is not None:
            assert to is not None and len(to) == 32
            assert reply.ok or (reply.error and reply.error.code != "internal"), reply
            assert reply.error is None or "\n" not in reply.error.message
        if kind == "valid":
            assert reply is not None
            return
        assert gw.counts() == rows, f"{kind} input changed rows"
        assert reply is None or not reply.ok
        if kind in ("dead", "unknown"):
            assert gw.dead_count() > dead
        if kind == "unknown":
            assert reply is not None and reply.error is not None and reply.error.code == "request.unknown_type"
        if kind == "invalid":
            assert reply is not None and reply.error is not None and reply.error.code == "request.invalid"
        if reply is None:
            assert kind == "dead"

    check()
    assert all(seen.get(k, 0) > 10 for k in ("dead", "unknown", "invalid", "valid")), seen


@pytest.mark.parametrize("type_", sorted(REQUEST_TYPES))
def test_each_request_type_with_fuzzed_fields_never_fails_inside(gw: Gw, unique: str, type_: str) -> None:
    """Logged in, on the caller's own job: every field of every body gets edge and wrong values."""
    token = gw.user(f"t{unique}{secrets.token_hex(2)}")
    job_id = gw.ok("job.submit", {"name": "target", "frames": "1-4"}, token)["id"]
    model = REQUEST_TYPES[type_].body
    base = base_body(type_, gw.farm_key)
    if "id" in field_names(model):
        base["id"] = job_id

    one_field = st.tuples(st.sampled_from(field_names(model) or ["x"]), FIELD_VALUES).map(
        lambda kv: {**base, kv[0]: kv[1]}
    )

    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(body=st.one_of(one_field, one_field, mutated_map(field_names(model), base, FIELD_VALUES)))
    def check(body: dict[str, Any]) -> None:
        try:
            model.model_validate(body)
            valid = True
        except ValidationError:
            valid = False
        rows = gw.counts()
        reply = gw.call(type_, body, token)
        assert reply.ok or (reply.error is not None and reply.error.code != "internal"), (body, reply)
        if not valid:
            assert reply.error is not None and reply.error.code == "request.invalid"
            assert gw.counts() == rows

    check()


def test_fuzzed_batches_through_process_are_all_acked_and_answered(gw: Gw, unique: str) -> None:
    """The loop's batch path: every entry acked; each readable reply address gets a reply."""
    token = gw.user(f"batch{unique}")
    ensure_group(gw.r, gw.keys.requests, GATEWAY_GROUP)

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(batch=st.lists(payloads(token, gw.farm_key), min_size=1, max_size=8))
    def check(batch: list[bytes]) -> None:
        for payload in batch:
            gw.r.xadd(gw.keys.requests, {"m": payload})
        entries = gw.loop.read()
        assert len(entries) == len(batch)
        gw.loop.process(entries)
        assert gw.r.xpending(gw.keys.requests, GATEWAY_GROUP)["pending"] == 0
        for payload in batch:
            try:
                env = decode_envelope(payload)
            except DecodeError as exc:
                to, rid = exc.reply_to, exc.request_id
            else:
                to, rid = env.reply_to, env.id
            if to and rid:
                got = gw.r.xrange(gw.keys.reply(to))
                assert [decode_reply(f[b"m"]).re for _, f in got] == [rid]  # type: ignore[union-attr]
                assert gw.r.ttl(gw.keys.reply(to)) > 0

    check()


SQLISH = [
    "'); DROP TABLE jobs; --",
    "Robert'); DROP TABLE users;--",
    "1' OR '1'='1",
    "%s%s%s %(name)s $1 :name ?",
    '"; SELECT pg_sleep(10); --',
    "\\'; \\\\ \\x00",
    "ünïcødé ✓ 🎬",
    "a" * 200,
]
# names that could drive a terminal (point 8 of issue 11): refused, never stored
REFUSED_NAMES = ["ünïcødé ✓ 🎬 \u202e", "tab\there", "esc\x1b[2J", "c1\x9b"]


def test_sql_like_and_odd_strings_are_stored_verbatim(gw: Gw, unique: str) -> None:
    token = gw.user(f"sql{unique}")
    gw.lift_quotas(f"sql{unique}")  # up to 150 submits, some minutes more than the shipped 60

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(name=st.one_of(st.sampled_from(SQLISH), st.text(min_size=1, max_size=60), NASTY_TEXT))
    def check(name: str) -> None:
        reply = gw.call("job.submit", {"name": name, "frames": "1-2"}, token)
        try:
            wanted = SubmitRequest.model_validate({"name": name}).name
        except ValidationError:
            assert not reply.ok and reply.error is not None and reply.error.code == "request.invalid"
            return
        assert reply.ok, reply
        job_id = reply.body["id"]  # type: ignore[index]
        shown = gw.ok("job.show", {"id": job_id}, token)
        assert shown["job"]["name"] == wanted
        listed = gw.ok("job.list", {"limit": 1}, token)
        assert from_table(listed, "jobs")["jobs"][0]["name"] == wanted

    check()
    for name in SQLISH:  # the exact strings from the issue, without hypothesis choosing
        job_id = gw.ok("job.submit", {"name": name}, token)["id"]
        assert gw.ok("job.show", {"id": job_id}, token)["job"]["name"] == name
    for name in REFUSED_NAMES:
        reply = gw.call("job.submit", {"name": name}, token)
        assert not reply.ok and reply.error is not None and reply.error.code == "request.invalid", reply
    assert gw.counts()["jobs"] > 0  # the tables are all still there


def test_reused_request_id_with_another_body_is_refused_not_replayed(gw: Gw, unique: str) -> None:
    token = gw.user(f"reuse{unique}")
    rid = str(uuid.uuid4())
    first = gw.call("job.submit", {"name": "original"}, token, rid=rid)
    assert first.ok
    rows = gw.counts()
    again = gw.call("job.submit", {"name": "original"}, token, rid=rid)
    assert again == first  # the same request: the stored reply, no second job
    for type_, body in (
        ("job.submit", {"name": "different"}),
        ("job.submit", {"name": "original", "priority": 99}),
        ("job.cancel", {"id": first.body["id"]}),  # type: ignore[index]
        ("auth.register", {"username": f"x{unique}", "password": PASSWORD}),
    ):
        refused = gw.call(type_, body, token, rid=rid)
        assert not refused.ok and refused.error is not None and refused.error.code == "request.conflict", refused
        assert refused.body is None
    other_token = gw.user(f"reuse2{unique}")
    stolen = gw.call("job.submit", {"name": "original"}, other_token, rid=rid)
    assert stolen.error is not None and stolen.error.code == "request.conflict"  # not the first caller's reply
    rows_after = gw.counts()
    assert rows_after["jobs"] == rows["jobs"]
    assert gw.ok("job.show", {"id": first.body["id"]}, token)["job"]["status"] == "queued"  # type: ignore[index]
