"""`rfarmctl --version`: the installed package's version, or the checkout's when it is not installed."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

from rfarmctl.main import rfarm_version

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_a_checkout_that_was_never_installed_reports_its_pyproject_version(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert rfarm_version() == tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
