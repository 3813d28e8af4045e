"""The built-in blender profile: what a user's values can and cannot become on Blender's command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker_contracts.profiles import ProfileSpec, blender_profile, render_argv, validate_params
from render_nodes.frames import frame_path
from render_nodes.offered import confine_paths, outside_roots

SPEC = blender_profile("/usr/bin/blender", "/opt/rfarm/blender_overrides.py", "Blender 3.4.1")


def argv(params: dict[str, str]) -> list[str]:
    return render_argv(SPEC, validate_params(SPEC, params), first=4, last=6, frame=4, output="/r/job-9")


def test_values_reach_blender_only_as_the_scene_and_after_the_double_dash() -> None:
    got = argv({"scene": "/p/shot.blend", "engine": "CYCLES", "samples": "16", "percent": "50"})
    assert got[:4] == ["/usr/bin/blender", "--background", "--disable-autoexec", "/p/shot.blend"]
    tail = got[got.index("--") + 1 :]
    assert tail == ["engine=CYCLES", "samples=16", "percent=50", "device=CPU"]
    before = got[: got.index("--")]
    assert before[before.index("--frame-start") + 1] == "4" and before[before.index("--frame-end") + 1] == "6"
    assert "/r/job-9/frame_####" in before and "--render-anim" in before
    unset = argv({"scene": "/p/shot.blend"})
    assert unset[unset.index("--") + 1 :] == ["engine=", "samples=", "percent=", "device=CPU"]


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({}, "scene"),
        ({"scene": "--python-expr=evil.blend"}, "must not start with '-'"),
        ({"scene": "/p/../etc/x.blend"}, ".."),
        ({"scene": "/p/shot.py"}, "pattern"),
        ({"scene": "/p/a.blend", "engine": "OPENGL"}, "engine"),
        ({"scene": "/p/a.blend", "samples": "0"}, "samples"),
        ({"scene": "/p/a.blend", "percent": "101"}, "percent"),
        ({"scene": "/p/a.blend", "device": "TPU"}, "device"),
        ({"scene": "/p/a.blend", "script": "x"}, "no parameter 'script'"),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(params: dict[str, str], word: str) -> None:
    with pytest.raises(ValueError, match=word.replace("(", r"\(")):
        validate_params(SPEC, params)


def test_path_roots_confine_the_scene() -> None:
    confined = confine_paths({"blender": SPEC}, ["/projects"])["blender"]
    with pytest.raises(ValueError, match="under /projects"):
        validate_params(confined, {"scene": "/etc/a.blend"})
    assert outside_roots(confined, {"scene": "/projects/a.blend"}) is None


def test_the_spec_travels_and_names_its_files() -> None:
    again = ProfileSpec.model_validate(SPEC.model_dump(mode="json"))
    assert again == SPEC and again.version == "Blender 3.4.1" and again.writes == "frame_####.png"
    assert frame_path(Path("/r"), "frame_####.png", 7).name == "frame_0007.png"
    assert frame_path(Path("/r"), "f##.exr", 123).name == "f123.exr"
    with pytest.raises(ValueError):
        ProfileSpec.model_validate({**SPEC.model_dump(mode="json"), "writes": "../frame_####.png"})
    with pytest.raises(ValueError):
        ProfileSpec.model_validate({**SPEC.model_dump(mode="json"), "version": "Blender\x1b[2J"})
