"""Profiles: parameter validation, TOML command profiles and argv templates. Pure, no I/O."""

from __future__ import annotations

import pytest

from broker_contracts.profiles import (
    BUILTIN_PROFILES,
    ParamSpec,
    ProfileSpec,
    parse_profiles_toml,
    render_argv,
    validate_params,
)

FRACTAL = BUILTIN_PROFILES["fractal"]
SLEEP = BUILTIN_PROFILES["sleep"]

BLENDER_TOML = """
[profiles.blender]
argv = ["blender", "-b", "{scene}", "-o", "{output}/frame_####", "-s", "{first}", "-e", "{last}", "-a"]
frames_per_invocation = "chunk"
[profiles.blender.params.scene]
type = "path"
required = true
[profiles.blender.params.engine]
type = "choice"
choices = ["CYCLES", "EEVEE"]
default = "CYCLES"
[profiles.blender.params.samples]
type = "int"
min = 1
max = 4096
default = 64
"""


def test_builtin_defaults_are_filled_and_normalised() -> None:
    assert validate_params(FRACTAL, {}) == {
        "width": "160",
        "height": "120",
        "zoom": "1.0",
        "iterations": "48",
        "set": "mandelbrot",
    }
    assert validate_params(FRACTAL, {"width": " 320 ", "zoom": "2"})["width"] == "320"
    assert validate_params(SLEEP, {"seconds": "0", "fail_frames": "2, 5"})["seconds"] == "0.0"


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"width": "8"}, ["'width'", "at least 16"]),
        ({"width": "4096"}, ["'width'", "at most 2048"]),
        ({"width": "wide"}, ["'width'", "whole number"]),
        ({"iterations": "1001"}, ["'iterations'", "at most 1000"]),
        ({"zoom": "nan"}, ["'zoom'", "finite"]),
        ({"zoom": "x"}, ["'zoom'", "number"]),
        ({"set": "koch"}, ["'set'", "mandelbrot"]),
        ({"colour": "red"}, ["no parameter 'colour'", "width"]),
    ],
)
def test_bad_fractal_params_name_the_parameter(params: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        validate_params(FRACTAL, params)
    for word in words:
        assert word in str(info.value)


def test_sleep_limits() -> None:
    with pytest.raises(ValueError, match="'fail_rate'"):
        validate_params(SLEEP, {"fail_rate": "1.5"})
    with pytest.raises(ValueError, match="'seconds'"):
        validate_params(SLEEP, {"seconds": "-1"})
    with pytest.raises(ValueError, match="'fail_frames'"):
        validate_params(SLEEP, {"fail_frames": "1;rm -rf /"})


def test_command_profile_from_toml() -> None:
    profiles = parse_profiles_toml(BLENDER_TOML)
    spec = profiles["blender"]
    assert spec.kind == "command" and spec.frames_per_invocation == "chunk"
    params = validate_params(spec, {"scene": "shots/a.blend"})
    assert params == {"scene": "shots/a.blend", "engine": "CYCLES", "samples": "64"}
    argv = render_argv(spec, params, first=5, last=9, frame=5, output="/out/job-3")
    assert argv == ["blender", "-b", "shots/a.blend", "-o", "/out/job-3/frame_####", "-s", "5", "-e", "9", "-a"]


def test_substitution_never_splits_or_interprets_a_value() -> None:
    spec = ProfileSpec(name="echo", argv=["echo", "x={text}"], params={"text": ParamSpec(type="str")})
    params = validate_params(spec, {"text": "a b; $(reboot) {first}"})
    assert render_argv(spec, params, first=1, last=1, frame=1, output="/o") == [
        "echo",
        "x=a b; $(reboot) {first}",
    ]


def test_required_path_rules() -> None:
    spec = parse_profiles_toml(BLENDER_TOML)["blender"]
    with pytest.raises(ValueError, match="needs the parameter 'scene'"):
        validate_params(spec, {})
    with pytest.raises(ValueError, match=r"'scene' must not contain '\.\.'"):
        validate_params(spec, {"scene": "../../etc/passwd"})
    with pytest.raises(ValueError, match="'scene' must not start with '-'"):
        validate_params(spec, {"scene": "--python-expr=evil"})
    with pytest.raises(ValueError, match="'engine' must be one of CYCLES, EEVEE"):
        validate_params(spec, {"scene": "a.blend", "engine": "LUX"})


def test_bool_and_pattern() -> None:
    spec = ProfileSpec(
        name="t",
        argv=["t", "{flag}", "{code}"],
        params={"flag": ParamSpec(type="bool", default="no"), "code": ParamSpec(pattern="[A-Z]{3}")},
    )
    assert validate_params(spec, {"flag": "Yes", "code": "ABC"}) == {"flag": "true", "code": "ABC"}
    assert validate_params(spec, {})["flag"] == "false"
    with pytest.raises(ValueError, match="'flag' must be true or false"):
        validate_params(spec, {"flag": "maybe"})
    with pytest.raises(ValueError, match="'code' does not match"):
        validate_params(spec, {"code": "ABCD"})


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[profiles.x]\nargv = ["x", "{nope}"]', "unknown placeholder {nope}"),
        ("[profiles.x]\nargv = []", "non-empty argv"),
        ('[profiles.x]\nargv = ["x"]\n[profiles.x.params.frame]\ntype = "int"', "reserved"),
        ('[profiles.x]\nargv = ["x"]\n[profiles.x.params.c]\ntype = "choice"', "choices"),
        ('[profiles.x]\nargv = ["x"]\ncolour = 1', "profile 'x'"),
        ('[profiles.fractal]\nargv = ["x"]', "built-in"),
        ('[profiles.x]\nargv = ["x"]\nkind = "builtin"', "only command profiles"),
        ("[profiles.x\nargv=", "not valid TOML"),
    ],
)
def test_bad_profile_files(toml: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        parse_profiles_toml(toml)


def test_specs_round_trip_as_heartbeat_dicts() -> None:
    """The gateway rebuilds specs from heartbeat dicts and validates with them."""
    for spec in [*BUILTIN_PROFILES.values(), *parse_profiles_toml(BLENDER_TOML).values()]:
        again = ProfileSpec.model_validate(spec.model_dump(mode="json"))
        assert again == spec


def test_frame_mode_profile() -> None:
    spec = parse_profiles_toml('[profiles.one]\nargv = ["r", "{frame}"]\nframes_per_invocation = "frame"')["one"]
    assert spec.frames_per_invocation == "frame"
    assert render_argv(spec, {}, first=3, last=3, frame=3, output="/o") == ["r", "3"]
