"""The shell's credentials file: who is logged in, with which token, on which farm. Mode 0600.

A session is keyed by the farm's identity (the id its gateways announce), so it survives the farm
coming back on another address. A session saved where no identity was announced (or by an older
shell, whose file has no ``farm_id``) is matched by its Redis URL and prefix, and takes the farm's
identity the first time it is used where one is announced.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
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
    farm_id: str | None = None


def _no_identity(_wait: bool) -> str | None:
    return None


class CredentialStore:
    """Reads and writes ``<config_dir>/credentials``; the token is only used on the farm that issued it.

    ``identify(wait)`` returns the identity of the farm the shell talks to, None where none is
    announced; with ``wait`` it waits (for a farm that is starting) and raises NoAnswer if none comes.
    It is asked only when there is a saved session to match or one to save.
    """

    def __init__(self, settings: Settings, identify: Callable[[bool], str | None] = _no_identity) -> None:
        self.settings = settings
        self.identify = identify
        self.path = Path(settings.config_dir) / FILE_NAME

    def saved(self) -> Credentials | None:
        """What the file holds, whichever farm it is for; None if there is no readable file."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            farm_id = raw.get("farm_id")
            return Credentials(
                username=str(raw["username"]),
                token=str(raw["token"]),
                redis_url=str(raw["redis_url"]),
                prefix=str(raw["prefix"]),
                farm_id=str(farm_id) if farm_id else None,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def load(self) -> Credentials | None:
        """The stored credentials for this farm, or None."""
        creds = self.saved()
        if creds is None:
            return None
        farm_id = self.identify(False)
        if farm_id is None and creds.farm_id and not self._same_address(creds):
            farm_id = self.identify(True)  # a farm (re)starting at a new address: it will say who it is
        if not self._matches(creds, farm_id):
            return None
        if farm_id and creds.farm_id is None:
            creds = replace(creds, farm_id=farm_id)
            with contextlib.suppress(OSError):  # keyed by the farm from now on; unsaved, still usable
                self._write(creds)
        return creds

    def _matches(self, creds: Credentials, farm_id: str | None) -> bool:
        if farm_id and creds.farm_id:
            return creds.farm_id == farm_id
        return self._same_address(creds)

    def _same_address(self, creds: Credentials) -> bool:
        return creds.redis_url == self.settings.redis_url and creds.prefix == self.settings.prefix

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
        farm_id = self.identify(False)
        return self._write(Credentials(username, token, self.settings.redis_url, self.settings.prefix, farm_id))

    def _write(self, creds: Credentials) -> Path:
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
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
