"""The farm's public key as the shell first met it (trust on first use), kept per farm in
``<config_dir>/farm-keys`` (mode 0600) beside the credentials; a logout does not forget it. Someone
who can write the key in Redis cannot swap in their own: a changed key is refused until the user
accepts it (`rfarm login USER --accept-new-farm-key`)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from nacl.public import PublicKey

from broker_contracts.config import Settings, redact_url
from broker_contracts.sealing import key_text, public_key

FILE_NAME = "farm-keys"


class PinnedKeys:
    """The pinned key of the farm ``settings`` name (its Redis, credentials left out, and prefix)."""

    def __init__(self, settings: Settings) -> None:
        self.path = Path(settings.config_dir) / FILE_NAME
        self.farm = f"{redact_url(settings.redis_url)} {settings.prefix}"

    def _all(self) -> dict[str, str]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    def get(self) -> PublicKey | None:
        text = self._all().get(self.farm)
        if text is None:
            return None
        try:
            return public_key(text)
        except ValueError:
            return None

    def pin(self, key: PublicKey) -> None:
        """Remember ``key`` for this farm; raises OSError when the folder cannot be written."""
        pins = self._all()
        pins[self.farm] = key_text(key)
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = folder / f".{FILE_NAME}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, json.dumps(pins, indent=2).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
