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
                      FROM jsonb_each(n.specs) s WHERE jsonb_typeof(s.value -> 'version') = 'string') AS renderers,
                   n.drained
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


def jobs_running(conn: psycopg.Connection, owner_id: int | None) -> dict[str, list[dict[str, Any]]]:
    """Node -> the jobs of the tasks it runs (id, name, owner; one entry per job), of ``owner_id``
    only when given (a non-admin sees no other user's job names)."""
    rows = conn.execute(
        """SELECT DISTINCT n.id AS node, j.id, j.name, u.username AS owner
           FROM nodes n CROSS JOIN LATERAL unnest(n.running) AS r(task)
           JOIN tasks t ON t.id = r.task JOIN jobs j ON j.id = t.job_id JOIN users u ON u.id = j.owner_id
           WHERE cardinality(n.running) > 0 AND (%(owner)s::bigint IS NULL OR j.owner_id = %(owner)s)
           ORDER BY n.id, j.id""",
        {"owner": owner_id},
    ).fetchall()
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        row = dict(r)  # type: ignore[call-overload]
        out.setdefault(row.pop("node"), []).append(row)
    return out


def set_drained(conn: psycopg.Connection, node_id: str, drained: bool) -> bool:
    """Drain (or undrain) a known node; False if no node has that name."""
    return conn.execute("UPDATE nodes SET drained = %s WHERE id = %s", (drained, node_id)).rowcount == 1


def drained(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT id FROM nodes WHERE drained AND state <> 'gone' ORDER BY id").fetchall()
    return [r["id"] for r in rows]  # type: ignore[call-overload]


def forget(conn: psycopg.Connection, node_id: str) -> str | None:
    """Remove a node that is gone or lost: None when done, else why not ("alive", "unknown")."""
    row = conn.execute(f"SELECT {ALIVE} AS alive FROM nodes n WHERE n.id = %s FOR UPDATE", (node_id,)).fetchone()
    if row is None:
        return "unknown"
    if row["alive"]:  # type: ignore[call-overload]
        return "alive"
    conn.execute("DELETE FROM nodes WHERE id = %s", (node_id,))
    return None


def forget_gone(conn: psycopg.Connection, after: float) -> list[str]:
    """Remove every node not heard from for ``after`` seconds; their names."""
    rows = conn.execute(
        f"""DELETE FROM nodes n WHERE n.last_seen < now() - make_interval(secs => %s) AND NOT ({ALIVE})
            RETURNING n.id""",
        (after,),
    ).fetchall()
    return sorted(r["id"] for r in rows)  # type: ignore[call-overload]
