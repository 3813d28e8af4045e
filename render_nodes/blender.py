"""Finding the Blender a node offers as its built-in ``blender`` profile."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from broker_contracts.profiles import ProfileSpec, blender_profile
from broker_contracts.text import first_unsafe
from render_nodes.process import child_env

SCRIPT = Path(__file__).resolve().parent / "renderers" / "blender_overrides.py"
VERSION_TIMEOUT = 30.0


class BlenderError(Exception):
    """The Blender the operator named cannot be used; the message is fit for them."""


def find_blender(path: str | None) -> ProfileSpec | None:
    """The ``blender`` profile for ``path`` (``--blender``), or for the ``blender`` on PATH.

    A named executable that does not answer ``--version`` is an error; no Blender on PATH is no
    profile.
    """
    named = path is not None
    found = shutil.which(path if named else "blender")  # type: ignore[arg-type]
    if found is None:
        if named:
            raise BlenderError(f"--blender {path!r} is not an executable")
        return None
    executable = str(Path(found).resolve())
    version = blender_version(executable)
    if version is None and named:
        raise BlenderError(f"--blender {path!r} did not answer --version as Blender does")
    if version is None:
        return None
    return blender_profile(executable, str(SCRIPT), version)


def blender_version(executable: str) -> str | None:
    """Its first line of ``--version`` (``Blender 3.4.1``), or None when it is not a Blender."""
    try:
        done = subprocess.run(
            [executable, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=VERSION_TIMEOUT,
            env=child_env(),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    for line in done.stdout.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if line.startswith("Blender ") and first_unsafe(line) is None:
            return line[:200]
    return None
