"""The farm's identity: the one row migration 0003 made, read by every gateway to announce it."""

from __future__ import annotations

import psycopg

from broker_contracts.errors import ErrorCode, RfarmError

FARM_ID = "SELECT farm_id::text AS farm_id FROM farm_identity"


def farm_id(conn: psycopg.Connection) -> str:
    row = conn.execute(FARM_ID).fetchone()
    if row is None:
        raise RfarmError(ErrorCode.INTERNAL, "the database has no farm identity: run `rfarmctl migrate`")
    return str(row["farm_id"])  # type: ignore[call-overload]
