"""Node credentials (public keys only) and the gateways' work-signing key pair."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

WORK_KEY = "work"


@dataclass(frozen=True)
class NodeKey:
    name: str
    public_key: bytes
    created_at: datetime
    revoked_at: datetime | None


def signing_key(
    conn: psycopg.Connection, purpose: str, fresh_private: bytes, fresh_public: bytes
) -> tuple[bytes, bytes]:
    """The (private, public) key pair for ``purpose``; the fresh pair is stored if there was none
    (whoever comes first wins, so every gateway and operator command agrees on one pair)."""
    conn.execute(
        """INSERT INTO signing_keys (purpose, private_key, public_key) VALUES (%s, %s, %s)
           ON CONFLICT (purpose) DO NOTHING""",
        (purpose, fresh_private, fresh_public),
    )
    row = conn.execute("SELECT private_key, public_key FROM signing_keys WHERE purpose = %s", (purpose,)).fetchone()
    if row is None:
        raise RuntimeError(f"the {purpose} signing key was neither found nor stored")
    data = dict(row)  # type: ignore[call-overload]
    return bytes(data["private_key"]), bytes(data["public_key"])


def add_node(conn: psycopg.Connection, name: str, public_key: bytes, *, replace: bool) -> bool:
    """Record a node's public key. A revoked credential is always replaced, a live one only with
    ``replace``; False when a live credential of that name exists and was kept."""
    cur = conn.execute(
        """INSERT INTO node_credentials AS c (name, public_key) VALUES (%s, %s)
           ON CONFLICT (name) DO UPDATE SET public_key = EXCLUDED.public_key, created_at = now(), revoked_at = NULL
           WHERE c.revoked_at IS NOT NULL OR %s""",
        (name, public_key, replace),
    )
    return cur.rowcount == 1


def revoke_node(conn: psycopg.Connection, name: str) -> bool:
    cur = conn.execute("UPDATE node_credentials SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,))
    return cur.rowcount == 1


def list_nodes(conn: psycopg.Connection) -> list[NodeKey]:
    rows = conn.execute(
        "SELECT name, public_key, created_at, revoked_at FROM node_credentials ORDER BY name"
    ).fetchall()
    return [NodeKey(r["name"], bytes(r["public_key"]), r["created_at"], r["revoked_at"]) for r in rows]  # type: ignore[call-overload]


def node_keys(conn: psycopg.Connection) -> dict[str, bytes | None]:
    """Every node name that has had a credential -> its public key (None once revoked)."""
    return {k.name: None if k.revoked_at is not None else k.public_key for k in list_nodes(conn)}
