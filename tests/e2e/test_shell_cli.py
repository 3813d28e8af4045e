"""`.venv/bin/rfarm` as a subprocess: exit codes, one-line messages, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RFARM = Path(sys.executable).parent / "rfarm"


@pytest.fixture
def env(tmp_path: Path, redis_url: str, prefix: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("RFARM_") and k != "NO_COLOR"}
    values.update(RFARM_REDIS_URL=redis_url, RFARM_PREFIX=prefix, RFARM_CONFIG_DIR=str(tmp_path / "cfg"))
    return values


def rfarm(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(RFARM), *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return result


def test_job_id_not_a_number_exits_2_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    result = rfarm(["show", "abc"], env, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "abc" in result.stderr


def test_backwards_frame_range_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    result = rfarm(["submit", "x", "--frames", "10-1"], env, tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "10-1" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["frobnicate"], ["jobs", "--limit", "x"], ["--timeout", "zero", "jobs"], ["priority", "1", "500"]],
)
def test_other_bad_command_lines_exit_2(env: dict[str, str], tmp_path: Path, args: list[str]) -> None:
    result = rfarm(args, env, tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_bad_rfarm_timeout_env_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    result = rfarm(["whoami"], {**env, "RFARM_TIMEOUT": "soon"}, tmp_path)
    assert result.returncode == 2 and "RFARM_TIMEOUT" in result.stderr


def test_no_gateway_exits_3(env: dict[str, str], tmp_path: Path, redis_url: str) -> None:
    result = rfarm(["--timeout", "0.3", "jobs"], {**env, "RFARM_TOKEN": "t"}, tmp_path)
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"error: no farm announced itself within 0.3s at {redis_url}"
        " (from RFARM_REDIS_URL in the environment): is a gateway running?"
    )


def test_no_gateway_with_json_prints_one_error_document(env: dict[str, str], tmp_path: Path) -> None:
    result = rfarm(["jobs", "--json", "--timeout", "0.3"], {**env, "RFARM_TOKEN": "t"}, tmp_path)
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"]["code"] == "unavailable"


def test_unreachable_redis_exits_3(env: dict[str, str], tmp_path: Path) -> None:
    result = rfarm(["jobs"], {**env, "RFARM_TOKEN": "t", "RFARM_REDIS_URL": "redis://127.0.0.1:1/0"}, tmp_path)
    assert result.returncode == 3 and "cannot reach Redis" in result.stderr


def test_not_logged_in_exits_1(env: dict[str, str], tmp_path: Path) -> None:
    result = rfarm(["jobs"], env, tmp_path)
    assert result.returncode == 1
    assert result.stderr == "error: not logged in: run `rfarm login USER`\n"
    result = rfarm(["jobs", "--json"], env, tmp_path)
    assert json.loads(result.stdout) == {
        "error": {"code": "auth.required", "message": "not logged in: run `rfarm login USER`"}
    }


def test_help_exits_0(env: dict[str, str], tmp_path: Path) -> None:
    assert "submit" in rfarm(["--help"], env, tmp_path).stdout
    result = rfarm(["history", "--help"], env, tmp_path)
    assert result.returncode == 0 and "JOB" in result.stdout


def test_script_mode_stops_at_the_first_error(env: dict[str, str], tmp_path: Path) -> None:
    script = "# a comment\n\nhelp show\nshow abc\nhelp jobs\n"
    result = rfarm([], env, tmp_path, stdin=script)
    assert result.returncode == 2
    assert "error: line 4:" in result.stderr
    assert "--status" not in result.stdout  # stopped before `help jobs`


def test_script_mode_keep_going(env: dict[str, str], tmp_path: Path) -> None:
    result = rfarm(["--keep-going"], env, tmp_path, stdin="show abc\njobs\nhelp jobs\n")
    assert result.returncode == 2  # the first failure's code
    assert result.stderr.count("error:") == 2
    assert "--status" in result.stdout


def test_password_stdin_with_no_input_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    result = rfarm(["login", "alice", "--password-stdin"], env, tmp_path, stdin="")
    assert result.returncode == 2 and "standard input is empty" in result.stderr
