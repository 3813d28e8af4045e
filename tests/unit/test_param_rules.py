"""Profile parameters cannot become options (issue 11, point 11): str and path values, frames, and
path roots an operator declares. Pure, except the node's own check that resolves symbolic links."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from broker_contracts.frames import parse_frames
from broker_contracts.messages import SubmitRequest
from broker_contracts.profiles import ParamSpec, ProfileSpec, parse_profiles_toml, validate_params
from render_nodes.offered import ProfileFileError, confine_paths, load_profiles, outside_roots

BLENDER = ProfileSpec(
    name="blender",
    argv=["blender", "-b", "{scene}", "--", "{label}"],
    params={"scene": ParamSpec(type="path", required=True), "label": ParamSpec(type="str", default="")},
)
CONFINED = confine_paths({"blender": BLENDER}, ["/projects", "/mnt/shots"])["blender"]


@pytest.mark.parametrize(
    "value",
    ["--python-expr=import os", "-x", " -x", "\t-x", "a\nb", "a\x1bb", "a\x9bb", "\u202eab", "a\u2028b", "a\x00b"],
)
def test_str_values_that_read_as_options_or_hold_controls_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"'label' (must not|contains)"):
        validate_params(BLENDER, {"scene": "a.blend", "label": value})


def test_str_values_that_are_only_text_pass() -> None:
    for value in ("", "shot 12 - final", "a-b", "ünï 🎬", "x=1; $(reboot)"):
        assert validate_params(BLENDER, {"scene": "a.blend", "label": value})["label"] == value


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("--python-expr=evil", "start with '-'"),
        ("-", "start with '-'"),
        ("shots/a\n.blend", "control"),
        ("shots/\ta.blend", "control"),
        ("shots/\x1b[2J.blend", "control"),
        ("shots/\u202ea.blend", "control"),
        ("../../etc/passwd", "'..'"),
        ("shots/../../etc/passwd", "'..'"),
        ("shots\\..\\x", "'..'"),
        ("   ", "empty"),
    ],
)
def test_path_values_refused(value: str, words: str) -> None:
    with pytest.raises(ValueError, match="'scene'") as info:
        validate_params(BLENDER, {"scene": value})
    assert words in str(info.value)


def test_a_double_dot_inside_a_file_name_is_only_a_name() -> None:
    assert validate_params(BLENDER, {"scene": "shots/v1..v2.blend"})["scene"] == "shots/v1..v2.blend"


def test_roots_confine_path_parameters() -> None:
    for good in ("/projects/a.blend", "/projects/x/y/z.blend", "/mnt/shots/s1.blend", "/projects//a.blend"):
        assert validate_params(CONFINED, {"scene": good})["scene"] == good
    for bad in ("/etc/passwd", "/projectsX/a.blend", "projects/a.blend", "a.blend", "/mnt/a.blend", "/"):
        with pytest.raises(ValueError, match="absolute path under /projects, /mnt/shots"):
            validate_params(CONFINED, {"scene": bad})
    with pytest.raises(ValueError, match=r"'\.\.'"):
        validate_params(CONFINED, {"scene": "/projects/../etc/passwd"})


def test_roots_travel_in_the_announced_spec_and_a_declared_root_is_kept() -> None:
    announced = ProfileSpec.model_validate(CONFINED.model_dump(mode="json"))
    assert announced.params["scene"].roots == ["/projects", "/mnt/shots"]
    own = ProfileSpec(name="o", argv=["o", "{p}"], params={"p": ParamSpec(type="path", roots=["/own"])})
    assert confine_paths({"o": own}, ["/projects"])["o"].params["p"].roots == ["/own"]
    assert confine_paths({"o": own}, []) == {"o": own}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('type = "str"\nroots = ["/p"]', "only a path parameter"),
        ('type = "path"\nroots = ["relative"]', "absolute path"),
        ('type = "path"\nroots = ["/p/../etc"]', "absolute path"),
        ('type = "path"\nroots = ["/p\\n"]', "absolute path"),
    ],
)
def test_bad_roots_in_a_profiles_file(table: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_profiles_toml(f'[profiles.x]\nargv = ["x", "{{p}}"]\n[profiles.x.params.p]\n{table}')


def test_roots_in_a_profiles_file(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text('builtins = []\n[profiles.x]\nargv = ["x", "{p}"]\n[profiles.x.params.p]\ntype = "path"\n'
                    'roots = ["/p"]\n')  # fmt: skip
    spec = load_profiles(path)["x"]
    assert validate_params(spec, {"p": "/p/a"}) == {"p": "/p/a"}
    with pytest.raises(ValueError, match="under /p"):
        validate_params(spec, {"p": "/q/a"})


def test_the_node_resolves_symbolic_links_before_it_runs(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "projects", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "escape").symlink_to(elsewhere)
    (root / "shots").mkdir()
    spec = confine_paths({"blender": BLENDER}, [str(root)])["blender"]
    inside = validate_params(spec, {"scene": str(root / "shots" / "a.blend")})
    assert outside_roots(spec, inside) is None
    escaping = validate_params(spec, {"scene": str(root / "escape" / "a.blend")})  # passes the gateway's check
    assert outside_roots(spec, escaping) == f"parameter 'scene' leads outside {root}"
    with pytest.raises(ProfileFileError, match="--path-root"):
        confine_paths({"blender": BLENDER}, ["/p/../etc"])


@pytest.mark.parametrize("text", ["-3", "-5-2", "1--2", "-5--1", " -1 "])
def test_negative_frames_are_refused_with_one_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="negative frame"):
        parse_frames(text)
    with pytest.raises(ValidationError, match="negative frame"):
        SubmitRequest(name="x", frames=text)


def test_frame_zero_is_a_frame() -> None:
    assert str(parse_frames("0-3")) == "0-3"


def _node_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"RFARM_REDIS_URL": "redis://127.0.0.1:1/0", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "render_nodes", *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--name", "n1\n"], "--name"),
        (["--name", "n1\x1b[2J"], "--name"),
        (["--name", "\u202en1"], "--name"),
        (["--pool", "gpu\n"], "--pool"),
        (["--tags", "cu\nda,x"], "tag"),
        (["--path-root", "relative/dir"], "--path-root"),
    ],
)
def test_the_node_refuses_bad_names_and_roots_with_one_line_and_exit_2(args: list[str], words: str) -> None:
    result = _node_cli(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr
    assert not any(c in lines[0] for c in "\x1b\u202e"), lines
