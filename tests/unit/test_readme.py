"""The README's examples stay true: its profile file parses and its test command is what CI runs."""

from __future__ import annotations

import re

from broker_contracts.profiles import parse_profiles_toml, render_argv, validate_params
from tests.support.farm import REPO

README = REPO / "README.md"


def test_readme_blender_profile_parses_and_renders_an_argv() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README shows a profile file"
    profiles = parse_profiles_toml(blocks[0])
    blender = profiles["blender"]
    params = validate_params(blender, {"scene": "/mnt/projects/shot010.blend"})
    argv = render_argv(blender, params, first=1, last=10, frame=1, output="/renders/job-7")
    assert argv[:4] == ["blender", "-b", "/mnt/projects/shot010.blend", "-o"]
    assert argv[-5:] == ["-s", "1", "-e", "10", "-a"]
    assert re.match(blender.progress or "", "Saved: '/renders/job-7/frame_0003.png'").group(1) == "0003"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./farm test" in README.read_text() and "./farm test" in ci
