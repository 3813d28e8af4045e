"""The shell's transport against the real Redis, with a tiny responder thread standing in for a
gateway (unit tests of the transport only; end-to-end tests run the real gateway)."""

from __future__ import annotations

import io
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from nacl.public import PrivateKey

from broker_contracts.config import Settings
from broker_contracts.envelope import Envelope, Notice, Reply, decode_envelope, encode
from broker_contracts.keys import Keys
from broker_contracts.sealing import key_text, open_token, public_key, seal, unseal
from shell.client import Client
from shell.commands import default_registry
from shell.errors import FarmError, NoAnswer
from shell.session import Session

Answer = Callable[[Envelope, int], list[Reply | Notice] | None]


class Responder:
    """Reads the request stream and answers each envelope with what ``answer`` returns. Like a
    gateway it announces a key, and opens the token each envelope seals to it (``seen``: the
    envelopes with their tokens opened; ``raw``: as they were on the stream)."""

    def __init__(self, redis_url: str, prefix: str, answer: Answer) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.keys = Keys(prefix)
        self.answer = answer
        self.key = PrivateKey.generate()
        self.seen: list[Envelope] = []
        self.raw: list[Envelope] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Responder:
        self.redis.set(self.keys.farm_info, "responder-farm", ex=60)  # as a gateway announces its farm
        self.redis.set(self.keys.gateway_key, key_text(self.key.public_key))
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.redis.close()

    def _loop(self) -> None:
        last = "0-0"
        while not self._stop.is_set():
            for _stream, entries in self.redis.xread({self.keys.requests: last}, block=100) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    envelope = decode_envelope(fields[b"m"])
                    self.raw.append(envelope)
                    if envelope.token:
                        token = open_token(self.key, envelope.token, envelope.id, envelope.type, envelope.body,
                                           envelope.reply_to)  # fmt: skip
                        envelope = envelope.model_copy(update={"token": token})
                    self.seen.append(envelope)
                    for message in self.answer(envelope, len(self.seen)) or []:
                        self.redis.xadd(self.keys.reply(envelope.reply_to), {"m": encode(message)})


@pytest.fixture
def client(redis_url: str, prefix: str) -> Iterator[Client]:
    with Client(redis_url, prefix, timeout=2) as value:
        yield value


def test_reply_is_matched_by_request_id_others_ignored_notices_kept(
    client: Client, redis_url: str, prefix: str
) -> None:
    def answer(env: Envelope, n: int) -> list[Reply | Notice]:
        return [
            Reply.success("00000000-0000-0000-0000-000000000000", {"id": -1}),  # a stale reply
            Notice(topic="job", sub="s1", body={"id": 5}),
            Reply.success(env.id, {"id": 7}),
        ]

    with Responder(redis_url, prefix, answer) as responder:
        assert client.call("job.submit", {"name": "x"}, "tok") == {"id": 7}
    assert responder.seen[0].type == "job.submit" and responder.seen[0].token == "tok"
    assert responder.raw[0].token and "tok" not in responder.raw[0].token  # sealed on the stream
    assert responder.seen[0].reply_to == client.client_id and len(client.client_id) == 32
    notices = list(client.notices(timeout=0.2))
    assert [n.sub for n in notices] == ["s1"]


def test_error_reply_becomes_farm_error(client: Client, redis_url: str, prefix: str) -> None:
    def answer(env: Envelope, n: int) -> list[Reply | Notice]:
        return [Reply.failure(env.id, "job.not_found", "no job 9")]

    with Responder(redis_url, prefix, answer), pytest.raises(FarmError) as caught:
        client.call("job.show", {"id": 9}, "tok")
    assert (caught.value.code, caught.value.message, caught.value.exit_code) == ("job.not_found", "no job 9", 1)


def test_timeout_resends_the_same_envelope_once(client: Client, redis_url: str, prefix: str) -> None:
    def answer(env: Envelope, n: int) -> list[Reply | Notice] | None:
        return None if n == 1 else [Reply.success(env.id, {"username": "a"})]  # first send is "lost"

    with Responder(redis_url, prefix, answer) as responder:
        assert client.call("auth.whoami", {}, "tok", timeout=0.5) == {"username": "a"}
    assert len(responder.seen) == 2 and responder.seen[0].id == responder.seen[1].id


def test_no_gateway_gives_no_answer_after_two_sends(client: Client, redis_url: str, prefix: str) -> None:
    r = redis.Redis.from_url(redis_url)
    with pytest.raises(NoAnswer) as caught:  # no gateway ever announced the farm's key: nothing is sent
        client.call("auth.whoami", {}, "tok", timeout=0.3)
    assert caught.value.exit_code == 3 and "is a gateway running?" in caught.value.message
    assert r.xlen(Keys(prefix).requests) == 0
    r.set(Keys(prefix).gateway_key, key_text(PrivateKey.generate().public_key))  # one did, and stopped
    started = time.monotonic()
    with pytest.raises(NoAnswer) as caught:
        client.call("auth.whoami", {}, "tok", timeout=0.6)
    took = time.monotonic() - started
    assert caught.value.exit_code == 3 and "is a gateway running?" in caught.value.message
    assert r.xlen(Keys(prefix).requests) == 2
    assert 0.6 <= took < 0.6 + 0.5  # the timeout is the whole wait, the resend inside it
    r.close()


def test_login_stores_the_token_and_logout_forgets_it(tmp_path: Path, redis_url: str, prefix: str) -> None:
    def answer(env: Envelope, n: int) -> list[Reply | Notice]:
        if env.type == "auth.login":
            assert set(env.body) == {"username", "sealed_password", "answer_key"} and env.token is None
            assert env.body["username"] == "alice" and b"pw-from-stdin" not in encode(env)
            assert unseal(responder.key, env.body["sealed_password"]) == b"pw-from-stdin"
            sealed = seal(public_key(env.body["answer_key"]), b"T" * 43)
            body: dict[str, Any] = {"username": "alice", "is_admin": False, "sealed_token": sealed,
                                    "expires_at": "2030-01-01T00:00:00+00:00"}  # fmt: skip
            return [Reply.success(env.id, body)]
        if env.type == "auth.whoami":
            return [Reply.success(env.id, {"username": "alice", "is_admin": False})]
        return [Reply.failure(env.id, "auth.token_invalid", "that session has ended")]

    settings = Settings(redis_url=redis_url, prefix=prefix, config_dir=tmp_path)
    out, err = io.StringIO(), io.StringIO()
    session = Session(settings, default_registry(), stdin=io.StringIO("pw-from-stdin\n"), out=out, err=err,
                      timeout=3)  # fmt: skip
    with Responder(redis_url, prefix, answer) as responder:
        assert session.run(["login", "alice", "--password-stdin"]) == 0
        assert session.store.token() == "T" * 43
        assert stat.S_IMODE(session.store.path.stat().st_mode) == 0o600
        assert session.run(["whoami"]) == 0
        assert responder.seen[-1].token == "T" * 43
        # the farm refuses the logout, and still the stored token is gone
        assert session.run(["logout"]) == 1
    session.close()
    assert session.store.token() is None
    assert "logged in as alice" in out.getvalue() and "alice" in out.getvalue().splitlines()[1]
    assert err.getvalue() == "error: that session has ended\n"
