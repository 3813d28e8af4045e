"""Names are whole strings, nothing a user, node or renderer writes can drive another person's
terminal, and profile parameters cannot become options (issue 11, points 8, 9 and 11): against
the gateway's real request loop and ledger (in-process, real PostgreSQL and Redis);
tests/e2e/test_security_validation.py tries the same through the real processes."""

from __future__ import annotations

import threading
import time

import psycopg

from broker_contracts.codec import pack
from broker_contracts.profiles import ParamSpec, ProfileSpec
from broker_contracts.work import NodeEvent, NodeHeartbeat
from gateway.ledger import Ledger
from render_nodes.offered import confine_paths
from store import nodes
from tests.support.gateway import PASSWORD, Gw

BAD_NAMES = ["alice\n", "alice\r\n", "\nalice", "alice\t", "alice\x00", "al\x1b[2Jice", "alice\u2028", "\u202ealice"]


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
