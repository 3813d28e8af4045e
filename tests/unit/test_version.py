"""`rfarm --version`: the installed package's version, or the checkout's pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from broker_contracts import version
from shell.main import main

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_rfarm_version_prints_the_projects_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    expected = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert capsys.readouterr().out == f"rfarm {expected}\n"


def test_a_checkout_that_was_never_installed_reads_pyproject(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(version, "DISTRIBUTION", "rfarm-not-installed-anywhere")
    assert version.rfarm_version(PYPROJECT) == tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert version.rfarm_version(tmp_path / "missing.toml") == "unknown"
    (tmp_path / "bad.toml").write_text("[project\n")
    assert version.rfarm_version(tmp_path / "bad.toml") == "unknown"
