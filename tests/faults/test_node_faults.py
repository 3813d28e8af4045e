"""Render nodes under faults: a node killed mid-task, leases, SIGTERM, Redis restarting, bad options."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_contracts.keys import NODES_GROUP
from tests.e2e.test_node_run import Farm, finish, of

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def farm(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Farm]:
    f = Farm(redis_url, prefix, tmp_path)
    yield f
    f.close()


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


def test_task_of_a_killed_node_is_taken_over_after_the_lease(farm: Farm) -> None:
    item = farm.submit("sleep", 1, 2, params={"seconds": "0.7"})
    first = farm.node(name="doomed", lease=2)
    farm.wait_for(lambda ev: bool(of(ev, "started", item.task_id)))
    renderers = children_of(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    killed_at = time.monotonic()
    for pid in renderers:  # an orphaned built-in renderer notices its node is gone and stops
        assert gone(pid, 3), "the orphaned renderer kept running"
    second = farm.node(name="heir", lease=2)
    events = farm.wait_for(lambda ev: bool(of(ev, "succeeded", item.task_id)), timeout=20)
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
    assert farm.pending() == 0


def test_a_long_render_keeps_its_lease(farm: Farm) -> None:
    """A render three times longer than the lease is not stolen by an idle node."""
    item = farm.submit("sleep", 1, 1, params={"seconds": "4.5"})
    owner = farm.node(name="owner", lease=1.5)
    farm.wait_for(lambda ev: bool(of(ev, "started", item.task_id)))
    idle = farm.node(name="idle", lease=1.5)
    events = farm.wait_for(lambda ev: bool(of(ev, "succeeded", item.task_id)), timeout=20)
    assert [e.node for e in of(events, "started", item.task_id)] == ["owner"]
    for proc in (owner, idle):
        proc.send_signal(signal.SIGTERM)
    for proc in (owner, idle):
        code, err = finish(proc)
        assert code == 0, err


def test_sigterm_lets_short_work_finish_and_releases_long_work(farm: Farm) -> None:
    short = farm.submit("sleep", 1, 1, params={"seconds": "0.8"})
    long = farm.submit("sleep", 1, 1, params={"seconds": "60"})
    node = farm.node("--slots", "2", "--grace", "1.5")
    farm.wait_for(lambda ev: len(of(ev, "started")) == 2)
    node.send_signal(signal.SIGTERM)
    code, err = finish(node)
    assert code == 0, err
    events = farm.events()
    assert of(events, "succeeded", short.task_id)
    released = of(events, "released", long.task_id)
    assert len(released) == 1 and released[0].error == "node stopping"
    assert released[0].run == of(events, "started", long.task_id)[0].run
    assert events[-1].kind == "bye"
    assert farm.pending() == 0  # released work is acked: the gateway re-dispatches it
    assert not farm.r.exists(farm.keys.node("n1"))


def test_second_interrupt_stops_at_once(farm: Farm) -> None:
    item = farm.submit("sleep", 1, 1, params={"seconds": "60"})
    node = farm.node("--grace", "60")
    farm.wait_for(lambda ev: bool(of(ev, "started", item.task_id)))
    node.send_signal(signal.SIGINT)
    time.sleep(0.3)
    asked = time.monotonic()
    node.send_signal(signal.SIGINT)
    code, err = finish(node)
    assert code == 0, err
    assert time.monotonic() - asked < 3
    assert of(farm.events(), "released", item.task_id)


def test_group_is_recreated_when_the_stream_vanishes(farm: Farm) -> None:
    node = farm.node()
    farm.wait_for(lambda ev: bool(of(ev, "heartbeat")))
    farm.r.delete(farm.keys.work("default"))  # as after a Redis restart that lost everything
    time.sleep(1.2)
    item = farm.submit("sleep", params={"seconds": "0"})
    farm.wait_for(lambda ev: bool(of(ev, "succeeded", item.task_id)))
    node.send_signal(signal.SIGTERM)
    code, err = finish(node)
    assert code == 0, err
    assert "recreating" in err
    groups = farm.r.xinfo_groups(farm.keys.work("default"))
    assert [g["name"] for g in groups] == [NODES_GROUP.encode()] or [g["name"] for g in groups] == [NODES_GROUP]


def test_node_rides_out_a_redis_restart(tmp_path: Path, prefix: str) -> None:
    from tests.support.servers import private_redis

    with private_redis(tmp_path) as (url, server):
        f = Farm(url, prefix, tmp_path)
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


def _cli(*args: str, url: str = "redis://127.0.0.1:1/0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RFARM_REDIS_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "render_nodes", *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--slots", "0"],
        ["--lease", "0"],
        ["--pool", "a b"],
        ["--tags", "gpu,/x"],
        ["--bogus"],
        ["--profiles", "/nonexistent/profiles.toml"],
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str]) -> None:
    result = _cli(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_unreachable_redis_exits_3_without_secrets() -> None:
    result = _cli("--drain", url="redis://user:s3cret@127.0.0.1:1/0")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach redis" in lines[0] and "s3cret" not in lines[0]


def test_command_profile_from_file(farm: Farm, tmp_path: Path) -> None:
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
    item = farm.submit("echo", 4, 5, params={"word": "hi"})
    fractal = farm.submit("fractal")
    code, err = finish(farm.node("--drain", "--profiles", str(profiles)))
    assert code == 0, err
    events = farm.events(item.task_id)
    assert [e.kind for e in events if e.kind != "log"] == ["started", "progress", "progress", "succeeded"]
    text = "\n".join(e.output or "" for e in of(events, "log"))
    assert "rendered 4:hi" in text and "rendered 5:hi" in text
    assert [e.kind for e in farm.events(fractal.task_id)] == ["released"]
