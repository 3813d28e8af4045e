"""The render node against real Redis, with the test acting as the gateway.

The test XADDs WorkItems to the work stream and reads the node's reports from the events stream.
Nodes run as real processes (``python -m render_nodes``) with short leases.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from broker_contracts.codec import pack, unpack
from broker_contracts.keys import NODES_GROUP, Keys
from broker_contracts.work import NodeEvent, NodeHeartbeat, WorkItem

pytestmark = pytest.mark.timeout(60)


class Farm:
    """Just enough of a gateway: put work in, read reports out, start nodes."""

    def __init__(self, redis_url: str, prefix: str, root: Path) -> None:
        self.url = redis_url
        self.keys = Keys(prefix)
        self.r = redis.Redis.from_url(redis_url)
        self.root = root
        self.nodes: list[subprocess.Popen[bytes]] = []
        self._next_task = 1

    def submit(self, renderer: str, first: int = 1, last: int = 1, job: int = 1, **extra: object) -> WorkItem:
        fields: dict[str, object] = {
            "task_id": self._next_task,
            "job_id": job,
            "seq": self._next_task,
            "first": first,
            "last": last,
            "renderer": renderer,
            "dispatched_at": time.time(),
            **extra,
        }
        item = WorkItem.model_validate(fields)
        self._next_task += 1
        self.r.xadd(self.keys.work("default"), {"m": pack(item.model_dump(mode="json"))})
        return item

    def events(self, task_id: int | None = None) -> list[NodeEvent]:
        out = []
        for _mid, fields in self.r.xrange(self.keys.events):
            ev = NodeEvent.model_validate(unpack(fields[b"m"]))
            if task_id is None or ev.task_id == task_id:
                out.append(ev)
        return out

    def wait_for(self, test: Callable[[list[NodeEvent]], bool], timeout: float = 15.0) -> list[NodeEvent]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if test(events):
                return events
            if time.monotonic() > deadline:
                kinds = [(e.kind, e.task_id, e.node) for e in events if e.kind != "heartbeat"]
                raise AssertionError(f"timed out; events so far: {kinds}")
            time.sleep(0.05)

    def node(self, *args: str, name: str = "n1", lease: float = 2.0) -> subprocess.Popen[bytes]:
        env = {**os.environ, "RFARM_REDIS_URL": self.url, "RFARM_PREFIX": self.keys.prefix}
        argv = [sys.executable, "-m", "render_nodes", "--name", name, "--lease", str(lease), *args]
        argv += ["--output-root", str(self.root / "renders")]
        proc = subprocess.Popen(argv, env=env, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.nodes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.nodes:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)  # reaps it and closes its pipes
        self.r.close()

    def pending(self) -> int:
        return int(self.r.xpending(self.keys.work("default"), NODES_GROUP)["pending"])


@pytest.fixture
def farm(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Farm]:
    f = Farm(redis_url, prefix, tmp_path)
    yield f
    f.close()


def of(events: list[NodeEvent], kind: str, task_id: int | None = None) -> list[NodeEvent]:
    return [e for e in events if e.kind == kind and (task_id is None or e.task_id == task_id)]


def finish(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def check_png(path: Path, width: int, height: int) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC on {kind!r}"
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    assert struct.unpack(">IIBB", chunks[b"IHDR"][:10]) == (width, height, 8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == height * (1 + 3 * width)
    assert b"IEND" in chunks


def test_fractal_task_makes_real_pngs(farm: Farm) -> None:
    item = farm.submit("fractal", 1, 3, job=42, params={"width": "48", "height": "32"})
    code, err = finish(farm.node("--drain"))
    assert code == 0, err
    events = farm.events(item.task_id)
    flow = [e.kind for e in events if e.kind != "log"]
    assert flow == ["started", "progress", "progress", "progress", "succeeded"]
    assert len({e.run for e in events}) == 1 and events[0].run
    assert [e.done_frames for e in of(events, "progress")] == [1, 2, 3]
    assert any("frame 3 done" in (e.output or "") for e in of(events, "log"))
    images = sorted((farm.root / "renders" / "job-42").glob("frame_*.png"))
    assert [p.name for p in images] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    for path in images:
        check_png(path, 48, 32)
    assert images[0].read_bytes() != images[2].read_bytes()  # the zoom moves per frame
    assert farm.pending() == 0
    everything = farm.events()
    beat = of(everything, "heartbeat")[0]
    info = NodeHeartbeat.model_validate(beat.info)
    assert info.node == "n1" and "fractal" in info.specs and info.lease == 2.0
    assert everything[-1].kind == "bye"
    assert not farm.r.exists(farm.keys.node("n1"))


def test_failing_frame_reports_failed_with_exit_code(farm: Farm) -> None:
    item = farm.submit("sleep", 1, 3, params={"seconds": "0", "fail_frames": "2"})
    code, err = finish(farm.node("--drain"))
    assert code == 0, err
    events = farm.events(item.task_id)
    assert [e.kind for e in events if e.kind != "log"] == ["started", "progress", "failed"]
    failed = of(events, "failed")[0]
    assert failed.exit_code == 3 and failed.error and "frame 2" in failed.error
    assert failed.run == events[0].run
    assert farm.pending() == 0


def test_cancel_stops_a_running_render_within_two_seconds(farm: Farm) -> None:
    item = farm.submit("sleep", 1, 1, job=7, params={"seconds": "60"})
    node = farm.node()
    farm.wait_for(lambda ev: bool(of(ev, "started", item.task_id)))
    farm.r.set(farm.keys.cancel(7), b"1", ex=3600)
    asked = time.time()
    events = farm.wait_for(lambda ev: bool(of(ev, "failed", item.task_id)), timeout=5)
    failed = of(events, "failed", item.task_id)[0]
    assert failed.error == "cancelled"
    assert failed.ts - asked < 2.0
    node.send_signal(signal.SIGTERM)
    code, err = finish(node)
    assert code == 0, err
    assert farm.pending() == 0


def test_pre_start_checks_release_or_drop(farm: Farm) -> None:
    farm.r.set(farm.keys.hold(5), b"1")
    farm.r.set(farm.keys.cancel(6), b"1")
    held = farm.submit("sleep", job=5, params={"seconds": "0"})
    cancelled = farm.submit("sleep", job=6, params={"seconds": "0"})
    untagged = farm.submit("sleep", job=8, requires=["gpu", "linux"], params={"seconds": "0"})
    blocked = farm.submit("sleep", job=8, blocked_nodes=["n1"], params={"seconds": "0"})
    unknown = farm.submit("blender", job=8)
    good = farm.submit("sleep", job=8, requires=["linux"], params={"seconds": "0"})
    code, err = finish(farm.node("--drain", "--tags", "linux"))
    assert code == 0, err
    events = farm.events()
    for item, words in [(held, "paused"), (untagged, "gpu"), (blocked, "blocklisted"), (unknown, "blender")]:
        mine = farm.events(item.task_id)
        assert [e.kind for e in mine] == ["released"], (item.task_id, mine)
        assert words in (mine[0].error or "") and mine[0].run  # a run id that never started
    assert farm.events(cancelled.task_id) == []
    assert of(events, "succeeded", good.task_id)
    assert farm.pending() == 0


def test_bad_params_fail_the_attempt(farm: Farm) -> None:
    item = farm.submit("fractal", params={"width": "99999"})
    code, err = finish(farm.node("--drain"))
    assert code == 0, err
    events = farm.events(item.task_id)
    assert [e.kind for e in events] == ["started", "failed"]
    assert "'width'" in (events[1].error or "")


def test_undecodable_work_goes_to_dead(farm: Farm) -> None:
    farm.r.xadd(farm.keys.work("default"), {"m": b"\xc1garbage"})
    farm.r.xadd(farm.keys.work("default"), {"m": pack({"task_id": "x"})})
    code, err = finish(farm.node("--drain"))
    assert code == 0, err
    assert farm.r.xlen(farm.keys.dead) == 2
    assert farm.pending() == 0


def test_drain_exits_when_there_is_no_work(farm: Farm) -> None:
    started = time.monotonic()
    code, err = finish(farm.node("--drain"))
    assert code == 0, err
    assert time.monotonic() - started < 8
    kinds = [e.kind for e in farm.events()]
    assert kinds[0] == "heartbeat" and kinds[-1] == "bye"
    assert not farm.r.exists(farm.keys.node("n1"))
