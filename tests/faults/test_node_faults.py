"""Render nodes under faults: a node killed mid-task, leases, SIGTERM, Redis restarting."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from broker_contracts.keys import NODES_GROUP
from tests.support.nodes import NodeRig, finish, of

pytestmark = pytest.mark.timeout(90)


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(x) for x in text)
    return out


def gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_task_of_a_killed_node_is_taken_over_after_the_lease(rig: NodeRig) -> None:
    item = rig.submit("sleep", 1, 2, params={"seconds": "0.7"})
    first = rig.node(name="doomed", lease=2)
    rig.wait_for(lambda ev: bool(of(ev, "started", item.task_id)))
    renderers = children_of(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    killed_at = time.monotonic()
    for pid in renderers:  # an orphaned built-in renderer notices its node is gone and stops
        assert gone(pid, 3), "the orphaned renderer kept running"
    second = rig.node(name="heir", lease=2)
    events = rig.wait_for(lambda ev: bool(of(ev, "succeeded", item.task_id)), timeout=20)
    assert time.monotonic() - killed_at >= 1.0  # not before the lease lapsed
    starts = of(events, "started", item.task_id)
    assert [e.node for e in starts] == ["doomed", "heir"]
    assert starts[0].run != starts[1].run
    done = of(events, "succeeded", item.task_id)[0]
    assert done.node == "heir" and done.run == starts[1].run
    second.send_signal(signal.SIGTERM)
    code, err = finish(second)
    assert code == 0, err
    assert "taking over work entry" in err
    assert rig.pending() == 0


def test_a_long_render_keeps_its_lease(rig: NodeRig) -> None:
    """A render three times longer than the lease is not stolen by an idle node."""
    item = rig.submit("sleep", 1, 1, params={"seconds": "4.5"})
    owner = rig.node(name="owner", lease=1.5)
    rig.wait_for(lambda ev: bool(of(ev, "started", item.task_id)))
    idle = rig.node(name="idle", lease=1.5)
    events = rig.wait_for(lambda ev: bool(of(ev, "succeeded", item.task_id)), timeout=20)
    assert [e.node for e in of(events, "started", item.task_id)] == ["owner"]
    for proc in (owner, idle):
        proc.send_signal(signal.SIGTERM)
    for proc in (owner, idle):
        code, err = finish(proc)
        assert code == 0, err


def test_sigterm_lets_short_work_finish_and_releases_long_work(rig: NodeRig) -> None:
    short = rig.submit("sleep", 1, 1, params={"seconds": "0.8"})
    long = rig.submit("sleep", 1, 1, params={"seconds": "60"})
    node = rig.node("--slots", "2", "--grace", "1.5")
    rig.wait_for(lambda ev: len(of(ev, "started")) == 2)
    node.send_signal(signal.SIGTERM)
    code, err = finish(node)
    assert code == 0, err
    events = rig.events()
    assert of(events, "succeeded", short.task_id)
    released = of(events, "released", long.task_id)
    assert len(released) == 1 and released[0].error == "node stopping"
    assert released[0].run == of(events, "started", long.task_id)[0].run
    assert events[-1].kind == "bye"
    assert rig.pending() == 0  # released work is acked: the gateway re-dispatches it
    assert not rig.r.exists(rig.keys.node("n1"))


def test_second_interrupt_stops_at_once(rig: NodeRig) -> None:
    item = rig.submit("sleep", 1, 1, params={"seconds": "60"})
    node = rig.node("--grace", "60")
    rig.wait_for(lambda ev: bool(of(ev, "started", item.task_id)))
    node.send_signal(signal.SIGINT)
    time.sleep(0.3)
    asked = time.monotonic()
    node.send_signal(signal.SIGINT)
    code, err = finish(node)
    assert code == 0, err
    assert time.monotonic() - asked < 3
    assert of(rig.events(), "released", item.task_id)


def test_group_is_recreated_when_the_stream_vanishes(rig: NodeRig) -> None:
    node = rig.node()
    rig.wait_for(lambda ev: bool(of(ev, "heartbeat")))
    rig.r.delete(rig.keys.work("default"))  # as after a Redis restart that lost everything
    time.sleep(1.2)
    item = rig.submit("sleep", params={"seconds": "0"})
    rig.wait_for(lambda ev: bool(of(ev, "succeeded", item.task_id)))
    node.send_signal(signal.SIGTERM)
    code, err = finish(node)
    assert code == 0, err
    assert "recreating" in err
    groups = rig.r.xinfo_groups(rig.keys.work("default"))
    assert [g["name"] for g in groups] == [NODES_GROUP.encode()] or [g["name"] for g in groups] == [NODES_GROUP]


def test_node_rides_out_a_redis_restart(tmp_path: Path, prefix: str) -> None:
    from tests.support.servers import private_redis

    with private_redis(tmp_path) as (url, server):
        f = NodeRig(url, prefix, tmp_path)
        try:
            node = f.node(lease=2)
            f.wait_for(lambda ev: bool(of(ev, "heartbeat")))
            server.kill()
            time.sleep(1.5)
            server.start()  # back, and empty
            f.r.close()
            item = f.submit("sleep", params={"seconds": "0"})
            f.wait_for(lambda ev: bool(of(ev, "succeeded", item.task_id)), timeout=20)
            node.send_signal(signal.SIGTERM)
            code, err = finish(node)
            assert code == 0, err
            assert err.count("redis unreachable") == 1, err
            assert "redis reachable again" in err
        finally:
            f.close()


def test_command_profile_from_file(rig: NodeRig, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        f"""
builtins = []
[profiles.echo]
argv = ["{sys.executable}", "-c", "import sys; print('rendered', sys.argv[1])", "{{frame}}:{{word}}"]
frames_per_invocation = "frame"
[profiles.echo.params.word]
type = "str"
pattern = "[a-z]+"
required = true
"""
    )
    item = rig.submit("echo", 4, 5, params={"word": "hi"})
    fractal = rig.submit("fractal")
    code, err = finish(rig.node("--drain", "--profiles", str(profiles)))
    assert code == 0, err
    events = rig.events(item.task_id)
    assert [e.kind for e in events if e.kind != "log"] == ["started", "progress", "progress", "succeeded"]
    text = "\n".join(e.output or "" for e in of(events, "log"))
    assert "rendered 4:hi" in text and "rendered 5:hi" in text
    assert [e.kind for e in rig.events(fractal.task_id)] == ["released"]
