"""The profiles this node offers: the built-ins plus the operator's command profiles (TOML)."""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from broker_contracts.profiles import BUILTIN_PROFILES, ProfileSpec, parse_profiles_toml, render_argv


class ProfileFileError(Exception):
    """The profiles file cannot be read or is wrong; the message is fit for the operator."""


def load_profiles(path: Path | None) -> dict[str, ProfileSpec]:
    """Built-ins and the file's ``[profiles.<name>]`` tables.

    A top-level ``builtins = ["fractal"]`` list in the file limits which built-ins are offered
    (``builtins = []`` offers none).
    """
    if path is None:
        return dict(BUILTIN_PROFILES)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileFileError(f"cannot read profiles file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        declared = parse_profiles_toml(text)
        wanted = tomllib.loads(text).get("builtins", list(BUILTIN_PROFILES))
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ProfileFileError(f"profiles file {path}: {exc}") from None
    if not isinstance(wanted, list) or any(name not in BUILTIN_PROFILES for name in wanted):
        known = ", ".join(BUILTIN_PROFILES)
        raise ProfileFileError(f"profiles file {path}: 'builtins' must be a list of: {known}")
    offered = {name: BUILTIN_PROFILES[name] for name in wanted}
    offered.update(declared)
    if not offered:
        raise ProfileFileError(f"profiles file {path} offers no profile at all")
    return offered


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
