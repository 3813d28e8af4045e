"""The farm end to end, as a user drives it: real gateway and node processes, the real `rfarm`."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from broker_contracts.codec import pack
from broker_contracts.envelope import Envelope, decode_reply, encode
from broker_contracts.sealing import seal_token
from tests.support.farm import Farm, wait_for
from tests.support.sealing import farm_key

PNG = b"\x89PNG\r\n\x1a\n"


def job_status(farm: Farm, job_id: int, config: str) -> str:
    res = farm.rfarm("show", str(job_id), "--json", config=config)
    assert res.code == 0, res
    return str(res.json()["job"]["status"])


def test_first_session_renders_four_pngs_with_history(farm: Farm, unique: str) -> None:
    farm.start_node(f"n1-{unique}")
    alice = farm.user(f"alice{unique}")
    res = farm.rfarm("submit", "first", "--frames", "1-4", "--json", config=alice)
    assert res.code == 0, res
    job_id = res.json()["id"]

    wait_for(lambda: job_status(farm, job_id, alice) == "succeeded", timeout=60, what="job to succeed")
    listed = farm.rfarm("jobs", "--json", config=alice).json()
    assert [(j["id"], j["status"]) for j in listed] == [(job_id, "succeeded")]

    frames = sorted((farm.output_root / f"job-{job_id}").glob("*.png"))
    assert [f.name for f in frames] == [f"frame_{n:04d}.png" for n in range(1, 5)]
    assert all(f.read_bytes().startswith(PNG) for f in frames)

    hist = farm.rfarm("history", str(job_id), "--json", config=alice).json()
    job_changes = [(h["from"], h["to"]) for h in hist["history"] if h.get("task") is None]
    assert job_changes == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    assert all(h["at"] and h["reason"] and h["actor"] for h in hist["history"])
    assert hist["history"][0]["reason"] == f"submitted by {alice}"

    text = farm.rfarm("history", str(job_id), config=alice)
    assert text.code == 0 and "succeeded" in text.out


def test_other_users_job_is_not_found_but_admin_sees_it(farm: Farm, unique: str) -> None:
    alice = farm.user(f"alice{unique}")
    bob = farm.user(f"bob{unique}")
    admin = farm.user(f"root{unique}", admin=True)
    job_id = farm.rfarm("submit", "secret", "--json", config=alice).json()["id"]
    missing = job_id + 10_000
    for cmd in ("show", "history"):
        theirs = farm.rfarm(cmd, str(job_id), config=bob)
        nothing = farm.rfarm(cmd, str(missing), config=bob)
        assert theirs.code == nothing.code == 1
        assert theirs.err.replace(str(job_id), "N") == nothing.err.replace(str(missing), "N")
        assert farm.rfarm(cmd, str(job_id), config=admin).code == 0
    everyone = farm.rfarm("jobs", "--all", "--json", config=admin)
    assert job_id in [j["id"] for j in everyone.json()]
    assert {j["owner"] for j in everyone.json() if j["id"] == job_id} == {alice}
    table = farm.rfarm("jobs", "--all", config=admin).out.splitlines()
    assert table[0].split()[:3] == ["ID", "NAME", "OWNER"]
    assert any(line.split()[:3] == [str(job_id), "secret", alice] for line in table[1:]), table
    refused = farm.rfarm("jobs", "--all", config=bob)
    assert refused.code == 1 and "admin" in refused.err


@pytest.mark.parametrize(
    ("args", "stdin", "code"),
    [
        (("login", "ALICE", "--password-stdin"), "wrong-password\n", 1),
        (("login", "nobody-here", "--password-stdin"), "whatever-pw\n", 1),
        (("show", "abc"), None, 2),
        (("submit", "x", "--frames", "10-1"), None, 2),
        (("history", "-5"), None, 2),
    ],
)
def test_bad_input_gets_one_clear_line(farm: Farm, unique: str, args: tuple[str, ...], stdin: str | None,
                                       code: int) -> None:
    name = f"alice{unique}"
    farm.user(name)
    args = tuple(a.replace("ALICE", name) for a in args)
    res = farm.rfarm(*args, stdin=stdin, config=name)
    assert res.code == code, res
    assert "Traceback" not in res.err + res.out
    assert len(res.err.strip().splitlines()) == 1, res.err


def test_wrong_password_and_unknown_user_answer_alike(farm: Farm, unique: str) -> None:
    name = farm.user(f"alice{unique}")
    wrong = farm.rfarm("login", name, "--password-stdin", stdin="not-the-password\n", config="x")
    unknown = farm.rfarm("login", f"ghost{unique}", "--password-stdin", stdin="not-the-password\n", config="x")
    assert wrong.code == unknown.code == 1
    assert wrong.err == unknown.err


def test_tokens_garbage_and_logged_out(farm: Farm, unique: str) -> None:
    name = farm.user(f"alice{unique}")
    garbage = farm.rfarm("whoami", RFARM_TOKEN="garbage-token", config=name)
    assert garbage.code == 1 and "log in" in garbage.err and "Traceback" not in garbage.err
    token_file = farm.root / name / "credentials"
    assert token_file.stat().st_mode & 0o777 == 0o600
    import json

    token = json.loads(token_file.read_text())["token"]
    assert farm.rfarm("logout", config=name).code == 0
    again = farm.rfarm("whoami", RFARM_TOKEN=token, config=name)
    assert again.code == 1 and "log in" in again.err


def test_duplicate_username(farm: Farm, unique: str) -> None:
    name = farm.user(f"alice{unique}")
    res = farm.rfarm("register", name, "--password-stdin", stdin="another-password\n", config="other")
    assert res.code == 1 and "taken" in res.err and len(res.err.strip().splitlines()) == 1


def _call(farm: Farm, env: Envelope, timeout: float = 15) -> object:
    r = farm.redis()
    r.xadd(farm.keys.requests, {"m": encode(env)})
    deadline = time.monotonic() + timeout
    last = "0-0"
    while time.monotonic() < deadline:
        for _, items in r.xread({farm.keys.reply(env.reply_to): last}, block=500) or []:
            for eid, fields in items:
                last = eid
                reply = decode_reply(fields[b"m"])
                if getattr(reply, "re", None) == env.id:
                    return reply
    raise AssertionError("no reply")


def _token(farm: Farm, name: str) -> str:
    import json

    return str(json.loads((farm.root / name / "credentials").read_text())["token"])


def test_same_request_twice_creates_one_job(farm: Farm, unique: str) -> None:
    name = farm.user(f"alice{unique}")
    client = secrets.token_hex(16)
    env = Envelope.new("job.submit", {"name": "once"}, client, _token(farm, name), farm_key=farm_key(farm.database_url))
    first = _call(farm, env)
    second = _call(farm, env)
    assert first == second
    jobs = farm.rfarm("jobs", "--json", config=name).json()
    assert [j["name"] for j in jobs] == ["once"]
    body, reply_to = {"name": "different"}, secrets.token_hex(16)  # the same id, its token sealed for it
    token = seal_token(farm_key(farm.database_url), _token(farm, name), env.id, env.type, body, reply_to)
    other = env.model_copy(update={"body": body, "reply_to": reply_to, "token": token})
    refused = _call(farm, other)
    assert refused.ok is False and refused.error.code == "request.conflict"  # type: ignore[attr-defined]


def test_gateway_killed_after_commit_before_ack_makes_no_duplicate(farm: Farm, unique: str) -> None:
    name = farm.user(f"alice{unique}")
    farm.stop()
    crashing = farm.start_gateway("gw-crash", RFARM_FAULT_POINT="after_commit")
    client = secrets.token_hex(16)
    env = Envelope.new("job.submit", {"name": "exactly-once"}, client, _token(farm, name),
                       farm_key=farm_key(farm.database_url))
    farm.redis().xadd(farm.keys.requests, {"m": encode(env)})
    assert crashing.wait(timeout=30) == 86  # died after its commit, before reply and ack
    farm.procs.pop("gw-crash")
    farm.start_gateway("gw-after")
    reply = _call(farm, env, timeout=30)  # the pending entry is claimed after claim-idle
    assert reply.ok  # type: ignore[attr-defined]
    jobs = farm.rfarm("jobs", "--json", config=name).json()
    assert [j["name"] for j in jobs] == ["exactly-once"]
    assert jobs[0]["id"] == reply.body["id"]  # type: ignore[attr-defined]


def test_node_killed_mid_frame_is_taken_over(farm: Farm, unique: str) -> None:
    name = farm.user(f"alice{unique}")
    farm.start_node(f"victim-{unique}")
    res = farm.rfarm("submit", "slow", "--renderer", "sleep", "--param", "seconds=3", "--frames", "1-2",
                     "--chunk", "2", "--json", config=name)
    assert res.code == 0, res
    job_id = res.json()["id"]
    wait_for(lambda: job_status(farm, job_id, name) == "running", what="job to start")
    time.sleep(0.5)
    farm.kill(f"victim-{unique}")
    farm.start_node(f"rescuer-{unique}")
    wait_for(lambda: job_status(farm, job_id, name) == "succeeded", timeout=60, what="takeover to finish")
    hist = farm.rfarm("history", str(job_id), "--json", config=name).json()["history"]
    reasons = " | ".join(h["reason"] for h in hist)
    assert f"rescuer-{unique}" in reasons
    assert "lease" in reasons
    starts = [h for h in hist if h["to"] == "running" and h.get("task") is not None]
    assert [h["attempt"] for h in starts] == [1, 2]


def test_bad_messages_are_dead_lettered_and_answered(farm: Farm, unique: str) -> None:
    name = farm.user(f"alice{unique}")
    r = farm.redis()
    client = secrets.token_hex(16)
    r.xadd(farm.keys.requests, {"m": b"\xc1\xff not msgpack"})
    unknown = Envelope.new("job.explode", {}, client)
    oversized = pack({"v": 1, "id": str(unknown.id), "type": "job.submit", "reply_to": client,
                      "body": {"name": "x" * 70_000}})
    r.xadd(farm.keys.requests, {"m": oversized})
    reply = _call(farm, unknown)
    assert reply.error.code == "request.unknown_type"  # type: ignore[attr-defined]
    wait_for(lambda: r.xlen(farm.keys.dead) >= 3, what="three dead letters")
    still = farm.rfarm("whoami", config=name)
    assert still.code == 0 and name in still.out
    assert Path(farm.root / "gateway.log").read_text().count("Traceback") == 0
