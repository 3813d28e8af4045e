"""Render nodes as the gateway last heard of them."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from broker_contracts.work import NodeHeartbeat
from store.dispatch import ALIVE


def heartbeat(conn: psycopg.Connection, hb: NodeHeartbeat) -> None:
    conn.execute(
        """INSERT INTO nodes AS n
             (id, pool, slots, tags, profiles, running, version, host, lease, specs, state, last_seen)
           VALUES (%(id)s, %(pool)s, %(slots)s, %(tags)s, %(profiles)s, %(running)s, %(version)s, %(host)s,
                   %(lease)s, %(specs)s,
                   CASE WHEN cardinality(%(running)s::bigint[]) > 0 THEN 'busy' ELSE 'idle' END, now())
           ON CONFLICT (id) DO UPDATE SET pool = EXCLUDED.pool, slots = EXCLUDED.slots, tags = EXCLUDED.tags,
             profiles = EXCLUDED.profiles, running = EXCLUDED.running, version = EXCLUDED.version,
             host = EXCLUDED.host, lease = EXCLUDED.lease, specs = EXCLUDED.specs, state = EXCLUDED.state,
             last_seen = now()""",
        {
            "id": hb.node,
            "pool": hb.pool,
            "slots": hb.slots,
            "tags": sorted(hb.tags),
            "profiles": sorted(hb.profiles),
            "running": hb.running,
            "version": hb.version,
            "host": hb.host,
            "lease": hb.lease,
            "specs": Jsonb(hb.specs),
        },
    )


def gone(conn: psycopg.Connection, node_id: str) -> None:
    conn.execute("UPDATE nodes SET state = 'gone', running = '{}', last_seen = now() WHERE id = %s", (node_id,))


def list_nodes(conn: psycopg.Connection, *, include_gone_for: float = 3600) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"""SELECT n.id, n.pool, n.slots, n.tags, n.profiles, cardinality(n.running) AS running,
                   CASE WHEN n.state = 'gone' THEN 'gone' WHEN {ALIVE} THEN n.state ELSE 'lost' END AS state,
                   n.version, n.last_seen,
                   (SELECT coalesce(jsonb_object_agg(s.key, s.value ->> 'version'), '{{}}'::jsonb)
                      FROM jsonb_each(n.specs) s WHERE jsonb_typeof(s.value -> 'version') = 'string') AS renderers
            FROM nodes n WHERE n.last_seen > now() - make_interval(secs => %s) ORDER BY n.pool, n.id""",
        (include_gone_for,),
    ).fetchall()
    return [dict(r) for r in rows]  # type: ignore[call-overload]


def offered(conn: psycopg.Connection, pool: str) -> dict[str, list[str]]:
    """Profiles offered by the live nodes of a pool -> the tags of the nodes that offer each."""
    rows = conn.execute(f"SELECT n.profiles, n.tags FROM nodes n WHERE n.pool = %s AND {ALIVE}", (pool,)).fetchall()
    out: dict[str, list[str]] = {}
    for r in rows:
        for p in r["profiles"]:  # type: ignore[call-overload]
            out.setdefault(p, []).extend(r["tags"])  # type: ignore[call-overload]
    return out


def spec_of(conn: psycopg.Connection, profile: str) -> dict[str, Any] | None:
    """The spec of a profile as the most recently heard node offering it declares it."""
    row = conn.execute(
        """SELECT specs -> %s AS spec FROM nodes WHERE %s = ANY(profiles) AND state <> 'gone'
           ORDER BY last_seen DESC LIMIT 1""",
        (profile, profile),
    ).fetchone()
    return row["spec"] if row else None  # type: ignore[call-overload]
