"""The render node against real Redis, with the test acting as the gateway.

The test XADDs WorkItems to the work stream and reads the node's reports from the events stream.
Nodes run as real processes (``python -m render_nodes``) with short leases.
"""

from __future__ import annotations

import signal
import struct
import time
import zlib
from pathlib import Path

import pytest

from broker_contracts.codec import pack
from broker_contracts.work import NodeHeartbeat
from tests.support.nodes import NodeRig, finish, of

pytestmark = pytest.mark.timeout(60)


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


def test_fractal_task_makes_real_pngs(rig: NodeRig) -> None:
    item = rig.submit("fractal", 1, 3, job=42, params={"width": "48", "height": "32"})
    code, err = finish(rig.node("--drain"))
    assert code == 0, err
    events = rig.events(item.task_id)
    flow = [e.kind for e in events if e.kind != "log"]
    assert flow == ["started", "progress", "progress", "progress", "succeeded"]
    assert len({e.run for e in events}) == 1 and events[0].run
    assert [e.done_frames for e in of(events, "progress")] == [1, 2, 3]
    assert any("frame 3 done" in (e.output or "") for e in of(events, "log"))
    images = sorted((rig.root / "renders" / "job-42").glob("frame_*.png"))
    assert [p.name for p in images] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    for path in images:
        check_png(path, 48, 32)
    assert images[0].read_bytes() != images[2].read_bytes()  # the zoom moves per frame
    assert rig.pending() == 0
    everything = rig.events()
    beat = of(everything, "heartbeat")[0]
    info = NodeHeartbeat.model_validate(beat.info)
    assert info.node == "n1" and "fractal" in info.specs and info.lease == 2.0
    assert everything[-1].kind == "bye"
    assert not rig.r.exists(rig.keys.node("n1"))


def test_failing_frame_reports_failed_with_exit_code(rig: NodeRig) -> None:
    item = rig.submit("sleep", 1, 3, params={"seconds": "0", "fail_frames": "2"})
    code, err = finish(rig.node("--drain"))
    assert code == 0, err
    events = rig.events(item.task_id)
    assert [e.kind for e in events if e.kind != "log"] == ["started", "progress", "failed"]
    failed = of(events, "failed")[0]
    assert failed.exit_code == 3 and failed.error and "frame 2" in failed.error
    assert failed.run == events[0].run
    assert rig.pending() == 0


def test_cancel_stops_a_running_render_within_two_seconds(rig: NodeRig) -> None:
    item = rig.submit("sleep", 1, 1, job=7, params={"seconds": "60"})
    node = rig.node()
    rig.wait_for(lambda ev: bool(of(ev, "started", item.task_id)))
    rig.r.set(rig.keys.cancel(7), b"1", ex=3600)
    asked = time.time()
    events = rig.wait_for(lambda ev: bool(of(ev, "failed", item.task_id)), timeout=5)
    failed = of(events, "failed", item.task_id)[0]
    assert failed.error == "cancelled"
    assert failed.ts - asked < 2.0
    node.send_signal(signal.SIGTERM)
    code, err = finish(node)
    assert code == 0, err
    assert rig.pending() == 0


def test_pre_start_checks_release_or_drop(rig: NodeRig) -> None:
    rig.r.set(rig.keys.hold(5), b"1")
    rig.r.set(rig.keys.cancel(6), b"1")
    held = rig.submit("sleep", job=5, params={"seconds": "0"})
    cancelled = rig.submit("sleep", job=6, params={"seconds": "0"})
    untagged = rig.submit("sleep", job=8, requires=["gpu", "linux"], params={"seconds": "0"})
    blocked = rig.submit("sleep", job=8, blocked_nodes=["n1"], params={"seconds": "0"})
    unknown = rig.submit("blender", job=8)
    good = rig.submit("sleep", job=8, requires=["linux"], params={"seconds": "0"})
    code, err = finish(rig.node("--drain", "--tags", "linux", "--no-blender"))  # "blender": a profile it lacks
    assert code == 0, err
    events = rig.events()
    for item, words in [(held, "paused"), (untagged, "gpu"), (blocked, "blocklisted"), (unknown, "blender")]:
        mine = rig.events(item.task_id)
        assert [e.kind for e in mine] == ["released"], (item.task_id, mine)
        assert words in (mine[0].error or "") and mine[0].run  # a run id that never started
    assert rig.events(cancelled.task_id) == []
    assert of(events, "succeeded", good.task_id)
    assert rig.pending() == 0


def test_bad_params_fail_the_attempt(rig: NodeRig) -> None:
    item = rig.submit("fractal", params={"width": "99999"})
    code, err = finish(rig.node("--drain"))
    assert code == 0, err
    events = rig.events(item.task_id)
    assert [e.kind for e in events] == ["started", "failed"]
    assert "'width'" in (events[1].error or "")


def test_undecodable_work_goes_to_dead(rig: NodeRig) -> None:
    rig.r.xadd(rig.keys.work("default"), {"m": b"\xc1garbage"})
    rig.r.xadd(rig.keys.work("default"), {"m": pack({"task_id": "x"})})
    code, err = finish(rig.node("--drain"))
    assert code == 0, err
    assert rig.r.xlen(rig.keys.dead) == 2
    assert rig.pending() == 0


def test_drain_exits_when_there_is_no_work(rig: NodeRig) -> None:
    started = time.monotonic()
    code, err = finish(rig.node("--drain"))
    assert code == 0, err
    assert time.monotonic() - started < 8
    kinds = [e.kind for e in rig.events()]
    assert kinds[0] == "heartbeat" and kinds[-1] == "bye"
    assert not rig.r.exists(rig.keys.node("n1"))
