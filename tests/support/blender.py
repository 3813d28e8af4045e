"""Blender for the tests: where it is, and tiny scenes made by Blender itself (nothing downloaded)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

WIDTH, HEIGHT = 160, 90

# A turning cube: Cycles on the CPU, 160x90, 4 samples, no denoising (Debian's Blender has no
# OpenImageDenoise), frames 1-12, the cube's rotation keyed at 1 and 12 so every frame differs.
CUBE = f"""
import bpy, math, sys
out = sys.argv[sys.argv.index("--") + 1]
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 4
scene.cycles.use_denoising = False
scene.cycles.device = "CPU"
scene.render.resolution_x = {WIDTH}
scene.render.resolution_y = {HEIGHT}
scene.render.resolution_percentage = 100
scene.frame_start = 1
scene.frame_end = 12
cube = bpy.data.objects["Cube"]
for frame in (1, 12):
    cube.rotation_euler = (0.4, 0.3, math.radians(120) * (frame - 1) / 11)
    cube.keyframe_insert("rotation_euler", frame=frame)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""

# A scene Blender cannot render: it has no camera ("Error: Cannot render, no camera", exit 1).
NO_CAMERA = (
    CUBE.replace("bpy.ops.wm.save_as_mainfile", 'bpy.data.objects.remove(bpy.data.objects["Camera"])\n'
                 "bpy.ops.wm.save_as_mainfile")
)


def find() -> str | None:
    return shutil.which("blender")


def make_scene(blender: str, script: str, path: Path) -> Path:
    """Run ``script`` in a factory-fresh Blender; it saves the scene at ``path``."""
    code = path.with_suffix(".py")
    code.write_text(script, encoding="utf-8")
    done = subprocess.run(
        [blender, "--background", "--factory-startup", "--python-exit-code", "1", "--python", str(code), "--",
         str(path)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and path.is_file(), done.stdout.decode()[-2000:] + done.stderr.decode()[-2000:]
    return path
