"""`rfarmctl redis-acl` against the real Redis 7: least privilege per role, and a farm that runs on it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from broker_contracts.keys import Keys
from rfarmctl import acl
from tests.support.farm import BIN, Farm


def _admin(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def _need_redis7(redis_url: str) -> None:
    with _admin(redis_url) as r:
        if acl.redis_version(r)[0] < acl.MIN_REDIS_MAJOR:
            pytest.skip("the shared Redis is older than 7: no ACL key selectors")


@pytest.fixture
def acl_users(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The three users created by `rfarmctl redis-acl --apply` (role -> Redis URL); deleted afterwards."""
    _need_redis7(redis_url)
    farm = Farm(root=tmp_path, redis_url=redis_url, database_url="postgresql://unused", prefix=prefix)
    names = [acl.default_name(role, prefix) for role in acl.ROLES]
    try:
        res = farm.rfarmctl("redis-acl", "--apply")
        assert res.code == 0, res
        urls = {}
        for line in res.out.splitlines():
            role, _, url = line.partition(" ")
            if role in acl.ROLES:
                urls[role] = url.strip()
        assert set(urls) == set(acl.ROLES), res.out
        yield urls
    finally:
        with _admin(redis_url) as r:
            r.execute_command("ACL", "DELUSER", *names)


def _denied(call: object) -> bool:
    try:
        call()  # type: ignore[operator]
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_print_only_creates_nothing_and_shows_each_role(redis_url: str, prefix: str, tmp_path: Path) -> None:
    farm = Farm(root=tmp_path, redis_url=redis_url, database_url="postgresql://unused", prefix=prefix)
    res = farm.rfarmctl("redis-acl", "--shell-password", "s" * 20)
    assert res.code == 0, res
    assert f"ACL SETUSER rfarm-{prefix}-shell reset resetchannels on >{'s' * 20} %W~{prefix}:req" in res.out
    assert sum(line.startswith("ACL SETUSER") for line in res.out.splitlines()) == 3
    with _admin(redis_url) as r:
        existing = {u.decode() for u in r.execute_command("ACL", "USERS")}
    assert not existing & {acl.default_name(role, prefix) for role in acl.ROLES}
    weak = farm.rfarmctl("redis-acl", "--node-password", "short")
    assert weak.code == 2 and "at least 16" in weak.err and len(weak.err.strip().splitlines()) == 1


def test_unreachable_redis_is_exit_3(tmp_path: Path, prefix: str) -> None:
    farm = Farm(root=tmp_path, redis_url="redis://127.0.0.1:1/0", database_url="postgresql://unused", prefix=prefix)
    res = farm.rfarmctl("redis-acl", "--apply")
    assert res.code == 3 and "cannot reach Redis" in res.err and "Traceback" not in res.err


def test_shell_may_only_add_requests_and_read_its_reply_stream(acl_users: dict[str, str], prefix: str) -> None:
    keys = Keys(prefix)
    client = secrets.token_hex(16)
    with _admin(acl_users["gateway"]) as gw:
        gw.xadd(keys.reply(client), {"m": b"hello"})  # the gateway answers
        gw.xadd(keys.work("default"), {"m": b"work"})
        gw.set(keys.farm_info, "farm-id")  # the gateway announces the farm
        gw.set(keys.gateway_key, b"the farm's public key")
    with redis.Redis.from_url(acl_users["shell"]) as sh:
        assert sh.get(keys.gateway_key) == b"the farm's public key"  # what it seals secrets to
        assert sh.xadd(keys.requests, {"m": b"request"}, maxlen=100_000, approximate=True)
        got = sh.xread({keys.reply(client): "0-0"}, count=10)
        assert got and got[0][1][0][1] == {b"m": b"hello"}
        assert sh.ping()
        assert sh.get(keys.farm_info) == b"farm-id"  # the one key a shell may GET
        denied = {
            "XREAD requests": lambda: sh.xread({keys.requests: "0-0"}),
            "XRANGE requests": lambda: sh.xrange(keys.requests),
            "XREADGROUP requests": lambda: sh.xreadgroup("gateway", "me", {keys.requests: ">"}),
            "XRANGE work": lambda: sh.xrange(keys.work("default")),
            "XREAD work": lambda: sh.xread({keys.work("default"): "0-0"}),
            "XREAD events": lambda: sh.xread({keys.events: "0-0"}),
            "XRANGE dead": lambda: sh.xrange(keys.dead),
            "XADD reply": lambda: sh.xadd(keys.reply(client), {"m": b"forged"}),
            "XADD events": lambda: sh.xadd(keys.events, {"m": b"forged"}),
            "DEL reply": lambda: sh.delete(keys.reply(client)),
            "KEYS": lambda: sh.keys("*"),
            "SCAN": lambda: sh.scan(0),
            "EXISTS": lambda: sh.exists(keys.requests),
            "GET requests": lambda: sh.get(keys.requests),
            "GET work": lambda: sh.get(keys.work("default")),
            "SET farm": lambda: sh.set(keys.farm_info, "forged"),
            "CONFIG GET": lambda: sh.config_get("*"),
            "FLUSHALL": lambda: sh.flushall(),
            "FLUSHDB": lambda: sh.flushdb(),
            "ACL LIST": lambda: sh.acl_list(),
            "ACL SETUSER": lambda: sh.acl_setuser("intruder", enabled=True),
            "INFO": lambda: sh.info(),
            "CLIENT LIST": lambda: sh.client_list(),
            "SUBSCRIBE-ish PUBLISH": lambda: sh.publish("x", "y"),
            "EVAL": lambda: sh.eval("return 1", 0),
        }
        allowed = [what for what, call in denied.items() if not _denied(call)]
        assert allowed == []


def test_node_cannot_read_requests_or_replies(acl_users: dict[str, str], prefix: str) -> None:
    keys = Keys(prefix)
    with redis.Redis.from_url(acl_users["node"]) as node:
        node.xgroup_create(keys.work("default"), "nodes", id="0", mkstream=True)
        assert node.xreadgroup("nodes", "n1", {keys.work("default"): ">"}, count=1) == []
        assert node.xadd(keys.events, {"m": b"event"}, maxlen=1000, approximate=True)
        assert node.set(keys.node("n1"), b"alive", px=1000)
        assert node.exists(keys.cancel(7), keys.hold(7)) == 0
        assert node.xadd(keys.dead, {"m": b"unrunnable"}, maxlen=1000, approximate=True)
        assert node.get(keys.work_key) is None
        denied = {
            "GET cancel": lambda: node.get(keys.cancel(7)),
            "EXISTS work key": lambda: node.exists(keys.work_key),
            "XADD node key": lambda: node.xadd(keys.node("n1") + ":x", {"m": b"x"}),
            "DEL cancel": lambda: node.delete(keys.cancel(7)),
            "SET hold": lambda: node.set(keys.hold(7), b"x"),
            "XREADGROUP events": lambda: node.xreadgroup("ledger", "n1", {keys.events: ">"}),
            "XACK events": lambda: node.xack(keys.events, "ledger", "0-1"),
            "XREAD requests": lambda: node.xread({keys.requests: "0-0"}),
            "XRANGE requests": lambda: node.xrange(keys.requests),
            "XREADGROUP requests": lambda: node.xreadgroup("gateway", "n1", {keys.requests: ">"}),
            "XADD requests": lambda: node.xadd(keys.requests, {"m": b"forged"}),
            "XREAD reply": lambda: node.xread({keys.reply("0" * 32): "0-0"}),
            "XRANGE events": lambda: node.xrange(keys.events),
            "SET cancel": lambda: node.set(keys.cancel(7), b"x"),
            "KEYS": lambda: node.keys("*"),
            "SCAN": lambda: node.scan(0),
            "FLUSHALL": lambda: node.flushall(),
            "CONFIG GET": lambda: node.config_get("*"),
        }
        allowed = [what for what, call in denied.items() if not _denied(call)]
        assert allowed == []


def test_gateway_is_confined_to_the_prefix_and_not_admin(acl_users: dict[str, str], prefix: str) -> None:
    keys = Keys(prefix)
    with redis.Redis.from_url(acl_users["gateway"]) as gw:
        gw.xgroup_create(keys.requests, "gateway", id="0", mkstream=True)
        assert gw.xreadgroup("gateway", "g1", {keys.requests: ">"}, count=1) == []
        gw.hset(keys.watch(1), "a", "b")
        denied = {
            "GET outside": lambda: gw.get("not-rfarm-" + prefix),
            "KEYS": lambda: gw.keys("*"),
            "FLUSHALL": lambda: gw.flushall(),
            "CONFIG SET": lambda: gw.config_set("maxmemory", "1"),
            "ACL LIST": lambda: gw.acl_list(),
            "SHUTDOWN": lambda: gw.execute_command("SHUTDOWN", "NOSAVE"),
        }
        allowed = [what for what, call in denied.items() if not _denied(call)]
        assert allowed == []


def _denials(redis_url: str, names: list[str]) -> list[dict[str, object]]:
    with _admin(redis_url) as r:
        entries = r.acl_log(count=1000)
    return [e for e in entries if str(e.get("username")) in names]


@pytest.mark.timeout(240)
def test_farm_runs_end_to_end_on_the_acl_users(
    acl_users: dict[str, str], redis_url: str, database_url: str, prefix: str, tmp_path: Path, unique: str
) -> None:
    """Gateway, a node started with `rfarmctl node`, and `rfarm`, each with its own ACL user."""
    farm = Farm(root=tmp_path, redis_url=acl_users["shell"], database_url=database_url, prefix=prefix)
    names = [acl.default_name(role, prefix) for role in acl.ROLES]
    before = len(_denials(redis_url, names))
    try:
        farm.start_gateway(RFARM_REDIS_URL=acl_users["gateway"])
        farm._spawn(
            "node",
            [str(BIN / "rfarmctl"), "node", "--name", f"acl-{unique}", "--lease", "2", "--heartbeat", "0.5",
             "--output-root", str(farm.output_root)],
            RFARM_REDIS_URL=acl_users["node"],
            RFARM_NODE_CREDENTIAL=farm.credential(f"acl-{unique}"),
        )
        name = farm.user(f"acl{unique}")
        res = farm.rfarm("submit", "on-acl", "--frames", "1-3", "--json", config=name)
        assert res.code == 0, res
        job_id = res.json()["id"]
        waited = farm.rfarm("wait", str(job_id), "--json", config=name, timeout=120)
        assert waited.code == 0, waited
        shown = farm.rfarm("show", str(job_id), "--json", config=name)
        assert shown.json()["job"]["status"] == "succeeded"
        assert len(list((farm.output_root / f"job-{job_id}").glob("*.png"))) == 3
        assert farm.rfarm("logs", str(job_id), config=name).code == 0
        assert farm.rfarm("history", str(job_id), config=name).code == 0
        assert farm.rfarm("logout", config=name).code == 0
    finally:
        farm.stop()
    logs = farm.logs()
    assert "NOPERM" not in logs and "no permissions" not in logs, logs[-3000:]
    # Redis logs every command an ACL user was refused: none of the three sent anything outside its profile.
    assert len(_denials(redis_url, names)) == before, _denials(redis_url, names)


def test_the_shell_client_sends_only_xadd_and_xread(acl_users: dict[str, str], prefix: str, redis_url: str) -> None:
    """The shell's Client against a reply it gets from a fake gateway thread: no other command is refused."""
    import threading

    from broker_contracts.envelope import Reply, decode_envelope, encode
    from shell.client import Client

    keys = Keys(prefix)
    stop = threading.Event()

    def answer() -> None:
        with redis.Redis.from_url(acl_users["gateway"]) as gw:
            last = "0-0"
            while not stop.is_set():
                for _, items in gw.xread({keys.requests: last}, block=200) or []:
                    for eid, fields in items:
                        last = eid
                        env = decode_envelope(fields[b"m"])
                        gw.xadd(keys.reply(env.reply_to), {"m": encode(Reply.success(env.id, {"pong": True}))})

    shell_user = [acl.default_name("shell", prefix)]
    before = len(_denials(redis_url, shell_user))
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with Client(acl_users["shell"], prefix, timeout=10) as c:
            assert c.call("auth.whoami", {}, None) == {"pong": True}
            assert c.ping()
            assert list(c.notices(0.2)) == []
    finally:
        stop.set()
        thread.join(timeout=5)
    assert len(_denials(redis_url, shell_user)) == before


def test_no_role_but_the_gateway_may_erase_or_move_a_stream(acl_users: dict[str, str], prefix: str) -> None:
    """Trimming, deleting, renaming or moving the ids of a stream is the gateway's alone; a node may
    not publish work. What no ACL can refuse is the id of an entry a role may add: the gateway
    repairs a stream poisoned that way (tests/faults/test_stream_poison.py)."""
    keys = Keys(prefix)
    work = keys.work("default")
    groups = {keys.requests: "gateway", keys.events: "ledger", keys.dead: "operators", work: "nodes"}
    with _admin(acl_users["gateway"]) as gw:
        for stream, group in groups.items():
            gw.xgroup_create(stream, group, id="0", mkstream=True)
            gw.xadd(stream, {"m": b"someone else's"})
    for role in ("shell", "node"):
        with redis.Redis.from_url(acl_users[role]) as c:
            refused: dict[str, object] = {f"XADD {work}": lambda c=c: c.xadd(work, {"m": b"forged work"})}
            for stream, group in groups.items():
                refused |= {
                    f"XTRIM {stream}": lambda c=c, s=stream: c.xtrim(s, maxlen=0),
                    f"DEL {stream}": lambda c=c, s=stream: c.delete(s),
                    f"UNLINK {stream}": lambda c=c, s=stream: c.unlink(s),
                    f"RENAME {stream}": lambda c=c, s=stream: c.rename(s, f"{s}:gone"),
                    f"EXPIRE {stream}": lambda c=c, s=stream: c.expire(s, 1),
                    f"XDEL {stream}": lambda c=c, s=stream: c.xdel(s, "0-1"),
                    f"XSETID {stream}": lambda c=c, s=stream: c.execute_command("XSETID", s, "9999999999999-0"),
                    f"XGROUP SETID {stream}": lambda c=c, s=stream, g=group: c.xgroup_setid(s, g, "$"),
                    f"XGROUP DESTROY {stream}": lambda c=c, s=stream, g=group: c.xgroup_destroy(s, g),
                }
            allowed = [what for what, call in refused.items() if not _denied(call)]
            assert allowed == [], role
    with _admin(acl_users["gateway"]) as gw:
        assert all(gw.xlen(stream) == 1 for stream in groups)
    with redis.Redis.from_url(acl_users["shell"]) as sh:
        assert sh.xadd(keys.requests, {"m": b"x"}, id="18446744073709551615-18446744073709551615")
    with redis.Redis.from_url(acl_users["node"]) as node:
        assert node.xadd(keys.events, {"m": b"x"}, id="18446744073709551615-18446744073709551615")
