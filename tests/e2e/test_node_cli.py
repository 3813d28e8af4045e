"""`python -m render_nodes` refuses bad options and an unreachable Redis in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _cli(*args: str, url: str = "redis://127.0.0.1:1/0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RFARM_REDIS_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "render_nodes", *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--slots", "0"],
        ["--lease", "0"],
        ["--pool", "a b"],
        ["--tags", "gpu,/x"],
        ["--bogus"],
        ["--profiles", "/nonexistent/profiles.toml"],
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str]) -> None:
    result = _cli(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_unreachable_redis_exits_3_without_secrets() -> None:
    result = _cli("--drain", url="redis://user:s3cret@127.0.0.1:1/0")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach redis" in lines[0] and "s3cret" not in lines[0]
