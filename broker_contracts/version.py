"""The version of rfarm: from the installed package's metadata, or pyproject.toml in a checkout."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DISTRIBUTION = "rfarm"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def rfarm_version(pyproject: Path = PYPROJECT) -> str:
    """'0.1.0'; a checkout that was never installed reads its pyproject.toml; 'unknown' if neither."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        pass
    try:
        with pyproject.open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return "unknown"
