"""The farm's key pair (migrations/0005_gateway_key.sql): made once by the first gateway, read by all."""

from __future__ import annotations

import psycopg

_MAKE = """INSERT INTO gateway_key (private_key, public_key) VALUES (%(private)s, %(public)s)
           ON CONFLICT (one) DO NOTHING"""
_READ = "SELECT private_key FROM gateway_key WHERE one"


def load_or_make(conn: psycopg.Connection, private: bytes, public: bytes) -> bytes:
    """The stored private key; ``private`` (with its ``public``) becomes it if there is none yet.
    Race-safe: of gateways starting at once, the first insert wins and every one reads it."""
    conn.execute(_MAKE, {"private": private, "public": public})
    row = conn.execute(_READ).fetchone()
    if row is None:
        raise RuntimeError("the gateway key was neither made nor found")
    return bytes(row["private_key"])  # type: ignore[call-overload]  # dict rows (the pool's row factory)
