"""Real Blender scenes on the farm: the blender profile, frame records, thumbnails and previews.

The scenes are made by Blender itself (tests/support/blender.py); nodes are real processes that
run the Debian Blender. Under CI a missing Blender fails these tests; elsewhere they skip.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.support.blender import HEIGHT, WIDTH
from tests.support.farm import BIN, Farm, wait_for
from tests.support.terminal import run_in_terminal

pytestmark = pytest.mark.timeout(240)


def status(farm: Farm, job_id: int, config: str) -> str:
    res = farm.rfarm("show", str(job_id), "--json", config=config)
    assert res.code == 0, res
    return str(res.json()["job"]["status"])


def submit(farm: Farm, config: str, *args: str) -> int:
    res = farm.rfarm("submit", *args, "--renderer", "blender", "--json", config=config)
    assert res.code == 0, res
    return int(res.json()["id"])


def nodes(farm: Farm, scenes: Path, blender: str, *names: str) -> None:
    """Nodes offering the blender profile, up (announced in Redis) when this returns."""
    for name in names:
        farm.start_node(name, "--blender", blender, "--path-root", str(scenes))
    r = farm.redis()
    try:
        wait_for(lambda: all(r.exists(farm.keys.node(n)) for n in names), timeout=30, what="the nodes")
    finally:
        r.close()


def in_pty(farm: Farm, config: str, args: list[str], **env: str) -> str:
    """``rfarm ARGS`` on a pseudo-terminal (so it draws as on a terminal); everything it wrote."""
    environ = farm.env(RFARM_CONFIG_DIR=str(farm.root / config), **env)
    environ.pop("TMUX", None)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([str(BIN / "rfarm"), *args], stdin=terminal, stdout=terminal, stderr=terminal,
                            env=environ, cwd=farm.root)
    os.close(terminal)
    out = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the other side closed: the command ended
            break
        if not chunk:
            break
        out += chunk
    os.close(controller)
    assert proc.wait(timeout=60) == 0, out[-2000:]
    return out.decode("utf-8", errors="replace")


def test_turning_cube_on_two_nodes_in_chunks_of_three(farm: Farm, unique: str, blender: str, scenes: Path) -> None:
    nodes(farm, scenes, blender, f"b1-{unique}", f"b2-{unique}")
    alice = farm.user(f"alice{unique}")
    scene = scenes / "cube.blend"
    job_id = submit(farm, alice, "cube", "--frames", "1-12", "--chunk", "3", "--param", f"scene={scene}",
                    "--param", "samples=4")
    wait_for(lambda: status(farm, job_id, alice) in ("succeeded", "failed"), timeout=180, what="the render")
    assert status(farm, job_id, alice) == "succeeded", farm.logs()[-4000:]

    # twelve PNGs of the scene's size, all different
    out = farm.output_root / f"job-{job_id}"
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"frame_{n:04d}.png" for n in range(1, 13)]
    for f in files:
        with Image.open(f) as image:
            assert image.size == (WIDTH, HEIGHT)
    assert len({f.read_bytes() for f in files}) == 12

    # the records: node and seconds for each frame, the file, its size
    listed = farm.rfarm("frames", str(job_id), "--json", config=alice)
    assert listed.code == 0, listed
    records = listed.json()
    assert [r["frame"] for r in records] == list(range(1, 13))
    assert {r["node"] for r in records} == {f"b1-{unique}", f"b2-{unique}"}  # both nodes rendered
    chunks = [{r["node"] for r in records[i : i + 3]} for i in range(0, 12, 3)]
    assert all(len(c) == 1 for c in chunks)  # a chunk of 3 frames is one task on one node
    for r in records:
        assert r["status"] == "done" and r["node"] in (f"b1-{unique}", f"b2-{unique}")
        assert r["attempt"] == 1 and len(r["sha256"]) == 64
        assert r["seconds"] > 0 and r["file"] == str(out.resolve() / f"frame_{r['frame']:04d}.png")
        assert r["bytes"] == Path(r["file"]).stat().st_size
    page = farm.rfarm("frames", str(job_id), "--json", "--limit", "5", config=alice).json()
    assert [r["frame"] for r in page["frames"]] == [1, 2, 3, 4, 5] and page["next"] == 5
    rest = farm.rfarm("frames", str(job_id), "--json", "--limit", "50", "--after", "5", config=alice).json()
    assert [r["frame"] for r in rest["frames"]] == list(range(6, 13)) and rest["next"] is None

    # the thumbnails are in PostgreSQL; their copies on the events stream were deleted once applied
    r = farm.redis()
    try:
        left = [f for _, f in r.xrange(farm.keys.events) if b"thumb" in f.get(b"m", b"")]
    finally:
        r.close()
    assert left == []

    # Blender's own output in the logs
    logs = farm.rfarm("logs", str(job_id), config=alice)
    assert logs.code == 0 and "Saved: '" in logs.out and "frame_0012.png" in logs.out

    # frame times in show
    shown = farm.rfarm("show", str(job_id), config=alice)
    assert shown.code == 0 and "frame time" in shown.out and "min" in shown.out and "max" in shown.out
    times = farm.rfarm("show", str(job_id), "--json", config=alice).json()["times"]
    assert times["done"] == 12 and 0 < times["min"] <= times["mean"] <= times["max"]

    # previews come from the farm, not from the render storage
    shutil.move(str(out), str(farm.root / "moved-away"))
    sheet = farm.root / "sheet.png"
    made = farm.rfarm("preview", str(job_id), "--out", str(sheet), config=alice)
    assert made.code == 0, made
    with Image.open(sheet) as image:
        image.verify()
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width >= 4 * 160 and image.height > 3 * 90
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 50  # real pictures, not an empty grid

    screen = run_in_terminal(farm, alice, ["preview", str(job_id)])
    assert screen.count("▀") > 12 * 50 and "38;2;" in screen
    for n in (1, 6, 12):
        assert f"frame {n}" in screen
    # watch shows the latest finished frame where the terminal shows images (kitty here, outside tmux)
    kitty = in_pty(farm, alice, ["watch", str(job_id)], TERM="xterm-kitty")
    assert "\x1b_Ga=T,f=100," in kitty and f"job {job_id}" in kitty
    plain = in_pty(farm, alice, ["watch", str(job_id)], TERM="xterm-256color")
    assert "\x1b_G" not in plain and "\x1b]1337;" not in plain
    one = run_in_terminal(farm, alice, ["preview", str(job_id), "--frame", "7"])
    assert "frame 7" in one and "frame 8" not in one and one.count("▀") > 24 * 13


def test_missing_scene_fails_naming_the_frame(farm: Farm, unique: str, blender: str, scenes: Path) -> None:
    nodes(farm, scenes, blender, f"b1-{unique}")
    alice = farm.user(f"alice{unique}")
    job_id = submit(farm, alice, "gone", "--frames", "1-2", "--chunk", "2", "--max-attempts", "1",
                    "--param", f"scene={scenes / 'not-there.blend'}")
    wait_for(lambda: status(farm, job_id, alice) in ("succeeded", "failed"), timeout=120, what="the job to end")
    assert status(farm, job_id, alice) == "failed"
    shown = farm.rfarm("show", str(job_id), "--json", config=alice).json()
    reasons = json.dumps(shown)
    assert "frame 1: " in reasons and "Cannot read file" in reasons
    logs = farm.rfarm("logs", str(job_id), config=alice)
    assert "Error: Cannot read file" in logs.out and "not-there.blend" in logs.out


def test_scene_blender_cannot_render_fails_naming_the_frame(
    farm: Farm, unique: str, blender: str, scenes: Path
) -> None:
    nodes(farm, scenes, blender, f"b1-{unique}")
    alice = farm.user(f"alice{unique}")
    job_id = submit(farm, alice, "nocam", "--frames", "3", "--max-attempts", "1",
                    "--param", f"scene={scenes / 'nocamera.blend'}", "--param", "engine=CYCLES")
    wait_for(lambda: status(farm, job_id, alice) in ("succeeded", "failed"), timeout=120, what="the job to end")
    assert status(farm, job_id, alice) == "failed"
    reasons = json.dumps(farm.rfarm("show", str(job_id), "--json", config=alice).json())
    assert "frame 3" in reasons and "no camera" in reasons
    logs = farm.rfarm("logs", str(job_id), config=alice)
    assert "Error: Cannot render, no camera" in logs.out
    empty = farm.rfarm("preview", str(job_id), config=alice)
    assert empty.code != 0 and "no finished frame" in empty.err


def test_a_scene_outside_the_path_roots_is_refused(farm: Farm, unique: str, blender: str, scenes: Path) -> None:
    nodes(farm, scenes, blender, f"b1-{unique}")
    alice = farm.user(f"alice{unique}")
    wait_for(lambda: farm.rfarm("submit", "x", "--renderer", "blender", "--param", "scene=/etc/x.blend",
                                config=alice).code == 1, timeout=30, what="the node's profile to be announced")
    refused = farm.rfarm("submit", "x", "--renderer", "blender", "--param", "scene=/etc/x.blend", config=alice)
    assert "must be an absolute path under" in refused.err
    for bad in ("engine=OPENGL", "samples=0", "percent=101", "device=TPU"):
        res = farm.rfarm("submit", "x", "--renderer", "blender", "--param", f"scene={scenes / 'cube.blend'}",
                         "--param", bad, config=alice)
        assert res.code == 1 and bad.split("=")[0] in res.err, res


