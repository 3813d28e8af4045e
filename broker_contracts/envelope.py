"""The request envelope, the reply, and pushed notices: the three shapes that cross Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from nacl.public import PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from broker_contracts.codec import MAX_MESSAGE_BYTES, pack, unpack
from broker_contracts.errors import DecodeError, ErrorCode
from broker_contracts.keys import valid_client_id
from broker_contracts.sealing import seal_token

SCHEMA_VERSION = 1


class Envelope(BaseModel):
    """A request from a shell. ``id`` is a uuid and also the idempotency key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = SCHEMA_VERSION
    id: str
    type: str = Field(max_length=64)
    reply_to: str
    token: str | None = Field(default=None, max_length=256)
    ts: float = Field(default_factory=time.time)
    body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except (ValueError, AttributeError, TypeError):
            raise ValueError("id must be a uuid") from None

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str) -> str:
        if not valid_client_id(value):
            raise ValueError("reply_to must be 32 lowercase hex digits")
        return value

    @classmethod
    def new(
        cls,
        type_: str,
        body: dict[str, Any],
        reply_to: str,
        token: str | None = None,
        *,
        farm_key: PublicKey | None = None,
    ) -> Envelope:
        """A new request; its ``token`` sealed to ``farm_key`` for this request alone (a gateway
        refuses a token in clear: given no key, it is sent as it is, to be refused)."""
        env = cls(id=str(uuid.uuid4()), type=type_, reply_to=reply_to, body=body)
        if not token:
            return env
        if farm_key is not None:  # bound to the body as it is encoded, which the gateway decodes
            wire_body = env.model_dump(mode="json")["body"]
            token = seal_token(farm_key, token, env.id, env.type, wire_body, env.reply_to)
        return env.model_copy(update={"token": token})


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    message: str


class Reply(BaseModel):
    """The answer to one request. ``kind`` tells replies from pushed notices on a reply stream."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["reply"] = "reply"
    re: str
    ok: bool
    body: dict[str, Any] | list[Any] | None = None
    error: ErrorBody | None = None

    @classmethod
    def success(cls, request_id: str, body: dict[str, Any]) -> Reply:
        """``body`` is built by the gateway and already wire-ready: it is not validated again."""
        return cls.model_construct(re=request_id, ok=True, body=body, error=None)

    @classmethod
    def failure(cls, request_id: str, code: ErrorCode | str, message: str) -> Reply:
        return cls(re=request_id, ok=False, error=ErrorBody(code=str(code), message=message))


class Notice(BaseModel):
    """Something the farm pushes to a shell without being asked again (a watched job changed)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["notice"] = "notice"
    topic: str
    sub: str
    body: dict[str, Any] = Field(default_factory=dict)


def encode(model: BaseModel) -> bytes:
    return pack(model.model_dump(mode="json"))


def encode_reply(reply: Reply) -> bytes:
    """What ``encode(reply)`` gives, without walking the body through pydantic: a reply body is
    wire-ready when it is made (a reply model's JSON dump, or rows the gateway made JSON-safe), and
    a page of 50 jobs took as long to re-serialize as to fetch."""
    error = {"code": reply.error.code, "message": reply.error.message} if reply.error else None
    return pack({"kind": "reply", "re": reply.re, "ok": reply.ok, "body": reply.body, "error": error})


def decode_envelope(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Envelope:
    """Bytes from the request stream to an Envelope, or DecodeError carrying what could be read."""
    raw = unpack(data, max_bytes=max_bytes)
    if not isinstance(raw, dict):
        raise DecodeError(ErrorCode.REQUEST_INVALID, "a request must be a map")
    reply_to = raw.get("reply_to")
    reply_to = reply_to if isinstance(reply_to, str) and valid_client_id(reply_to) else None
    req_id = raw.get("id")
    req_id = req_id if isinstance(req_id, str) and len(req_id) <= 64 else None
    if raw.get("v") != SCHEMA_VERSION:
        raise DecodeError(
            ErrorCode.REQUEST_INVALID,
            f"unsupported schema version {_printable(repr(raw.get('v')), 24)}; this farm speaks {SCHEMA_VERSION}",
            reply_to=reply_to,
            request_id=req_id,
        )
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        raise DecodeError(
            ErrorCode.REQUEST_INVALID,
            f"bad envelope: {first_error(exc)}",
            reply_to=reply_to,
            request_id=req_id,
        ) from None


def decode_reply(data: bytes) -> Reply | Notice:
    raw = unpack(data, max_bytes=4 * MAX_MESSAGE_BYTES)
    if not isinstance(raw, dict):
        raise DecodeError(ErrorCode.REQUEST_INVALID, "a reply must be a map")
    try:
        if raw.get("kind") == "notice":
            return Notice.model_validate(raw)
        return Reply.model_validate(raw)
    except ValidationError as exc:
        raise DecodeError(ErrorCode.REQUEST_INVALID, f"bad reply: {first_error(exc)}") from None


def first_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line naming the first thing wrong, in rfarm's words: 'priority must be between 0 and 100'.

    ``model`` (the model that refused the data) lets a range name both of its bounds."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
    where = _printable(".".join(loc))
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind in _BOUNDS:
        said = _range(model, loc, ctx) or _BOUNDS[kind].format(**ctx)
    elif kind == "string_too_short" and ctx.get("min_length") == 1:
        said = "must not be empty"
    elif kind in _WORDS:
        said = _WORDS[kind].format(**ctx)
    elif kind in ("enum", "literal_error"):
        said = "must be one of " + str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
    else:
        said = _printable(str(err.get("msg", "invalid")).removeprefix("Value error, "), 200)
        if where and not said.startswith(("must ", "is ")):
            return f"{where}: {said}"
    return f"{where} {said}" if where else said


# pydantic's error types in rfarm's words (the field's name goes before them)
_BOUNDS = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
}
_WORDS = {
    "missing": "is required",
    "extra_forbidden": "is not a field rfarm knows here",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "string_too_short": "must be at least {min_length} characters long",
    "string_too_long": "must be at most {max_length} characters long",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "dict_type": "must be a map of names to values",
    "list_type": "must be a list",
    "model_type": "must be a map",
    "model_attributes_type": "must be a map",
    "datetime_type": "must be a time",
    "datetime_parsing": "must be a time",
}


def _range(model: type[BaseModel] | None, loc: list[str], ctx: dict[str, Any]) -> str | None:
    """'must be between 0 and 100' when the field declares both bounds (pydantic says only one)."""
    if model is None or len(loc) != 1 or loc[0] not in model.model_fields:
        return None
    low = high = None
    for rule in model.model_fields[loc[0]].metadata:
        low = getattr(rule, "ge", None) if getattr(rule, "ge", None) is not None else low
        high = getattr(rule, "le", None) if getattr(rule, "le", None) is not None else high
    if low is None or high is None:
        return None
    return f"must be between {low} and {high}"


def _printable(text: str, limit: int = 80) -> str:
    """Text from the sender (a field name) made safe for one line: control characters escaped, capped."""
    if text.isprintable() and len(text) <= limit:
        return text
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"
