"""Run inside Blender (``--python``) by the node's ``blender`` profile: the job's overrides.

The values arrive after ``--`` as ``name=value`` (empty: keep the scene's own), already checked by
the node against the profile (broker_contracts.profiles.blender_profile); they are set on the
scene as values, never run as code. Frames are always PNG, as the node expects them.
"""

from __future__ import annotations

import sys

import bpy  # type: ignore[import-not-found]


def overrides(argv: list[str]) -> dict[str, str]:
    tail = argv[argv.index("--") + 1 :] if "--" in argv else []
    out: dict[str, str] = {}
    for item in tail:
        name, _, value = item.partition("=")
        if value:
            out[name] = value
    return out


def apply(values: dict[str, str]) -> None:
    scene = bpy.context.scene
    if "engine" in values:
        scene.render.engine = values["engine"]
    if "percent" in values:
        scene.render.resolution_percentage = int(values["percent"])
    if "samples" in values:
        samples = int(values["samples"])
        scene.cycles.samples = samples
        scene.eevee.taa_render_samples = samples
    device = values.get("device", "CPU")
    if device == "CPU":
        scene.cycles.device = "CPU"
    else:
        prefs = bpy.context.preferences.addons["cycles"].preferences
        prefs.compute_device_type = device
        prefs.get_devices()
        for dev in prefs.devices:
            dev.use = dev.type == device
        scene.cycles.device = "GPU"
    scene.render.image_settings.file_format = "PNG"
    scene.render.use_file_extension = True
    print(f"rfarm: engine {scene.render.engine}, {scene.render.resolution_percentage}%, device {device}", flush=True)


apply(overrides(sys.argv))
