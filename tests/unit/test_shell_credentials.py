"""The credentials file: 0600 in a 0700 folder, scoped to the farm that issued the token."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from broker_contracts.config import Settings
from shell.credentials import CredentialStore
from shell.errors import FarmError

FARM = "7d0f3b6e-0000-4000-8000-000000000001"
OTHER_FARM = "7d0f3b6e-0000-4000-8000-000000000002"


def settings(folder: Path, **extra: object) -> Settings:
    values: dict[str, object] = {"redis_url": "redis://127.0.0.1:6379/0", "prefix": "rf", "config_dir": folder}
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def test_file_is_created_0600_in_a_0700_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cfg" / "rfarm"
    path = CredentialStore(settings(folder), lambda _wait: FARM).save("alice", "tok")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {
        "username": "alice", "token": "tok", "redis_url": "redis://127.0.0.1:6379/0", "prefix": "rf", "farm_id": FARM
    }  # fmt: skip


def test_rewrite_keeps_0600_even_if_the_old_file_was_loose(tmp_path: Path) -> None:
    store = CredentialStore(settings(tmp_path))
    store.save("alice", "one")
    store.path.chmod(0o644)
    store.save("alice", "two")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.token() == "two"


def test_token_only_for_the_farm_that_issued_it(tmp_path: Path) -> None:
    CredentialStore(settings(tmp_path)).save("alice", "tok")
    assert CredentialStore(settings(tmp_path)).token() == "tok"
    assert CredentialStore(settings(tmp_path, prefix="other")).token() is None
    assert CredentialStore(settings(tmp_path, redis_url="redis://elsewhere:6379/0")).token() is None


def test_env_token_overrides(tmp_path: Path) -> None:
    CredentialStore(settings(tmp_path)).save("alice", "tok")
    assert CredentialStore(settings(tmp_path, token="from-env")).token() == "from-env"


def test_missing_or_corrupt_file_means_not_logged_in(tmp_path: Path) -> None:
    store = CredentialStore(settings(tmp_path))
    with pytest.raises(FarmError) as caught:
        store.require_token()
    assert caught.value.code == "auth.required" and caught.value.exit_code == 1
    store.path.write_text("{not json")
    assert store.token() is None


def test_forget(tmp_path: Path) -> None:
    store = CredentialStore(settings(tmp_path))
    assert store.forget() is False
    store.save("alice", "tok")
    assert store.forget() is True and not store.path.exists()


def test_the_session_follows_the_farm_to_another_address(tmp_path: Path) -> None:
    CredentialStore(settings(tmp_path), lambda _wait: FARM).save("alice", "tok")
    moved = settings(tmp_path, redis_url="redis://127.0.0.1:41234/0", prefix="other")
    assert CredentialStore(moved, lambda _wait: FARM).token() == "tok"
    assert CredentialStore(moved, lambda _wait: OTHER_FARM).token() is None
    # another farm at the old address; nothing announced there (its session is found by address)
    assert CredentialStore(settings(tmp_path), lambda _wait: OTHER_FARM).token() is None
    assert CredentialStore(settings(tmp_path), lambda _wait: None).token() == "tok"
    assert CredentialStore(moved, lambda _wait: None).token() is None


def test_a_session_saved_by_an_older_shell_takes_the_farm_identity(tmp_path: Path) -> None:
    old = {"username": "alice", "token": "tok", "redis_url": "redis://127.0.0.1:6379/0", "prefix": "rf"}
    store = CredentialStore(settings(tmp_path), lambda _wait: FARM)
    store.path.write_text(json.dumps(old))
    assert CredentialStore(settings(tmp_path, prefix="other"), lambda _wait: FARM).token() is None  # not here
    assert store.token() == "tok"
    assert json.loads(store.path.read_text()) == {**old, "farm_id": FARM}
    moved = settings(tmp_path, redis_url="redis://127.0.0.1:41234/0")
    assert CredentialStore(moved, lambda _wait: FARM).token() == "tok"


def test_a_farm_starting_at_a_new_address_is_waited_for(tmp_path: Path) -> None:
    CredentialStore(settings(tmp_path), lambda _wait: FARM).save("alice", "tok")
    asked: list[bool] = []

    def starting(wait: bool) -> str | None:
        asked.append(wait)
        return FARM if wait else None

    moved = settings(tmp_path, redis_url="redis://127.0.0.1:41234/0")
    assert CredentialStore(moved, starting).token() == "tok" and asked == [False, True]
    asked.clear()
    assert CredentialStore(settings(tmp_path), starting).token() == "tok" and asked == [False]  # its own address


def test_identity_is_asked_only_when_a_session_is_saved(tmp_path: Path) -> None:
    def unreachable(_wait: bool) -> str | None:
        raise AssertionError("no saved session: the farm need not be asked who it is")

    store = CredentialStore(settings(tmp_path), unreachable)
    assert store.load() is None and store.forget() is False
    store.path.write_text('["not", "a", "session"]')
    assert store.load() is None
