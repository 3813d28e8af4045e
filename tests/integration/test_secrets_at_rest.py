"""No usable secret at rest or in transit through Redis (issue 11, point 2), against a real gateway
and `rfarm` run as a subprocess: passwords and tokens cross Redis sealed to the farm's key, the
database keeps neither, a copied row or blob gives nothing the gateway accepts, and the shell
refuses a farm key that is not the one it first met."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import psycopg
import redis
from nacl.public import PrivateKey
from psycopg import sql

from broker_contracts.codec import unpack
from broker_contracts.envelope import Envelope, Reply, decode_envelope, decode_reply, encode
from broker_contracts.sealing import key_text, public_key, seal, unseal
from gateway.streams import redact
from tests.support.farm import Farm, wait_for
from tests.support.sealing import farm_key, farm_private_key, sealed_body


def _token(farm: Farm, config: str) -> str:
    return str(json.loads((farm.root / config / "credentials").read_text())["token"])


def _redis_values(r: redis.Redis, prefix: str) -> Iterator[tuple[str, bytes]]:
    """Every value under ``prefix``: each stream's entries, strings, hashes, lists and sets."""
    for raw_key in r.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw_key.decode()
        kind = r.type(raw_key).decode()
        if kind == "stream":
            for _, fields in r.xrange(raw_key):
                yield key, b"".join(k + b"=" + v for k, v in fields.items())
        elif kind == "string":
            yield key, r.get(raw_key) or b""
        elif kind == "hash":
            yield key, b"".join(k + b"=" + v for k, v in r.hgetall(raw_key).items())
        elif kind == "list":
            yield key, b"".join(r.lrange(raw_key, 0, -1))
        elif kind in ("set", "zset"):
            members = r.smembers(raw_key) if kind == "set" else r.zrange(raw_key, 0, -1)
            yield key, b"".join(members)


def _table_values(database_url: str) -> Iterator[tuple[str, bytes]]:
    """Every row of every table, as its text form and its raw values (bytea as bytes)."""
    with psycopg.connect(database_url) as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()]  # fmt: skip
        assert {"users", "sessions", "inbox", "gateway_key"} <= set(tables)
        for table in tables:
            query = sql.SQL("SELECT t::text, t.* FROM {} AS t").format(sql.Identifier(table))
            for row in conn.execute(query):
                values = [v if isinstance(v, bytes) else str(v).encode() for v in row]
                yield table, b"\x00".join(values)


def _secret_forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, raw.hex().encode()]  # as it is, and as PostgreSQL prints a bytea


def _call(r: redis.Redis, farm: Farm, env: Envelope | bytes, reply_to: str, request_id: str) -> Reply:
    newest = r.xrevrange(farm.keys.reply(reply_to), count=1)  # replies already there are to earlier sends
    last = newest[0][0] if newest else "0-0"
    r.xadd(farm.keys.requests, {"m": encode(env) if isinstance(env, Envelope) else env})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for _, items in r.xread({farm.keys.reply(reply_to): last}, block=500) or []:
            for eid, fields in items:
                last = eid
                reply = decode_reply(fields[b"m"])
                if isinstance(reply, Reply) and reply.re == request_id:
                    return reply
    raise AssertionError("no reply")


def _whoami(r: redis.Redis, farm: Farm, token: str) -> Reply:
    """whoami with ``token`` sealed as rfarm seals it: what anyone who knows the farm's public key
    (it is announced in Redis) can send."""
    env = Envelope.new("auth.whoami", {}, secrets.token_hex(16), token, farm_key=farm_key(farm.database_url))
    return _call(r, farm, env, env.reply_to, env.id)


def test_a_login_through_the_real_gateway_leaves_no_password_or_token_in_redis_or_the_database(
    farm: Farm, unique: str
) -> None:
    name, password = f"rest{unique}", f"pw-{secrets.token_hex(12)}"
    assert farm.rfarm("register", name, "--password-stdin", stdin=password + "\n", config=name).code == 0
    login = farm.rfarm("login", name, "--password-stdin", stdin=password + "\n", config=name)
    assert login.code == 0, login
    token = _token(farm, name)
    submitted = farm.rfarm("submit", "restcheck", "--frames", "1-2", "--json", config=name)
    assert submitted.code == 0, submitted
    assert farm.rfarm("jobs", config=name).code == 0 and farm.rfarm("whoami", config=name).code == 0
    r = farm.redis()
    assert _whoami(r, farm, token).ok  # the token the shell keeps is the real one
    time.sleep(0.5)

    found = list(_redis_values(r, farm.prefix))
    assert any(key == farm.keys.gateway_key for key, _ in found)
    assert any(key.startswith(farm.keys.reply("")) for key, _ in found)  # the login's reply is still there
    rows = list(_table_values(farm.database_url))
    assert any(table == "inbox" for table, _ in rows) and any(table == "sessions" for table, _ in rows)
    outputs = login.out + login.err + farm.logs()
    for secret in (password, token):
        for form in _secret_forms(secret):
            assert not [key for key, value in found if form in value], f"{secret!r} in Redis"
            assert not [table for table, value in rows if form in value], f"{secret!r} in PostgreSQL"
        assert secret not in outputs
    r.close()


def test_a_login_left_unanswered_on_redis_does_not_reveal_the_password(farm: Farm, unique: str) -> None:
    r = farm.redis()
    wait_for(lambda: r.get(farm.keys.gateway_key), what="the gateway to announce the farm's key")
    farm.stop()  # no gateway: what the shell writes stays on the stream for anyone to read
    name, password = f"unans{unique}", f"pw-{secrets.token_hex(12)}"
    for command in ("register", "login"):
        res = farm.rfarm(command, name, "--password-stdin", stdin=password + "\n", config=name, RFARM_TIMEOUT="0.5")
        assert res.code == 3 and "is a gateway running?" in res.err, res
    entries = [fields[b"m"] for _, fields in r.xrange(farm.keys.requests)]
    envelopes = [decode_envelope(m) for m in entries]
    assert {e.type for e in envelopes} == {"auth.register", "auth.login"} and len(envelopes) == 4  # each sent twice
    for payload in entries:
        assert password.encode() not in payload
    assert password.encode() not in b"".join(v for _, v in _redis_values(r, farm.prefix))
    # sealed to the key only gateways hold, which opens them
    gateway = farm_private_key(farm.database_url)
    assert {unseal(gateway, e.body["sealed_password"]).decode() for e in envelopes} == {password}
    r.close()


def test_a_clear_password_is_refused_and_never_stored(farm: Farm, unique: str) -> None:
    r = farm.redis()
    name, password = f"clear{unique}", f"pw-{secrets.token_hex(12)}"
    for type_ in ("auth.register", "auth.login"):
        env = Envelope.new(type_, {"username": name, "password": password}, secrets.token_hex(16))
        reply = _call(r, farm, env, env.reply_to, env.id)
        assert not reply.ok and reply.error is not None and reply.error.code == "request.invalid", reply
        assert "sealed" in reply.error.message and password not in reply.error.message
    with psycopg.connect(farm.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE username = %s", (name,)).fetchone() == (0,)
    r.close()


def test_copied_rows_and_sealed_blobs_give_nothing_whoami_accepts(farm: Farm, unique: str) -> None:
    name = farm.user(f"copy{unique}")
    token = _token(farm, name)
    r = farm.redis()
    assert _whoami(r, farm, token).ok
    with psycopg.connect(farm.database_url) as conn:
        sessions = conn.execute(
            "SELECT s.* FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = %s", (name,)
        ).fetchall()
        inbox = [bytes(reply) for (reply,) in conn.execute("SELECT reply FROM inbox").fetchall()
                 if name.encode() in bytes(reply)]  # fmt: skip
    assert sessions and inbox
    stored = [unpack(reply)["body"] for reply in inbox]
    logins = [body for body in stored if isinstance(body, dict) and "sealed_token" in body]
    assert logins and all("token" not in body for body in logins)
    candidates = [body["sealed_token"] for body in logins]
    for row in sessions:
        for value in row:
            if isinstance(value, bytes):
                candidates += [value.hex(), value.decode("latin-1")]
            candidates.append(str(value))
    assert token not in candidates
    for candidate in candidates:
        reply = _whoami(r, farm, candidate)
        assert not reply.ok and reply.error is not None, candidate
        # refused as no session's token, or (sealed, too long for a token) as no envelope
        assert reply.error.code in ("auth.token_invalid", "request.invalid"), (candidate, reply)
    # the sealed token of the login's stored answer opens with no key but the shell's one-off key
    gateway = farm_private_key(farm.database_url)
    for body in logins:
        for key in (gateway, PrivateKey.generate()):
            try:
                unseal(key, body["sealed_token"])
            except ValueError:
                continue
            raise AssertionError("a stored login answer opened without the shell's one-off key")

    # a token sealed for one request, copied off the request stream into another, is refused
    sealed_for_one = Envelope.new("job.list", {}, secrets.token_hex(16), token, farm_key=farm_key(farm.database_url))
    assert _call(r, farm, sealed_for_one, sealed_for_one.reply_to, sealed_for_one.id).ok
    for change in ({"type": "auth.logout", "body": {}}, {"id": Envelope.new("job.list", {}, "0" * 32).id},
                   {"reply_to": secrets.token_hex(16)}, {"body": {"all": True}}):  # fmt: skip
        copied = sealed_for_one.model_copy(update=change)
        reply = _call(r, farm, copied, copied.reply_to, copied.id)
        assert not reply.ok and reply.error is not None and reply.error.code == "auth.token_invalid", change
        assert "another request" in reply.error.message
    clear = Envelope.new("auth.whoami", {}, secrets.token_hex(16), token)  # the token in clear
    reply = _call(r, farm, clear, clear.reply_to, clear.id)
    assert not reply.ok and reply.error is not None and reply.error.code == "auth.token_invalid"
    assert _whoami(r, farm, token).ok  # still logged in: nothing above revoked it
    r.close()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_the_shell_refuses_a_farm_key_that_is_not_the_one_it_pinned(farm: Farm, unique: str) -> None:
    name = farm.user(f"pin{unique}")
    password = "correct-horse"
    r = farm.redis()
    real = r.get(farm.keys.gateway_key)
    assert real is not None and real.decode() in (farm.root / name / "farm-keys").read_text()
    farm.stop()
    swapped = key_text(PrivateKey.generate().public_key)  # a writer of Redis swaps in a key of their own
    r.set(farm.keys.gateway_key, swapped)
    before = r.xlen(farm.keys.requests)
    for argv, stdin in ((["whoami"], None), (["login", name, "--password-stdin"], password + "\n")):
        res = farm.rfarm(*argv, stdin=stdin, config=name)
        assert res.code == 1, res
        line = _one_line(res.err)
        assert "the farm's key changed" in line and "rfarm login USER --accept-new-farm-key" in line
    assert r.xlen(farm.keys.requests) == before  # nothing was sent: the password did not leave the shell
    assert farm.rfarm("jobs", "--json", config=name).json()["error"]["code"] == "farm.key_changed"

    farm.start_gateway()  # the farm's own key again
    wait_for(lambda: r.get(farm.keys.gateway_key) == real, what="the gateway to announce its key")
    assert farm.rfarm("whoami", config=name).code == 0

    # an operator's new key is accepted only when the user says so, and is then pinned
    farm.stop()
    r.set(farm.keys.gateway_key, swapped)
    accepted = farm.rfarm("login", name, "--password-stdin", "--accept-new-farm-key", stdin=password + "\n",
                          config=name, RFARM_TIMEOUT="0.5")  # fmt: skip
    assert accepted.code == 3  # sealed to the accepted key; no gateway answers here
    assert swapped in (farm.root / name / "farm-keys").read_text()
    farm.start_gateway()
    wait_for(lambda: r.get(farm.keys.gateway_key) == real, what="the gateway to announce its key")
    assert "the farm's key changed" in farm.rfarm("whoami", config=name).err
    relogin = farm.rfarm("login", name, "--password-stdin", "--accept-new-farm-key", stdin=password + "\n",
                         config=name)  # fmt: skip
    assert relogin.code == 0, relogin
    assert farm.rfarm("whoami", config=name).code == 0
    assert public_key(real.decode()) == farm_key(farm.database_url)
    r.close()


def test_a_dead_lettered_login_keeps_neither_its_sealed_password_nor_a_token() -> None:
    sealed = seal(PrivateKey.generate().public_key, b"correct-horse-battery")
    body = {"username": "alice", "sealed_password": sealed, "answer_key": key_text(PrivateKey.generate().public_key)}
    kept = redact(encode(Envelope.new("auth.login", body, secrets.token_hex(16), "a-token-in-clear")))
    assert sealed.encode() not in kept and b"a-token-in-clear" not in kept and b"<redacted>" in kept


def test_a_resent_login_gets_the_same_sealed_answer_which_only_its_shell_opens(farm: Farm, unique: str) -> None:
    name = farm.user(f"resend{unique}")
    r = farm.redis()
    form = {"username": name, "password": "correct-horse"}
    body, answer = sealed_body("auth.login", form, farm_key(farm.database_url))
    assert answer is not None
    env = Envelope.new("auth.login", body, secrets.token_hex(16))
    first = _call(r, farm, env, env.reply_to, env.id)
    again = _call(r, farm, env, env.reply_to, env.id)  # a shell that timed out sends the same envelope
    assert first.ok and again == first and isinstance(first.body, dict)
    assert _whoami(r, farm, unseal(answer, first.body["sealed_token"]).decode()).ok
    # someone who copied the request cannot have the answer sealed to a key of their own
    thief = PrivateKey.generate()
    stolen = env.model_copy(update={"body": {**body, "answer_key": key_text(thief.public_key)}})
    refused = _call(r, farm, stolen, stolen.reply_to, stolen.id)
    assert not refused.ok and refused.error is not None and refused.error.code == "request.conflict"
    r.close()
