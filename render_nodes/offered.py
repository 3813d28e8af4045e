"""The profiles this node offers: the built-ins plus the operator's command profiles (TOML)."""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from broker_contracts.durations import parse_duration
from broker_contracts.profiles import (
    BUILTIN_PROFILES,
    ParamSpec,
    ProfileSpec,
    parse_profiles_toml,
    render_argv,
    under_roots,
)


class ProfileFileError(Exception):
    """The profiles file cannot be read or is wrong; the message is fit for the operator."""


def load_profiles(path: Path | None) -> dict[str, ProfileSpec]:
    """Built-ins and the file's ``[profiles.<name>]`` tables.

    A top-level ``builtins = ["fractal"]`` list in the file limits which built-ins are offered
    (``builtins = []`` offers none); a top-level ``[timeouts]`` table gives built-ins a default
    task timeout (``sleep = "30s"``), as a command profile's own ``timeout = "2h"`` does.
    """
    if path is None:
        return dict(BUILTIN_PROFILES)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileFileError(f"cannot read profiles file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        declared = parse_profiles_toml(text)
        document = tomllib.loads(text)
        wanted = document.get("builtins", list(BUILTIN_PROFILES))
        timeouts = _timeouts(document.get("timeouts", {}))
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ProfileFileError(f"profiles file {path}: {exc}") from None
    if not isinstance(wanted, list) or any(name not in BUILTIN_PROFILES for name in wanted):
        known = ", ".join(BUILTIN_PROFILES)
        raise ProfileFileError(f"profiles file {path}: 'builtins' must be a list of: {known}")
    offered = {name: BUILTIN_PROFILES[name] for name in wanted}
    for name, seconds in timeouts.items():
        if name not in offered:
            raise ProfileFileError(f"profiles file {path}: [timeouts] names {name!r}, not an offered built-in")
        offered[name] = offered[name].model_copy(update={"timeout": seconds})
    offered.update(declared)
    if not offered:
        raise ProfileFileError(f"profiles file {path} offers no profile at all")
    return offered


def _timeouts(table: object) -> dict[str, int]:
    """The ``[timeouts]`` table: built-in profile name → seconds."""
    if not isinstance(table, dict) or not all(isinstance(v, str | int) for v in table.values()):
        raise ValueError("'timeouts' must be a table of profile = \"DURATION\" (like sleep = \"30s\")")
    try:
        return {str(k): parse_duration(str(v)) for k, v in table.items()}
    except ValueError as exc:
        raise ValueError(f"[timeouts]: {exc}") from None


def confine_paths(profiles: dict[str, ProfileSpec], roots: list[str]) -> dict[str, ProfileSpec]:
    """The profiles with ``roots`` given to every path parameter that declares none of its own.

    The roots travel in the specs the node announces, so the gateway refuses a path outside them
    at submit; the node checks again before it runs a task (``outside_roots``).
    """
    if not roots:
        return profiles
    out: dict[str, ProfileSpec] = {}
    for name, spec in profiles.items():
        params: dict[str, ParamSpec] = {}
        for pname, pspec in spec.params.items():
            if pspec.type == "path" and not pspec.roots:
                try:
                    pspec = ParamSpec.model_validate({**pspec.model_dump(), "roots": roots})
                except ValidationError as exc:
                    why = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    raise ProfileFileError(f"--path-root: {why}") from None
            params[pname] = pspec
        out[name] = spec.model_copy(update={"params": params})
    return out


def outside_roots(spec: ProfileSpec, params: dict[str, str]) -> str | None:
    """Why a path parameter, with its symbolic links resolved on this machine, leaves its roots; or None."""
    for name, pspec in spec.params.items():
        value = params.get(name)
        if pspec.type != "path" or not pspec.roots or not value:
            continue
        real_roots = [os.path.realpath(root) for root in pspec.roots]
        if not under_roots(os.path.realpath(value), real_roots):
            return f"parameter {name!r} leads outside {', '.join(pspec.roots)}"
    return None


@dataclass(frozen=True)
class Invocation:
    """One process to run: its argv and the frames it renders."""

    argv: list[str]
    frames: list[int]


def invocations(spec: ProfileSpec, params: dict[str, str], first: int, last: int, output: str) -> list[Invocation]:
    """The processes a task needs: one for the chunk, or one per frame."""
    if spec.frames_per_invocation == "frame":
        return [Invocation(_argv(spec, params, frame, frame, output), [frame]) for frame in range(first, last + 1)]
    return [Invocation(_argv(spec, params, first, last, output), list(range(first, last + 1)))]


def _argv(spec: ProfileSpec, params: dict[str, str], first: int, last: int, output: str) -> list[str]:
    argv = render_argv(spec, params, first=first, last=last, frame=first, output=output)
    if spec.kind == "builtin" and argv[0] == "python":
        argv[0] = sys.executable
    return argv
