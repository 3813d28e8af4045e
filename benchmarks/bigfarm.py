"""The simulated big farm: how busy the slots stay, and whether late high-priority work starts first."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.gateway_bench import BenchUser
from benchmarks.harness import BenchFarm, wait_for
from benchmarks.simfarm import SimFarm
from benchmarks.wire import Caller

POOL = "sim"


def run_bigfarm(
    farm: BenchFarm, user: BenchUser, nodes: int, processes: int, tasks_per_slot: int, task_seconds: float
) -> dict[str, Any]:
    low_tasks = nodes * tasks_per_slot
    high_tasks = nodes
    ideal = (low_tasks + high_tasks) * task_seconds / nodes
    sim = SimFarm(farm.redis_url, farm.prefix, POOL, nodes, processes, lease=farm.lease,
                  task_seconds=task_seconds, limit=ideal * 6 + 120)
    try:
        farm.wait_nodes(POOL, nodes, timeout=90)
        caller = Caller(farm.redis_url, farm.prefix)
        try:
            params = {"seconds": str(task_seconds)}
            low = caller.ok("job.submit", {"name": "sim-low", "frames": f"1-{low_tasks}", "chunk": 1,
                                           "renderer": "sleep", "params": params, "priority": 10, "pool": POOL},
                            user.token)["id"]
            # the farm is full and the backlog long: now the urgent job arrives
            wait_for(lambda: _started(farm, low) >= nodes, timeout=ideal * 4 + 60, what="the farm to fill")
            time.sleep(2 * task_seconds)
            high = caller.ok("job.submit", {"name": "sim-high", "frames": f"1-{high_tasks}", "chunk": 1,
                                            "renderer": "sleep", "params": params, "priority": 90, "pool": POOL},
                             user.token)["id"]
        finally:
            caller.close()
        wait_for(lambda: _done(farm, low) and _done(farm, high), timeout=ideal * 6 + 120,
                 what="the simulated farm's jobs", interval=0.25)
    finally:
        counts = sim.finish()
    with farm.db() as conn:
        span = conn.execute(
            """SELECT EXTRACT(EPOCH FROM max(t.finished_at) - min(j.created_at))::float AS from_submit,
                      EXTRACT(EPOCH FROM max(t.finished_at) - min(t.started_at))::float AS from_first_start,
                      count(*) FILTER (WHERE t.status = 'succeeded') AS ok, count(*) AS n
               FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE j.id = ANY(%s)""",
            ([low, high],),
        ).fetchone()
        prio = conn.execute(
            """WITH h AS (SELECT j.created_at AS submitted, min(t.started_at) AS first, max(t.started_at) AS last
                          FROM jobs j JOIN tasks t ON t.job_id = j.id WHERE j.id = %(high)s GROUP BY j.created_at),
                    backlog AS (SELECT count(*) AS n FROM tasks t, h WHERE t.job_id = %(low)s
                                AND t.started_at > h.submitted AND t.started_at < h.last)
               SELECT EXTRACT(EPOCH FROM h.first - h.submitted)::float AS first_start_s,
                      EXTRACT(EPOCH FROM h.last - h.submitted)::float AS last_start_s,
                      (SELECT count(*) FROM tasks t WHERE t.job_id = %(low)s AND t.dispatched_at > h.submitted
                         AND t.started_at < h.last) AS low_overtaking,
                      (SELECT n FROM backlog) AS low_started_after_submit
               FROM h""",
            {"high": high, "low": low},
        ).fetchone()
    assert span is not None and prio is not None
    busy = counts["busy_seconds"]
    return {
        "nodes": nodes,
        "processes": processes,
        "task_seconds": task_seconds,
        "tasks": int(span["n"]),
        "succeeded": int(span["ok"]),
        "ideal_seconds": round(ideal, 2),
        "seconds_from_submit": round(span["from_submit"], 2),
        "busy_share": round(busy / (nodes * span["from_submit"]), 3),
        "busy_share_after_first_start": round(busy / (nodes * span["from_first_start"]), 3),
        "tasks_per_s": round(int(span["ok"]) / span["from_submit"], 1),
        "priority": {
            "high_first_start_s": round(prio["first_start_s"], 3),
            "high_last_start_s": round(prio["last_start_s"], 3),
            "low_from_backlog_started_before_high": int(prio["low_overtaking"]),
            "low_started_while_high_waited": int(prio["low_started_after_submit"]),
        },
    }


def _started(farm: BenchFarm, job_id: int) -> int:
    with farm.db() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM tasks WHERE job_id = %s AND status <> 'queued'", (job_id,)
        ).fetchone()
    return int(row["n"]) if row else 0


def _done(farm: BenchFarm, job_id: int) -> bool:
    with farm.db() as conn:
        row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return row is not None and row["status"] in ("succeeded", "failed", "cancelled")
