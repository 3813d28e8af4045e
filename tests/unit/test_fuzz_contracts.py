"""Property-based fuzzing of the pure edge: the msgpack decoder, the envelope and every message model.

Whatever bytes arrive, decoding ends in a value or a typed DecodeError / ValidationError, never
any other exception. The two widest properties run 5,000 examples each, the others 1,000-1,500.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from broker_contracts.codec import MAX_MESSAGE_BYTES, pack, unpack
from broker_contracts.envelope import Envelope, decode_envelope, decode_reply, encode
from broker_contracts.errors import DecodeError, ErrorCode
from broker_contracts.messages import REQUEST_TYPES, SubmitRequest
from broker_contracts.work import NodeEvent, WorkItem
from tests.support.strategies import TEXT, VALUES, field_names, fuzz_examples, mutated_map

_QUIET = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}
BIG = settings(max_examples=fuzz_examples(5000), **_QUIET)
MEDIUM = settings(max_examples=fuzz_examples(1500), **_QUIET)
SMALL = settings(max_examples=fuzz_examples(1000), **_QUIET)

# --- strategies -------------------------------------------------------------------------------------

KNOWN_TYPES = sorted(REQUEST_TYPES)
TYPES = st.one_of(st.sampled_from(KNOWN_TYPES), TEXT, st.sampled_from(["job.explode", "JOB.SUBMIT", "auth.login "]))

ENVELOPE_FIELDS = ("v", "id", "type", "reply_to", "token", "ts", "body")


def valid_envelope_raw(type_: str, body: dict[str, Any]) -> dict[str, Any]:
    return Envelope.new(type_, body, reply_to="a" * 32, token="t" * 43).model_dump(mode="json")


def _raises_only_decode_error(data: bytes) -> Envelope | None:
    try:
        return decode_envelope(data)
    except DecodeError as exc:
        assert exc.code in set(ErrorCode)
        assert exc.message and "\n" not in exc.message
        assert exc.reply_to is None or len(exc.reply_to) == 32
        return None


# --- the decoder ------------------------------------------------------------------------------------


@BIG
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    _raises_only_decode_error(data)


@MEDIUM
@given(VALUES)
def test_any_msgpack_value_decodes_or_is_refused(value: Any) -> None:
    try:
        data = msgpack.packb(value, use_bin_type=True)
    except (ValueError, TypeError, OverflowError):
        return
    _raises_only_decode_error(data)


@MEDIUM
@given(
    type_=TYPES,
    fields=st.data(),
)
def test_envelopes_with_wrong_missing_and_extra_fields(type_: str, fields: st.DataObject) -> None:
    base = valid_envelope_raw("job.list", {})
    raw = fields.draw(mutated_map(list(ENVELOPE_FIELDS), base))
    raw.setdefault("type", type_)
    try:
        data = msgpack.packb(raw, use_bin_type=True)
    except (ValueError, TypeError, OverflowError):
        return
    env = _raises_only_decode_error(data)
    if env is not None:  # whatever got through satisfies every rule of the envelope
        uuid.UUID(env.id)
        assert len(env.reply_to) == 32 and int(env.reply_to, 16) >= 0
        assert env.v == 1 and len(env.type) <= 64
        assert isinstance(env.body, dict)


@SMALL
@given(type_=st.sampled_from(KNOWN_TYPES), cut=st.integers(min_value=0, max_value=10_000))
def test_truncated_messages_are_refused(type_: str, cut: int) -> None:
    data = pack(valid_envelope_raw(type_, {"name": "a job", "id": 5}))
    cut = cut % len(data)
    with pytest.raises(DecodeError) as caught:
        decode_envelope(data[:cut])
    assert caught.value.code == ErrorCode.REQUEST_INVALID


@SMALL
@given(depth=st.integers(min_value=1, max_value=60_000), kind=st.sampled_from([b"\x91", b"\x81\xa1k"]))
def test_deeply_nested_messages_are_refused(depth: int, kind: bytes) -> None:
    nested = kind * depth + b"\xc0"
    # the nesting as the whole message, and inside a well-formed envelope's body
    prefix = pack(valid_envelope_raw("job.submit", {}))
    body_at = prefix.rindex(b"\xa4body") + 5
    inside = prefix[:body_at] + b"\x81\xa1x" + nested
    for data in (nested, inside):
        if len(data) > MAX_MESSAGE_BYTES:
            with pytest.raises(DecodeError) as caught:
                decode_envelope(data)
            assert caught.value.code == ErrorCode.REQUEST_TOO_LARGE
        else:
            _raises_only_decode_error(data)


@SMALL
@given(extra=st.integers(min_value=1, max_value=200_000), filler=st.sampled_from([b"\x00", b"\xff", b"\x91"]))
def test_oversized_messages_are_refused_before_decoding(extra: int, filler: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_envelope(filler * (MAX_MESSAGE_BYTES + extra))
    assert caught.value.code == ErrorCode.REQUEST_TOO_LARGE
    big = pack(valid_envelope_raw("job.submit", {"name": "x" * (MAX_MESSAGE_BYTES + extra)}))
    with pytest.raises(DecodeError):
        decode_envelope(big)


@SMALL
@given(bad=st.binary(min_size=1, max_size=30), where=st.sampled_from(["type", "id", "key", "body"]))
def test_invalid_utf8_is_refused(bad: bytes, where: str) -> None:
    try:
        bad.decode("utf-8")
        bad = b"\xff" + bad  # make it invalid
    except UnicodeDecodeError:
        pass
    raw_str = bytes([0xD9, len(bad)]) + bad  # msgpack str8 holding bytes that are not UTF-8
    good = valid_envelope_raw("job.list", {})
    if where == "key":
        data = b"\x81" + raw_str + b"\x01"
    elif where == "body":
        data = pack({k: v for k, v in good.items() if k != "body"})
        data = bytes([data[0] + 1]) + data[1:] + b"\xa4body\x81\xa4name" + raw_str
    else:
        parts = {k: v for k, v in good.items() if k != where}
        data = pack(parts)
        data = bytes([data[0] + 1]) + data[1:] + pack(where) + raw_str
    with pytest.raises(DecodeError):
        decode_envelope(data)


@SMALL
@given(st.binary(max_size=200))
def test_reply_decoder_never_crashes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_reply(data)


def test_the_codec_refuses_non_bytes() -> None:
    for value in (None, "text", 5, ["x"]):
        with pytest.raises(DecodeError):
            unpack(value)  # type: ignore[arg-type]


# --- every request body, node events and work items -------------------------------------------------


def _check_model(model: type[BaseModel], raw: Any) -> BaseModel | None:
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        assert exc.errors(include_url=False)
        return None
    # whatever validates survives the wire: dump, pack, unpack and validate again to the same thing
    again = model.model_validate(unpack(pack(parsed.model_dump(mode="json", by_alias=True))))
    assert again == parsed
    return parsed


BODY_MODELS = sorted({row.body for row in REQUEST_TYPES.values()}, key=lambda m: m.__name__)


@st.composite
def request_bodies(draw: st.DrawFn) -> tuple[type[BaseModel], Any]:
    model = draw(st.sampled_from(BODY_MODELS))
    shape = draw(st.sampled_from(["mutated", "mutated", "value"]))
    if shape == "value":
        return model, draw(VALUES)
    return model, draw(mutated_map(field_names(model)))


@BIG
@given(request_bodies())
def test_every_request_body_model_validates_or_refuses(case: tuple[type[BaseModel], Any]) -> None:
    model, raw = case
    parsed = _check_model(model, raw)
    if isinstance(parsed, SubmitRequest):
        assert parsed.name == parsed.name.strip() and parsed.name
        assert not any((ord(c) < 32 and c not in "\t\n") or ord(c) == 127 for c in parsed.name)
        assert 0 <= parsed.priority <= 100
        assert all("\x00" not in v for v in parsed.params.values())


@MEDIUM
@given(st.data())
def test_node_events_and_work_items_validate_or_refuse(data: st.DataObject) -> None:
    model = data.draw(st.sampled_from([NodeEvent, WorkItem]))
    base: dict[str, Any]
    if model is NodeEvent:
        base = {"kind": "started", "node": "n1", "ts": 1.0, "task_id": 1, "job_id": 1, "run": "r" * 32}
    else:
        base = {"task_id": 1, "job_id": 1, "seq": 0, "first": 1, "last": 1, "renderer": "fractal",
                "dispatched_at": 1.0}
    raw = data.draw(st.one_of(mutated_map(field_names(model), base), VALUES))
    parsed = _check_model(model, raw)
    if isinstance(parsed, NodeEvent) and parsed.ts is not None:
        assert isinstance(parsed.ts, float)
        assert parsed.kind in ("started", "progress", "log", "succeeded", "failed", "released", "heartbeat", "bye")


@SMALL
@given(name=TEXT)
def test_sql_like_names_are_kept_verbatim_by_the_contract(name: str) -> None:
    try:
        req = SubmitRequest.model_validate({"name": name})
    except ValidationError:
        return
    assert req.name == name.strip()
    again = decode_envelope(encode(Envelope.new("job.submit", req.model_dump(), "b" * 32)))
    assert SubmitRequest.model_validate(again.body).name == req.name
