"""`rfarmctl up` keeps its nodes' credentials across restarts, and issues a new one when the
database no longer holds the kept one's key."""

from __future__ import annotations

import stat
from pathlib import Path

import psycopg

from rfarmctl.credentials import kept


def test_a_kept_credential_is_reused_until_its_key_is_gone(database_url: str, tmp_path: Path, unique: str) -> None:
    name = f"up-{unique}"
    saved = tmp_path / "nodes" / f"{name}.credential"
    first = kept(database_url, name, saved)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert kept(database_url, name, saved) == first  # a restart: the same identity
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE node_credentials SET revoked_at = now() WHERE name = %s", (name,))
    renewed = kept(database_url, name, saved)
    assert renewed != first and saved.read_text().strip() == renewed
    saved.write_text("not a credential")
    assert kept(database_url, name, saved) not in (first, renewed)
