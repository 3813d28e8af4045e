"""Names are whole strings and what a renderer prints cannot drive a terminal (issue 11, points 8
and 9), through the real processes: gateway, node and `rfarm`."""

from __future__ import annotations

import sys

from tests.support.farm import Farm, Result, wait_for
from tests.support.gateway import PASSWORD

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
