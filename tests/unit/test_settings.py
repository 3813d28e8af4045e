"""Where the settings come from: the environment, else the nearest .rfarm/farm.env, else defaults."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from broker_contracts.config import ENV_SOURCE, FARM_FILE, Settings, is_default_source


def farm_file(folder: Path, text: str) -> Path:
    path = folder / FARM_FILE
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_nearest_farm_env_above_the_current_folder_is_found(tmp_path: Path) -> None:
    outer = farm_file(tmp_path, "RFARM_REDIS_URL=redis://outer:1/0\nRFARM_PREFIX=outer\n")
    deep = tmp_path / "renders" / "job-7"
    deep.mkdir(parents=True)
    found = Settings.from_env({}, cwd=deep)
    assert (found.redis_url, found.prefix, found.redis_source) == ("redis://outer:1/0", "outer", str(outer))

    inner = farm_file(tmp_path / "renders", "RFARM_REDIS_URL=redis://inner:2/0\n")
    found = Settings.from_env({}, cwd=deep)
    assert (found.redis_url, found.prefix, found.redis_source) == ("redis://inner:2/0", "rf", str(inner))


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    farm_file(tmp_path, "RFARM_REDIS_URL=redis://file:1/0\nRFARM_PREFIX=file\n")
    found = Settings.from_env({"RFARM_REDIS_URL": "redis://env:2/0"}, cwd=tmp_path)
    assert (found.redis_url, found.prefix, found.redis_source) == ("redis://env:2/0", "file", ENV_SOURCE)


def test_without_either_the_default_says_where_it_looked(tmp_path: Path) -> None:
    found = Settings.from_env({}, cwd=tmp_path)
    assert found.redis_url == "redis://127.0.0.1:6379/0" and is_default_source(found.redis_source)
    assert str(tmp_path) in found.redis_source


def test_shell_folders_are_the_platform_ones_unless_rfarm_config_dir_names_one(tmp_path: Path) -> None:
    found = Settings.from_env({}, cwd=tmp_path)
    assert found.config_dir == platformdirs.user_config_path("rfarm", appauthor=False)
    assert found.data_dir == platformdirs.user_data_path("rfarm", appauthor=False)
    named = Settings.from_env({"RFARM_CONFIG_DIR": str(tmp_path / "cfg")}, cwd=tmp_path)
    assert named.config_dir == named.data_dir == tmp_path / "cfg"
