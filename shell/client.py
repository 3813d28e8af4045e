"""Request/reply over Redis Streams: XADD an Envelope, XREAD the client's own reply stream.

One ``Client`` per process (one client id). Redis errors are translated here, once, into the
shell's own errors: ``NoAnswer`` (exit 3) for anything that means "the farm is not reachable".
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis
from nacl.public import PublicKey

import broker_client
from broker_contracts.config import redact_url as redact
from broker_contracts.envelope import Envelope, Notice, Reply, decode_reply, encode
from broker_contracts.errors import DecodeError, ErrorCode
from broker_contracts.keys import Keys
from broker_contracts.sealing import fingerprint, public_key
from broker_contracts.streamids import refused_for_its_ids
from shell.errors import FarmError, NoAnswer, Refused, Unreachable
from shell.farmkey import PinnedKeys

REQUEST_MAXLEN = 100_000
DEFAULT_TIMEOUT = 10.0
_BLOCK_SLICE_MS = 1000
_RECONNECT_PAUSE = 0.5
_ANNOUNCE_POLL = 0.2
_KEY_POLL = 0.2

T = TypeVar("T")


class Client:
    """Talks to the gateway; never raises a redis exception to its caller."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        source: str = "",
        pins: PinnedKeys | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.pins = pins
        self._farm_key: PublicKey | None = None
        self.keys = Keys(prefix)
        self.timeout = timeout
        # which address, and where it came from (environment, a farm.env, the default), for messages
        self.where = f"{redact(redis_url)} (from {source})" if source else redact(redis_url)
        self.client_id = secrets.token_hex(16)
        self.reply_key = self.keys.reply(self.client_id)
        self._last_id = "0-0"
        self._notices: deque[Notice] = deque(maxlen=1000)
        self._reached = False  # once Redis has answered, a lost connection is waited out, not fatal
        try:
            self._redis = broker_client.connect(
                redis_url, socket_connect_timeout=min(timeout, 5.0), socket_timeout=timeout + 5.0
            )
        except ValueError as exc:
            raise NoAnswer(f"cannot use Redis URL {self.where}: {exc}") from None

    def close(self) -> None:
        self._redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- requests ---------------------------------------------------------------------------

    def envelope(self, type_: str, body: dict[str, Any], token: str | None) -> Envelope:
        """The request; its token (if any) sealed to the farm's key for this request alone."""
        farm_key = self.farm_key() if token else None
        return Envelope.new(type_, body, reply_to=self.client_id, token=token, farm_key=farm_key)

    def farm_key(self, *, accept_new: bool = False) -> PublicKey:
        """The farm's public key, which secrets are sealed to: the one its gateways announce, which
        must be the one pinned when this shell first met the farm (else FarmError, unless
        ``accept_new``: then the announced key is pinned instead). Asked of Redis once per client."""
        if self._farm_key is not None and not accept_new:
            return self._farm_key
        pinned = self.pins.get() if self.pins is not None else None
        announced = self._announced_key(wait=pinned is None)
        if announced is None or announced == pinned:
            key = pinned
        elif pinned is not None and not accept_new:
            raise FarmError(
                f"the farm's key changed (pinned {fingerprint(pinned)}, now {fingerprint(announced)}): if an "
                "operator replaced it, run `rfarm login USER --accept-new-farm-key`",
                ErrorCode.FARM_KEY_CHANGED.value,
            )
        else:
            key = announced
            if self.pins is not None:
                with contextlib.suppress(OSError):  # a read-only config folder: trusted for this run only
                    self.pins.pin(announced)
        assert key is not None
        self._farm_key = key
        return key

    def request(self, envelope: Envelope, *, timeout: float | None = None) -> Reply:
        """Send and wait for the reply; if none came in half the wait, send the SAME envelope once
        more (the gateway dedupes by request id). The whole wait, resend included, is ``timeout``:
        then NoAnswer. If Redis goes away after it has once answered, each step is retried until
        the deadline: the shell rides out a Redis restart."""
        wait = self.timeout if timeout is None else timeout
        data = encode(envelope)
        start = time.monotonic()
        deadline = start + wait
        for resend_at in (start + wait / 2, deadline):
            block = max(resend_at - time.monotonic(), 0.001)
            exchange = functools.partial(self._exchange, data, min(block, _BLOCK_SLICE_MS / 1000))
            reply = self._pick(self._retrying(exchange, deadline), envelope.id)
            reply = reply or self._wait_reply(envelope.id, resend_at, deadline)
            if reply is not None:
                return reply
        raise NoAnswer(f"the farm is unavailable: no answer within {wait:g}s at {self.where}: is a gateway running?")

    def farm_id(self, *, wait: float = 0.0) -> str | None:
        """The identity the farm's gateways announce, or None where none is announced (no gateway
        ran lately). With ``wait``, wait that long for a farm that is starting, then NoAnswer.
        Refused where the ACL user was made before shells could read it; Unreachable without Redis."""
        deadline = time.monotonic() + wait
        while True:
            value = self._retrying(lambda: self._guard(lambda: self._redis.get(self.keys.farm_info)), deadline)
            if isinstance(value, bytes):
                return value.decode("utf-8", "replace")
            if time.monotonic() + _ANNOUNCE_POLL >= deadline:
                break
            time.sleep(_ANNOUNCE_POLL)
        if wait:
            raise NoAnswer(f"no farm announced itself within {wait:g}s at {self.where}: is a gateway running?")
        return None

    def _announced_key(self, *, wait: bool) -> PublicKey | None:
        """The key in Redis; with ``wait``, until one is there (a gateway that is starting) or the
        timeout passes (NoAnswer)."""
        deadline = time.monotonic() + self.timeout
        while True:
            raw = self._retrying(lambda: self._guard(lambda: self._redis.get(self.keys.gateway_key)), deadline)
            if raw is not None:
                with contextlib.suppress(ValueError):
                    return public_key(raw.decode("ascii", "replace"))
            if not wait:
                return None
            if time.monotonic() >= deadline:
                raise NoAnswer(  # no gateway has announced the farm's key yet: as good as no answer
                    f"the farm is unavailable: no answer within {self.timeout:g}s at {self.where}: "
                    "is a gateway running?"
                )
            time.sleep(_KEY_POLL)

    def ping(self) -> bool:
        """Whether Redis answers right now (never raises)."""
        try:
            return bool(self._guard(self._redis.ping))
        except NoAnswer:
            return False

    def call(self, type_: str, body: dict[str, Any], token: str | None, *, timeout: float | None = None) -> Any:
        """Request and return the reply body, or raise FarmError with the farm's code and message."""
        reply = self.request(self.envelope(type_, body, token), timeout=timeout)
        if not reply.ok:
            error = reply.error
            code = error.code if error else "internal"
            message = error.message if error else "the farm answered with an error and no message"
            raise FarmError(message, code)
        return reply.body if reply.body is not None else {}

    def _exchange(self, data: bytes, block_seconds: float) -> list[Reply | Notice]:
        """XADD the request and start the blocking XREAD of the reply stream in one round trip:
        Redis runs a pipeline in order, so the read begins once the request is in the stream."""
        block_ms = max(1, int(block_seconds * 1000))

        def both() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            pipe.xadd(self.keys.requests, {"m": data}, maxlen=REQUEST_MAXLEN, approximate=True)
            pipe.xread({self.reply_key: self._last_id}, count=100, block=block_ms)
            return pipe.execute()[1]

        return self._decoded(self._guard(both))

    def _pick(self, messages: list[Reply | Notice], request_id: str) -> Reply | None:
        """The reply to ``request_id`` among ``messages``; notices are kept for watch."""
        found = None
        for message in messages:
            if isinstance(message, Notice):
                self._notices.append(message)
            elif message.re == request_id:
                found = message
            # else: a reply to an earlier request that gave up waiting: ignore it
        return found

    def _wait_reply(self, request_id: str, until: float, deadline: float) -> Reply | None:
        """Read replies until ``until``; a lost Redis is waited out until ``deadline``."""
        while True:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return None
            slice_s = min(remaining, _BLOCK_SLICE_MS / 1000)
            reply = self._pick(self._retrying(functools.partial(self._read, slice_s), deadline), request_id)
            if reply is not None:
                return reply

    def _retrying(self, action: Callable[[], T], deadline: float) -> T:
        """Run ``action``; while Redis is unreachable (after it once answered) retry until ``deadline``."""
        while True:
            try:
                return action()
            except Unreachable:
                if not self._reached or time.monotonic() + _RECONNECT_PAUSE >= deadline:
                    raise
                time.sleep(_RECONNECT_PAUSE)

    # --- notices (for watch) ----------------------------------------------------------------

    def notices(self, timeout: float) -> Iterator[Notice]:
        """Notices already received, then new ones as they arrive, until ``timeout`` passes
        with nothing new. Replies read meanwhile are dropped (no request is outstanding)."""
        deadline = time.monotonic() + timeout
        while True:
            while self._notices:
                yield self._notices.popleft()
                deadline = time.monotonic() + timeout
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for message in self._read(min(remaining, _BLOCK_SLICE_MS / 1000)):
                if isinstance(message, Notice):
                    self._notices.append(message)

    def take_notices(self, sub: str, wait: float) -> list[Notice]:
        """Notices of subscription ``sub``: those already received, else what arrives within
        ``wait`` seconds (possibly none). Notices of other (older) subscriptions are dropped."""
        if not self._notices:
            for message in self._read(max(wait, 0.001)):
                if isinstance(message, Notice):
                    self._notices.append(message)
        mine = [n for n in self._notices if n.sub == sub]
        self._notices.clear()
        return mine

    # --- Redis access ------------------------------------------------------------------------

    def _read(self, block_seconds: float) -> list[Reply | Notice]:
        block_ms = max(1, int(block_seconds * 1000))
        return self._decoded(
            self._guard(lambda: self._redis.xread({self.reply_key: self._last_id}, count=100, block=block_ms))
        )

    def _decoded(self, result: Any) -> list[Reply | Notice]:
        out: list[Reply | Notice] = []
        for _stream, entries in result or []:
            for entry_id, fields in entries:
                self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                data = fields.get(b"m") if isinstance(fields, dict) else None
                if data is None:
                    continue
                try:
                    out.append(decode_reply(data))
                except DecodeError:
                    continue  # garbage on our reply stream is not a reply: keep waiting
        return out

    def _guard(self, action: Any) -> Any:
        """Run one Redis command; every redis failure becomes NoAnswer with a plain reason."""
        where = self.where
        try:
            result = action()
        except redis.exceptions.AuthenticationError as exc:
            raise NoAnswer(f"Redis at {where} refused the credentials: {exc}") from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise Unreachable(f"cannot reach Redis at {where}: {_reason(exc)}") from None
        except redis.exceptions.ResponseError as exc:
            if refused_for_its_ids(str(exc)):  # a poisoned stream: the gateway replaces it within seconds
                self._reached = True
                raise Unreachable(f"the farm's request stream at {where} refuses new requests for now") from None
            raise Refused(f"Redis at {where} refused the command: {exc}") from None
        except redis.exceptions.RedisError as exc:
            raise NoAnswer(f"Redis at {where} failed: {_reason(exc)}") from None
        self._reached = True
        return result


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
