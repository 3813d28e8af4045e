"""A profile that names its frame files (``writes``): a frame is done only when its file is there.

Real node processes against Redis (tests/support/nodes.py); the renderers are small commands, so
no Blender is needed here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
from pathlib import Path

import pytest
from PIL import Image

from broker_contracts.work import THUMB_BYTES
from tests.support.nodes import NodeRig, finish, of

pytestmark = pytest.mark.timeout(60)

# writes frame_NNNN.png for each frame of the chunk with Pillow, announcing each as Blender does
WRITER = """
import sys
from PIL import Image
out, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for frame in range(first, last + 1):
    path = f"{out}/frame_{frame:04d}.png"
    Image.new("RGB", (640, 360), (frame * 40 % 256, 90, 200)).save(path)
    print(f"Saved: '{path}'", flush=True)
"""


def profiles(tmp: Path) -> Path:
    script = tmp / "writer.py"
    script.write_text(WRITER)
    path = tmp / "profiles.toml"
    path.write_text(
        f"""
[profiles.quiet]
argv = ["{sys.executable}", "-c", "print('Error: the scene is not there'); print('Blender quit')"]
writes = "frame_####.png"

[profiles.writer]
argv = ["{sys.executable}", "{script}", "{{output}}", "{{first}}", "{{last}}"]
progress = "^Saved: '.*frame_(\\\\d+)\\\\.png'"
writes = "frame_####.png"
"""
    )
    return path


def test_exit_zero_without_the_file_is_a_failed_frame_naming_it(rig: NodeRig, tmp_path: Path) -> None:
    item = rig.submit("quiet", 4, 5, job=3)
    code, err = finish(rig.node("--drain", "--profiles", str(profiles(tmp_path)), "--no-blender"))
    assert code == 0, err
    events = rig.events(item.task_id)
    assert [e.kind for e in events if e.kind != "log"] == ["started", "failed"]
    failed = of(events, "failed")[0]
    assert failed.exit_code == 0 and failed.error is not None
    assert failed.error.startswith("frame 4: frame_0004.png was not written")
    assert "Error: the scene is not there" in failed.error


def test_each_saved_frame_reports_its_record_and_a_small_thumbnail(rig: NodeRig, tmp_path: Path) -> None:
    item = rig.submit("writer", 1, 3, job=8)
    code, err = finish(rig.node("--drain", "--profiles", str(profiles(tmp_path)), "--no-blender"))
    assert code == 0, err
    events = rig.events(item.task_id)
    assert [e.kind for e in events if e.kind != "log"] == ["started", "progress", "progress", "progress", "succeeded"]
    for ev in of(events, "progress"):
        path = Path(ev.file or "")
        assert path.name == f"frame_{ev.frame:04d}.png" and ev.bytes == path.stat().st_size
        assert ev.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert ev.seconds is not None and ev.seconds >= 0
        png = base64.b64decode(ev.thumb or "")
        assert 0 < len(png) <= THUMB_BYTES
        with Image.open(io.BytesIO(png)) as thumb:
            assert thumb.format == "PNG" and thumb.size == (160, 90)  # the aspect of 640x360, kept


def test_the_fractal_builtin_records_its_frames_too(rig: NodeRig) -> None:
    item = rig.submit("fractal", 1, 2, job=5, params={"width": "64", "height": "32"})
    code, err = finish(rig.node("--drain", "--no-blender"))
    assert code == 0, err
    done = of(rig.events(item.task_id), "progress")
    assert [e.frame for e in done] == [1, 2]
    for ev in done:
        with Image.open(io.BytesIO(base64.b64decode(ev.thumb or ""))) as thumb:
            assert thumb.size == (64, 32)  # smaller than a thumbnail already: kept as it is
