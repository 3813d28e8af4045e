"""`rfarm completion bash|zsh|fish`: scripts generated from the one command registry."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from shell import completion
from shell.commands import default_registry
from shell.main import _top_parser, main

REGISTRY = default_registry()


@pytest.mark.parametrize("shell", completion.SHELLS)
def test_each_script_names_every_command_and_option(shell: str) -> None:
    text = completion.script(shell, REGISTRY)
    for command in REGISTRY.commands.values():
        assert command.name in text
        for arg in command.args:
            if not arg.positional:
                assert arg.name.removeprefix("--") in text, (command.name, arg.name)
    assert "queued" in text  # jobs --status's values
    assert "bash zsh fish" in text  # completion's own argument


@pytest.mark.parametrize(
    ("shell", "check"), [("bash", ["bash", "-n"]), ("zsh", ["zsh", "-n"]), ("fish", ["fish", "-n"])]
)
def test_the_shell_accepts_its_script(shell: str, check: list[str], tmp_path: Path) -> None:
    path = tmp_path / f"rfarm.{shell}"
    path.write_text(completion.script(shell, REGISTRY))
    if shutil.which(check[0]) is None:
        pytest.skip(f"{check[0]} is not installed: only its syntax check is skipped")
    result = subprocess.run([*check, str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def _bash_complete(words: list[str], tmp_path: Path) -> list[str]:
    """What the bash script offers for the last of ``words`` (the word being typed)."""
    path = tmp_path / "rfarm.bash"
    path.write_text(completion.script("bash", REGISTRY))
    quoted = " ".join("'" + w + "'" for w in words)
    program = (
        f'source {path}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _rfarm; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True)
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_commands_options_and_values(tmp_path: Path) -> None:
    assert _bash_complete(["rfarm", "su"], tmp_path) == ["submit"]
    assert _bash_complete(["rfarm", "--timeout", "5", "his"], tmp_path) == ["history"]
    assert _bash_complete(["rfarm", "--ver"], tmp_path) == ["--version"]
    assert _bash_complete(["rfarm", "submit", "x", "--fr"], tmp_path) == ["--frames"]
    assert _bash_complete(["rfarm", "jobs", "--status", "fa"], tmp_path) == ["failed"]
    assert _bash_complete(["rfarm", "help", "wa"], tmp_path) == ["watch", "wait"]
    assert _bash_complete(["rfarm", "completion", "z"], tmp_path) == ["zsh"]
    assert _bash_complete(["rfarm", "submit", "--frames", "1-5", ""], tmp_path) == []


def test_the_global_options_are_the_top_parsers() -> None:
    parser_options = {s for a in _top_parser(REGISTRY)._actions for s in a.option_strings if s.startswith("--")}
    assert {a.name for a in completion.GLOBAL_OPTIONS} == parser_options


def test_rfarm_completion_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "fish"]) == 0
    assert capsys.readouterr().out == completion.script("fish", REGISTRY)
    assert main(["completion", "tcsh"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_an_unknown_shell_is_refused() -> None:
    with pytest.raises(ValueError, match="bash, zsh, fish"):
        completion.script("tcsh", REGISTRY)
