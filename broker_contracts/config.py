"""Settings read from the environment, passed down explicitly (never a global)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker_contracts.redis_url import is_sentinel, redact_sentinel

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/rfarm"
FARM_FILE = ".rfarm/farm.env"
APP_NAME = "rfarm"
ENV_SOURCE = "RFARM_REDIS_URL in the environment"
DEFAULT_SOURCE = "the built-in default"


def _config_dir() -> Path:
    return platformdirs.user_config_path(APP_NAME, appauthor=False)


def _data_dir() -> Path:
    return platformdirs.user_data_path(APP_NAME, appauthor=False)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    redis_url: str = DEFAULT_REDIS_URL
    database_url: str = DEFAULT_DATABASE_URL
    prefix: str = "rf"
    config_dir: Path = Field(default_factory=_config_dir)  # the shell's credentials
    data_dir: Path = Field(default_factory=_data_dir)  # what the shell accumulates (its history)
    token: str | None = None
    redis_source: str = ""  # where redis_url came from, said when the farm does not answer there

    @model_validator(mode="before")
    @classmethod
    def _one_folder_when_named(cls, values: Any) -> Any:
        """A config folder named without a data folder (RFARM_CONFIG_DIR) holds everything."""
        if isinstance(values, dict) and values.get("config_dir") and not values.get("data_dir"):
            return {**values, "data_dir": values["config_dir"]}
        return values

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None) -> Settings:
        """Environment first; else what ``rfarmctl up`` left in the nearest .rfarm/farm.env (in the
        current folder or a parent, as git finds .git); else defaults."""
        env = dict(os.environ if environ is None else environ)
        start = (cwd or Path.cwd()).resolve()
        farm_file = find_farm_file(start)
        farm = read_farm_file(farm_file) if farm_file else {}
        values: dict[str, object] = {}
        for key, env_name in (
            ("redis_url", "RFARM_REDIS_URL"),
            ("database_url", "RFARM_DATABASE_URL"),
            ("prefix", "RFARM_PREFIX"),
        ):
            if env.get(env_name):
                values[key] = env[env_name]
            elif farm.get(env_name):
                values[key] = farm[env_name]
        if env.get("RFARM_REDIS_URL"):
            values["redis_source"] = ENV_SOURCE
        elif farm.get("RFARM_REDIS_URL"):
            values["redis_source"] = str(farm_file)
        else:
            values["redis_source"] = default_source(start)
        if env.get("RFARM_CONFIG_DIR"):
            values["config_dir"] = Path(env["RFARM_CONFIG_DIR"]).expanduser()
        if env.get("RFARM_TOKEN"):
            values["token"] = env["RFARM_TOKEN"]
        return cls(**values)  # type: ignore[arg-type]


def default_source(start: Path) -> str:
    return f"{DEFAULT_SOURCE}: no RFARM_REDIS_URL in the environment, no {FARM_FILE} in {start} or above"


def is_default_source(source: str) -> bool:
    return source.startswith(DEFAULT_SOURCE)


def find_farm_file(start: Path) -> Path | None:
    """The nearest ``.rfarm/farm.env`` in ``start`` or one of its parents, or None."""
    for folder in (start, *start.parents):
        candidate = folder / FARM_FILE
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # a folder we may not look into: keep looking above it
            continue
    return None


def read_farm_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; a missing or unreadable file is simply no configuration."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().startswith("RFARM_"):
            out[key.strip()] = value.strip()
    return out


def redact_url(url: str) -> str:
    """A server URL fit to print or log: any password in it replaced by ***."""
    if is_sentinel(url):
        return redact_sentinel(url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unreadable url>"
    if password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
