"""Names are whole strings, nothing a user, node or renderer writes can drive another person's
terminal, and profile parameters cannot become options (issue 11, points 8, 9 and 11): against
the gateway's real request loop and ledger (in-process, real PostgreSQL and Redis), and through
the real processes."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from broker_contracts.codec import pack
from broker_contracts.profiles import ParamSpec, ProfileSpec
from broker_contracts.work import NodeEvent, NodeHeartbeat
from gateway.ledger import Ledger
from render_nodes.profiles import confine_paths
from store import nodes
from tests.integration.test_fuzz_gateway import PASSWORD, Gw, open_gw
from tests.support.farm import Farm, Result, wait_for

BAD_NAMES = ["alice\n", "alice\r\n", "\nalice", "alice\t", "alice\x00", "al\x1b[2Jice", "alice\u2028", "\u202ealice"]


@pytest.fixture
def gw(redis_url: str, database_url: str, prefix: str) -> Iterator[Gw]:
    yield from open_gw(redis_url, database_url, prefix)


def _users_named(gw: Gw, like: str) -> list[str]:
    with psycopg.connect(gw.db_url) as conn:
        rows = conn.execute("SELECT username FROM users WHERE username LIKE %s", (f"%{like}%",)).fetchall()
    return [r[0] for r in rows]


def test_alice_with_a_newline_is_not_a_second_alice(gw: Gw, unique: str) -> None:
    name = f"alice{unique}"
    for bad in BAD_NAMES:
        spoiled = bad.replace("alice", name)
        reply = gw.call("auth.register", {"username": spoiled, "password": PASSWORD})
        assert not reply.ok and reply.error is not None and reply.error.code == "request.invalid", (spoiled, reply)
        login = gw.call("auth.login", {"username": spoiled, "password": PASSWORD})
        assert not login.ok and login.error is not None and login.error.code == "request.invalid", (spoiled, login)
    assert _users_named(gw, name) == []
    gw.ok("auth.register", {"username": name, "password": PASSWORD})
    assert _users_named(gw, name) == [name]


def test_submits_that_could_drive_a_terminal_or_a_renderer_are_refused(gw: Gw, unique: str) -> None:
    token = gw.user(f"sub{unique}")
    before = gw.counts()["jobs"]
    bodies = [
        {"name": "clear\x1b[2J"},
        {"name": "c1\x9b31m"},
        {"name": "bidi\u202eevil"},
        {"name": "two\nlines"},
        {"name": "x", "frames": "-3"},
        {"name": "x", "frames": "-5-2"},
        {"name": "x", "frames": "1-3\n"},
        {"name": "x", "renderer": "sleep", "params": {"fail_frames": "--python-expr=1"}},
        {"name": "x", "renderer": "sleep", "params": {"fail_frames": "1\n2"}},
        {"name": "x", "pool": "default\n"},
        {"name": "x", "requires": ["gpu\n"]},
    ]
    for body in bodies:
        reply = gw.call("job.submit", body, token)
        assert not reply.ok and reply.error is not None and reply.error.code == "request.invalid", (body, reply)
    negative = gw.call("job.submit", {"name": "x", "frames": "-3"}, token)
    assert negative.error is not None and "negative frame" in negative.error.message
    assert gw.counts()["jobs"] == before


def test_path_parameters_are_confined_to_the_roots_a_node_announces(gw: Gw, unique: str) -> None:
    token = gw.user(f"root{unique}")
    name = f"blend{unique}"
    spec = ProfileSpec(name=name, argv=["blender", "-b", "{scene}"], params={"scene": ParamSpec(type="path")})
    announced = confine_paths({name: spec}, ["/projects"])
    hb = NodeHeartbeat(node=f"n-{unique}", pool="default", slots=1, tags=[], profiles=[name], running=[],
                       version="test", host="h", lease=30.0,
                       specs={n: s.model_dump(mode="json") for n, s in announced.items()})  # fmt: skip
    with psycopg.connect(gw.db_url) as conn:
        nodes.heartbeat(conn, hb)
    for bad in ("/etc/passwd", "/projects/../etc/passwd", "relative/a.blend", "--python-expr=x", "/projects/a\n"):
        reply = gw.call("job.submit", {"name": "x", "renderer": name, "params": {"scene": bad}}, token)
        assert not reply.ok and reply.error is not None and reply.error.code == "request.invalid", (bad, reply)
        assert "'scene'" in reply.error.message
    gw.ok("job.submit", {"name": "x", "renderer": name, "params": {"scene": "/projects/shot/a.blend"}}, token)


def test_a_node_announcing_names_with_controls_is_dead_lettered_not_listed(gw: Gw, unique: str) -> None:
    ledger = Ledger(gw.r, gw.pool, gw.config, "validate", threading.Event(), threading.Event())
    good = {"node": f"n-{unique}", "pool": "default", "slots": 1, "tags": [], "profiles": ["sleep"],
            "running": [], "version": "test", "host": "h", "lease": 30.0}  # fmt: skip
    spoiled = [
        NodeEvent(kind="heartbeat", node=f"n-{unique}", ts=time.time(), info={**good, "node": f"n-{unique}\x1b[2J"}),
        NodeEvent(kind="heartbeat", node=f"n-{unique}", ts=time.time(), info={**good, "pool": "default\n"}),
        NodeEvent(kind="heartbeat", node=f"n-{unique}", ts=time.time(), info={**good, "version": "1\u202e"}),
    ]
    payloads = [pack(e.model_dump(mode="json")) for e in spoiled]
    payloads.append(pack({**NodeEvent(kind="bye", node="x", ts=time.time()).model_dump(mode="json"),
                          "node": f"n-{unique}\n"}))  # fmt: skip
    dead = gw.dead_count()
    ledger.process([(f"{i + 1}-0", {b"m": p}) for i, p in enumerate(payloads)])
    assert gw.dead_count() >= dead + len(payloads)
    with psycopg.connect(gw.db_url) as conn:
        rows = conn.execute("SELECT id FROM nodes WHERE id LIKE %s", (f"%{unique}%",)).fetchall()
    assert rows == []


PROFILES = """
builtins = []
[profiles.evil]
argv = ["{python}", "-c", 'print("\\x1b[2J\\x9b31m\\u202eevil", "\\x1b]0;pwned\\x07", "{frame}")']
frames_per_invocation = "frame"
[profiles.evil.params.scene]
type = "path"
required = true
"""


def test_escapes_from_a_renderer_reach_logs_escaped_and_raw_only_on_request(farm: Farm, unique: str) -> None:
    user = farm.user(f"u{unique}")
    projects = farm.root / "projects"
    profiles = farm.root / "profiles.toml"
    profiles.write_text(PROFILES.replace("{python}", sys.executable))
    bad = farm.start_node(f"bad-{unique}\x1b[2J", "--profiles", str(profiles))
    assert bad.wait(timeout=30) == 2
    farm.procs.pop(f"bad-{unique}\x1b[2J")
    farm.start_node(f"evil-{unique}", "--profiles", str(profiles), "--path-root", str(projects))

    def submit(scene: str) -> Result | None:
        res = farm.rfarm("submit", "x", "--renderer", "evil", "--param", f"scene={scene}", "--json", config=user)
        return res if res.code == 0 or "no render node offers" not in res.out else None

    ok = wait_for(lambda: submit(str(projects / "a.blend")), what="the node's profile to be announced")
    assert ok.code == 0, ok
    job = ok.json()["id"]
    outside = farm.rfarm("submit", "x", "--renderer", "evil", "--param", "scene=/etc/passwd", "--json", config=user)
    assert outside.code == 1 and outside.json()["error"]["code"] == "request.invalid", outside
    assert str(projects) in outside.json()["error"]["message"]

    def done() -> bool:
        res = farm.rfarm("show", str(job), "--json", config=user)
        return res.code == 0 and res.json()["job"]["status"] == "succeeded"

    wait_for(done, timeout=60, what="the job")
    shown = farm.rfarm("logs", str(job), config=user)
    assert shown.code == 0, shown
    assert "\\x1b[2J\\x9b31m\\u202eevil \\x1b]0;pwned\\x07 1" in shown.out, shown.out
    assert not any(c in shown.out for c in "\x1b\x9b\u202e\x07"), shown.out
    as_json = farm.rfarm("logs", str(job), "--json", config=user)
    assert not any(c in as_json.out for c in "\x1b\x9b\u202e\x07") and "evil" in as_json.json()["logs"][0]["output"]
    raw = farm.rfarm("logs", str(job), "--raw", config=user)
    assert raw.code == 0 and "\x1b[2J\x9b31m\u202eevil \x1b]0;pwned\x07 1" in raw.out, raw.out


def test_registering_alice_with_a_newline_through_rfarm_is_refused(farm: Farm, unique: str) -> None:
    res = farm.rfarm("register", f"alice{unique}\n", "--password-stdin", stdin=PASSWORD + "\n")
    assert res.code == 2 and "username" in res.err and "\n" not in res.err.rstrip("\n"), res
