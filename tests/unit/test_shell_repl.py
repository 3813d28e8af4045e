"""The REPL dispatches through the same registry; completion is a pure function of the text."""

from __future__ import annotations

import io
from pathlib import Path

from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from broker_contracts.config import Settings
from shell import repl
from shell.commands import default_registry
from shell.session import Session


def test_completions() -> None:
    registry = default_registry()
    assert repl.completions(registry, "sh") == ["show"]
    assert "submit" in repl.completions(registry, "")
    assert repl.completions(registry, "submit x --fr") == ["--frames"]
    assert "--param" in repl.completions(registry, "submit x --param a=1 ")  # repeatable stays offered
    assert "--frames" not in repl.completions(registry, "submit x --frames 1-3 ")
    assert repl.completions(registry, "help hi") == ["history"]
    assert repl.completions(registry, "jobs --st") == ["--status"]
    assert repl.completions(registry, "nosuch ") == []


def test_split_line() -> None:
    assert repl.split_line("rfarm submit 'my job' --frames 1-3", "rfarm") == ["submit", "my job", "--frames", "1-3"]


def test_repl_runs_commands_and_survives_errors(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(redis_url="redis://127.0.0.1:1/0", prefix="rfx", config_dir=tmp_path)
    session = Session(settings, default_registry(), out=out, err=err)
    with create_pipe_input() as pipe:
        pipe.send_text("help\nshow abc\n'unclosed\nhelp logs\nexit\n")
        code = repl.run(session, input=pipe, output=DummyOutput())
    assert code == 0  # the exit code of the last command run (`help logs`)
    assert "commands:" in out.getvalue() and "--frame" in out.getvalue()
    assert err.getvalue().count("error:") == 2
    assert (tmp_path / "history").exists()
