"""Settings read from the environment, passed down explicitly (never a global)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/rfarm"
FARM_FILE = ".rfarm/farm.env"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    redis_url: str = DEFAULT_REDIS_URL
    database_url: str = DEFAULT_DATABASE_URL
    prefix: str = "rf"
    config_dir: Path = Path("~/.config/rfarm").expanduser()
    token: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None) -> Settings:
        """Environment first; else what ``rfarmctl up`` left in ./.rfarm/farm.env; else defaults."""
        env = dict(os.environ if environ is None else environ)
        farm = read_farm_file((cwd or Path.cwd()) / FARM_FILE)
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
        if env.get("RFARM_CONFIG_DIR"):
            values["config_dir"] = Path(env["RFARM_CONFIG_DIR"]).expanduser()
        if env.get("RFARM_TOKEN"):
            values["token"] = env["RFARM_TOKEN"]
        return cls(**values)  # type: ignore[arg-type]


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
