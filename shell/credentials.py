"""The shell's credentials file: who is logged in, with which token, on which farm. Mode 0600."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from broker_contracts.config import Settings
from broker_contracts.errors import ErrorCode
from shell.errors import FarmError

FILE_NAME = "credentials"
NOT_LOGGED_IN = "not logged in: run `rfarm login USER`"


@dataclass(frozen=True)
class Credentials:
    username: str
    token: str
    redis_url: str
    prefix: str


class CredentialStore:
    """Reads and writes ``<config_dir>/credentials``; the token is only used on the farm that issued it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = Path(settings.config_dir) / FILE_NAME

    def load(self) -> Credentials | None:
        """The stored credentials for this farm (same Redis URL and prefix), or None."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            creds = Credentials(
                username=str(raw["username"]),
                token=str(raw["token"]),
                redis_url=str(raw["redis_url"]),
                prefix=str(raw["prefix"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if creds.redis_url != self.settings.redis_url or creds.prefix != self.settings.prefix:
            return None
        return creds

    def token(self) -> str | None:
        """RFARM_TOKEN wins; else the stored token if this farm issued it."""
        if self.settings.token:
            return self.settings.token
        creds = self.load()
        return creds.token if creds else None

    def require_token(self) -> str:
        token = self.token()
        if not token:
            raise FarmError(NOT_LOGGED_IN, ErrorCode.AUTH_REQUIRED.value)
        return token

    def save(self, username: str, token: str) -> Path:
        """Write atomically; the file is created 0600 inside a 0700 directory, never world-readable."""
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        creds = Credentials(username, token, self.settings.redis_url, self.settings.prefix)
        data = json.dumps(asdict(creds), indent=2).encode("utf-8")
        tmp = folder / f".{FILE_NAME}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        return self.path

    def forget(self) -> bool:
        """Delete the stored token of this farm; True if there was one."""
        if self.load() is None:
            return False
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        return True
