"""Renderer profiles: what a node offers and which parameters a job may pass to it.

Pure: no I/O. The gateway validates a job's parameters at submit time against the specs the nodes
announce in their heartbeats; the node validates them again before it builds an argv from them.
Values are always strings on the wire; ``validate_params`` returns them normalised.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from broker_contracts.durations import MAX_SECONDS, parse_duration
from broker_contracts.keys import valid_name
from broker_contracts.text import escape_char, first_unsafe

RESERVED = ("frame", "first", "last", "output")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
PARAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # whole string: used with fullmatch only
MAX_VALUE_CHARS = 1024
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

ParamType = Literal["int", "float", "str", "bool", "path", "choice"]


class ParamSpec(BaseModel):
    """One parameter a profile accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ParamType = "str"
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    choices: list[str] = Field(default_factory=list)
    default: str | None = None
    required: bool = False
    help: str = ""
    # For a path parameter: absolute folders its value must lie in (none: any path the other rules allow).
    roots: list[str] = Field(default_factory=list)

    @field_validator("default", mode="before")
    @classmethod
    def _default_as_text(cls, value: Any) -> Any:
        # TOML gives numbers and booleans; the wire carries text.
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice parameter needs a non-empty 'choices' list")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regular expression: {exc}") from None
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        if self.roots and self.type != "path":
            raise ValueError("only a path parameter can have 'roots'")
        for root in self.roots:
            if not root.startswith("/") or first_unsafe(root) is not None or ".." in PurePosixPath(root).parts:
                raise ValueError(f"root {root!r} must be an absolute path without '..' or control characters")
        return self


class ProfileSpec(BaseModel):
    """A renderer a node can run: a built-in one or an operator's command line template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["builtin", "command"] = "command"
    argv: list[str]
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    frames_per_invocation: Literal["chunk", "frame"] = "chunk"
    # A regular expression with one group (the frame number) matched against each output line;
    # a match reports that frame as done. Without it, frames count as done when an invocation ends.
    progress: str | None = None
    # The file each frame must leave in the output folder, ``#`` standing for the frame number's
    # digits (zero-padded), e.g. ``frame_####.png``. With it, a frame whose file is missing when its
    # invocation ends is a failed frame, whatever the renderer's exit code.
    writes: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9_.-]*#+[A-Za-z0-9_.-]*$")
    # What the renderer says it is (e.g. "Blender 3.4.1"), as the node found it; shown by `rfarm nodes`.
    version: str | None = Field(default=None, max_length=200)
    # How long one render may run (seconds; written "2h" in the TOML) when its job sets no
    # --task-timeout; None: no limit. The node stops a render that runs longer (render_nodes/task.py).
    timeout: int | None = Field(default=None, ge=1, le=MAX_SECONDS)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> ProfileSpec:
        if self.version is not None and first_unsafe(self.version) is not None:
            raise ValueError(f"profile {self.name!r}: version must not contain control characters")
        if not valid_name(self.name):
            raise ValueError(f"profile name {self.name!r} is not a valid name")
        if not self.argv or not self.argv[0].strip():
            raise ValueError(f"profile {self.name!r} needs a non-empty argv")
        for pname in self.params:
            if not PARAM_NAME.fullmatch(pname):
                raise ValueError(f"profile {self.name!r}: parameter name {pname!r} is not lowercase a-z0-9_")
            if pname in RESERVED:
                raise ValueError(f"profile {self.name!r}: parameter name {pname!r} is reserved")
        known = set(RESERVED) | set(self.params)
        for element in self.argv:
            for placeholder in PLACEHOLDER.findall(element):
                if placeholder not in known:
                    raise ValueError(f"profile {self.name!r}: argv uses unknown placeholder {{{placeholder}}}")
        if self.progress is not None:
            try:
                compiled = re.compile(self.progress)
            except re.error as exc:
                raise ValueError(f"profile {self.name!r}: progress is not a valid regular expression: {exc}") from None
            if compiled.groups < 1:
                raise ValueError(f"profile {self.name!r}: progress needs one group for the frame number")
        return self


def _check_number(name: str, number: float, spec: ParamSpec) -> None:
    if spec.min is not None and number < spec.min:
        raise ValueError(f"parameter {name!r} must be at least {_show(spec.min)}")
    if spec.max is not None and number > spec.max:
        raise ValueError(f"parameter {name!r} must be at most {_show(spec.max)}")


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def normalise_value(name: str, raw: str, spec: ParamSpec) -> str:
    """One parameter value checked against its spec; ValueError naming the parameter."""
    if not isinstance(raw, str):
        raise ValueError(f"parameter {name!r} must be text")
    if len(raw) > MAX_VALUE_CHARS:
        raise ValueError(f"parameter {name!r} is longer than {MAX_VALUE_CHARS} characters")
    if "\x00" in raw:
        raise ValueError(f"parameter {name!r} contains a NUL character")
    value = raw.strip() if spec.type in ("int", "float", "bool", "choice") else raw
    if spec.type == "int":
        try:
            number = int(value, 10)
        except ValueError:
            raise ValueError(f"parameter {name!r} must be a whole number, not {raw!r}") from None
        _check_number(name, number, spec)
        return str(number)
    if spec.type == "float":
        try:
            real = float(value)
        except ValueError:
            raise ValueError(f"parameter {name!r} must be a number, not {raw!r}") from None
        if not math.isfinite(real):
            raise ValueError(f"parameter {name!r} must be a finite number")
        _check_number(name, real, spec)
        return repr(real)
    if spec.type == "bool":
        lowered = value.lower()
        if lowered in _TRUE:
            return "true"
        if lowered in _FALSE:
            return "false"
        raise ValueError(f"parameter {name!r} must be true or false, not {raw!r}")
    if spec.type == "choice":
        if value not in spec.choices:
            raise ValueError(f"parameter {name!r} must be one of {', '.join(spec.choices)}; not {raw!r}")
        return value
    if spec.type in ("str", "path"):
        _check_text(name, value)
    if spec.type == "path":
        _check_path(name, value, spec)
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        raise ValueError(f"parameter {name!r} does not match the pattern {spec.pattern}")
    if spec.type == "str" and (spec.min is not None or spec.max is not None):
        _check_number(name, len(value), spec)
    return value


def _check_text(name: str, value: str) -> None:
    """A text value becomes one argv element: it may not read as an option nor carry controls."""
    bad = first_unsafe(value)
    if bad is not None:
        found = escape_char(bad)
        raise ValueError(f"parameter {name!r} must not contain control or invisible characters (found {found})")
    if value.lstrip().startswith("-"):
        raise ValueError(f"parameter {name!r} must not start with '-' (it would read as an option)")


def _check_path(name: str, value: str, spec: ParamSpec) -> None:
    if not value.strip():
        raise ValueError(f"parameter {name!r} must not be empty")
    if ".." in re.split(r"[/\\]", value):
        raise ValueError(f"parameter {name!r} must not contain '..' components")
    if spec.roots and not under_roots(value, spec.roots):
        raise ValueError(f"parameter {name!r} must be an absolute path under {', '.join(spec.roots)}")


def under_roots(path: str, roots: list[str]) -> bool:
    """Whether ``path`` is absolute and lies in one of ``roots`` (by its components, not by text)."""
    pure = PurePosixPath(path)
    return pure.is_absolute() and any(pure.is_relative_to(root) for root in roots)


def validate_params(spec: ProfileSpec, params: dict[str, str]) -> dict[str, str]:
    """Check ``params`` against a profile: unknown names refused, values normalised, defaults filled.

    Raises ValueError with a message fit for a user that names the parameter at fault.
    """
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        allowed = ", ".join(sorted(spec.params)) or "none"
        raise ValueError(f"profile {spec.name!r} has no parameter {unknown[0]!r} (it takes: {allowed})")
    out: dict[str, str] = {}
    for name, pspec in spec.params.items():
        if name in params:
            out[name] = normalise_value(name, params[name], pspec)
        elif pspec.default is not None:
            out[name] = normalise_value(name, pspec.default, pspec)
        elif pspec.required:
            raise ValueError(f"profile {spec.name!r} needs the parameter {name!r}")
    return out


def render_argv(
    spec: ProfileSpec, params: dict[str, str], *, first: int, last: int, frame: int, output: str
) -> list[str]:
    """Fill the argv template, one element at a time; nothing ever goes through a shell.

    ``params`` must come from ``validate_params``. An optional parameter without a value becomes
    an empty string.
    """
    values = {**params, "first": str(first), "last": str(last), "frame": str(frame), "output": output}

    def fill(match: re.Match[str]) -> str:
        return values.get(match.group(1), "")

    return [PLACEHOLDER.sub(fill, element) for element in spec.argv]


def parse_profiles_toml(text: str) -> dict[str, ProfileSpec]:
    """Command profiles from a TOML document (``[profiles.<name>]`` tables).

    Raises ValueError with a message that names the profile at fault.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from None
    tables = document.get("profiles", {})
    if not isinstance(tables, dict):
        raise ValueError("'profiles' must be a table of [profiles.<name>] tables")
    out: dict[str, ProfileSpec] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ValueError(f"profiles.{name} must be a table")
        try:
            if table.get("kind", "command") != "command":
                raise ValueError(f"profile {name!r}: only command profiles can be declared in a file")
            if name in BUILTIN_PROFILES:
                raise ValueError(f"profile {name!r}: the name of a built-in profile")
            out[name] = ProfileSpec.model_validate({**table, "kind": "command", "name": name})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            suffix = f" (at {where})" if where else ""
            raise ValueError(f"profile {name!r}: {first['msg']}{suffix}") from None
    return out


def _builtin(name: str, options: list[str], params: dict[str, ParamSpec], writes: str | None = None) -> ProfileSpec:
    # "python" is replaced by the node's own interpreter when it runs a built-in.
    argv = [
        "python",
        "-m",
        f"render_nodes.renderers.{name}",
        "--output",
        "{output}",
        "--first",
        "{first}",
        "--last",
        "{last}",
    ]
    for option in options:
        argv += [f"--{option.replace('_', '-')}", "{" + option + "}"]
    return ProfileSpec(
        name=name,
        kind="builtin",
        argv=argv,
        params=params,
        frames_per_invocation="chunk",
        progress=r"^frame (-?\d+) done",
        writes=writes,
    )


BUILTIN_PROFILES: dict[str, ProfileSpec] = {
    "fractal": _builtin(
        "fractal",
        ["width", "height", "zoom", "iterations", "set"],
        {
            "width": ParamSpec(type="int", min=16, max=2048, default="160", help="image width in pixels"),
            "height": ParamSpec(type="int", min=16, max=2048, default="120", help="image height in pixels"),
            "zoom": ParamSpec(
                type="float",
                min=1e-6,
                max=1e12,
                default="1.0",
                help="zoom at frame 1; each frame zooms in a little further",
            ),
            "iterations": ParamSpec(type="int", min=8, max=1000, default="48", help="iterations per pixel"),
            "set": ParamSpec(
                type="choice", choices=["mandelbrot", "julia"], default="mandelbrot", help="which fractal"
            ),
        },
        writes="frame_####.png",  # each frame recorded and thumbnailed, as Blender's are
    ),
    "sleep": _builtin(
        "sleep",
        ["seconds", "fail_rate", "fail_frames"],
        {
            "seconds": ParamSpec(type="float", min=0, max=3600, default="1", help="seconds per frame"),
            "fail_rate": ParamSpec(type="float", min=0, max=1, default="0", help="chance that a frame fails"),
            "fail_frames": ParamSpec(
                type="str", pattern=r"[0-9, -]*", default="", help="comma list of frames that always fail"
            ),
        },
    ),
    # Does no work and writes nothing: a node runs it in-process, without a subprocess, so what is
    # measured with it is the farm's own cost per task (benchmarks, smoke tests of a deployment).
    "noop": _builtin("noop", [], {}),
}

IN_PROCESS_BUILTINS = frozenset({"noop"})

BLENDER_ENGINES = ["CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH"]
BLENDER_DEVICES = ["CPU", "CUDA", "OPTIX", "HIP", "METAL"]
BLENDER_PARAMS = ("engine", "samples", "percent", "device")


def blender_profile(executable: str, script: str, version: str | None) -> ProfileSpec:
    """The built-in ``blender`` profile of a node that found a Blender at ``executable``.

    The user's values never become Blender options: the scene is the one file argument (a value
    never starts with '-'), the overrides reach the node's own ``script`` after ``--`` (which
    Blender leaves to the script), and the scene's own Python never runs (``--disable-autoexec``).
    ``--python-exit-code`` makes a failing override a failed render rather than a render of the
    scene as it was.
    """
    tail = [f"{name}={{{name}}}" for name in BLENDER_PARAMS]
    return ProfileSpec(
        name="blender",
        kind="builtin",
        argv=[
            executable,
            "--background",
            "--disable-autoexec",
            "{scene}",
            "--python-exit-code",
            "1",
            "--python",
            script,
            "--render-output",
            "{output}/frame_####",
            "--render-format",
            "PNG",
            "--use-extension",
            "1",
            "--frame-start",
            "{first}",
            "--frame-end",
            "{last}",
            "--render-anim",
            "--",
            *tail,
        ],
        params={
            "scene": ParamSpec(type="path", required=True, pattern=r".*\.blend", help="the .blend file to render"),
            "engine": ParamSpec(type="choice", choices=BLENDER_ENGINES, help="render engine (default: the scene's)"),
            "samples": ParamSpec(type="int", min=1, max=1_000_000, help="samples per pixel (default: the scene's)"),
            "percent": ParamSpec(type="int", min=1, max=100, help="resolution percentage (default: the scene's)"),
            "device": ParamSpec(type="choice", choices=BLENDER_DEVICES, default="CPU", help="Cycles device"),
        },
        frames_per_invocation="chunk",
        progress=r"^Saved: '.*frame_(\d+)\.png'",
        writes="frame_####.png",
        version=version,
    )
