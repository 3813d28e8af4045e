"""The farm's overhead per frame for the blender profile: a job of N frames on one real node
against the same frames rendered by one ``blender`` command on the same machine.

The scene is made here by Blender (a turning cube, Cycles on the CPU, 160x90, no denoising); the
one command runs the node's own override script, so both render exactly the same thing. The
farm's time is the job's, from its submit to its last task's end (PostgreSQL's clock); the one
command's is its wall time. Overhead per frame = (farm - one command) / frames: what the farm
adds (claiming, a Blender start per chunk, reports, thumbnails, records) for each frame.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

from benchmarks.gateway_bench import BenchUser
from benchmarks.harness import BenchFarm, wait_for
from benchmarks.wire import Caller
from render_nodes.blender import SCRIPT

SCENE = """
import bpy, math, sys
out, frames = sys.argv[sys.argv.index("--") + 1], int(sys.argv[-1])
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 8
scene.cycles.use_denoising = False
scene.cycles.device = "CPU"
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 160, 90, 100
scene.frame_start, scene.frame_end = 1, frames
cube = bpy.data.objects["Cube"]
for frame in (1, frames):
    cube.rotation_euler = (0.4, 0.3, math.radians(180) * (frame - 1) / max(1, frames - 1))
    cube.keyframe_insert("rotation_euler", frame=frame)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


def run_blender(farm: BenchFarm, user: BenchUser, frames: int, chunk: int, samples: int) -> dict[str, Any]:
    blender = shutil.which("blender")
    if blender is None:
        return {"skipped": "no blender on PATH (apt-get install blender)"}
    root = farm.root / "blender"
    root.mkdir(exist_ok=True)
    scene = root / "turning.blend"
    (root / "scene.py").write_text(SCENE)
    subprocess.run([blender, "--background", "--factory-startup", "--python-exit-code", "1", "--python",
                    str(root / "scene.py"), "--", str(scene), str(frames)], capture_output=True, check=True,
                   timeout=120)

    # one command on this machine, as the node runs it (the same override script and samples)
    t0 = time.monotonic()
    subprocess.run([blender, "--background", "--disable-autoexec", str(scene), "--python-exit-code", "1",
                    "--python", str(SCRIPT), "--render-output", str(root / "single" / "frame_####"),
                    "--render-format", "PNG", "--use-extension", "1", "--frame-start", "1", "--frame-end",
                    str(frames), "--render-anim", "--", f"samples={samples}", "device=CPU"],
                   capture_output=True, check=True, timeout=3600)
    single = time.monotonic() - t0
    written = len(list((root / "single").glob("frame_*.png")))

    pool = "blender"
    farm.start_node("blender-1", pool, 1)
    farm.wait_nodes(pool, 1)
    caller = Caller(farm.redis_url, farm.prefix)
    try:
        job_id = caller.ok("job.submit", {"name": "blender-overhead", "frames": f"1-{frames}", "chunk": chunk,
                                          "renderer": "blender", "pool": pool,
                                          "params": {"scene": str(scene), "samples": str(samples)}}, user.token)["id"]
    finally:
        caller.close()

    def finished() -> bool:
        farm.check_alive()
        with farm.db() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return row is not None and row["status"] in ("succeeded", "failed", "cancelled")

    wait_for(finished, timeout=max(300.0, 10.0 * frames), what=f"blender job {job_id}", interval=0.1)
    with farm.db() as conn:
        row = conn.execute(
            """SELECT j.status, EXTRACT(EPOCH FROM max(t.finished_at) - j.created_at)::float AS span,
                      (SELECT count(*) FROM frames f WHERE f.job_id = j.id) AS recorded,
                      (SELECT avg(f.seconds) FROM frames f WHERE f.job_id = j.id)::float AS mean_frame
               FROM jobs j JOIN tasks t ON t.job_id = j.id WHERE j.id = %s GROUP BY j.id""",
            (job_id,),
        ).fetchone()
    farm.stop("blender-1")
    assert row is not None
    span = float(row["span"])
    return {
        "frames": frames,
        "chunk": chunk,
        "samples": samples,
        "status": row["status"],
        "frames_written_by_one_command": written,
        "frames_recorded_by_the_farm": row["recorded"],
        "one_command_seconds": round(single, 3),
        "farm_seconds": round(span, 3),
        "overhead_per_frame_seconds": round((span - single) / frames, 3),
        "mean_frame_seconds_on_the_farm": round(row["mean_frame"] or 0.0, 3),
    }
