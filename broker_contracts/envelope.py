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


def first_error(exc: ValidationError) -> str:
    """One line naming the first thing wrong, fit for a user: 'frames: must be …'."""
    err = exc.errors(include_url=False)[0]
    where = _printable(".".join(str(p) for p in err.get("loc", ()) if p != "__root__"))
    msg = _printable(str(err.get("msg", "invalid")).removeprefix("Value error, "))
    return f"{where}: {msg}" if where else msg


def _printable(text: str, limit: int = 80) -> str:
    """Text from the sender (a field name) made safe for one line: control characters escaped, capped."""
    if text.isprintable() and len(text) <= limit:
        return text
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"
