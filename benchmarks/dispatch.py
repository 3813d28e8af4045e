"""Dispatch: one job of many one-frame tasks on the no-op renderer, with 1, 2 and 4 real nodes."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.gateway_bench import BenchUser
from benchmarks.harness import BenchFarm, peak_rss_mib, wait_for
from benchmarks.wire import Caller
from broker_contracts.states import replay_is_legal


def run_dispatch(farm: BenchFarm, user: BenchUser, frames: int, nodes: int, slots: int) -> dict[str, Any]:
    pool = f"dispatch{nodes}"
    names = [f"node{nodes}-{i}" for i in range(nodes)]
    for name in names:
        farm.start_node(name, pool, slots)
    farm.wait_nodes(pool, nodes)
    with farm.db() as conn:
        # What autovacuum does within a minute on a real farm, done now because the benchmark packs
        # thousands of submits into seconds: without it the gateway's connections keep plans made
        # while `tasks` had 10 rows (the foreign-key checks of every history insert among them)
        # and dispatch slows with every row added.
        conn.execute("ANALYZE")
    caller = Caller(farm.redis_url, farm.prefix)
    try:
        job_id = caller.ok("job.submit", {"name": f"dispatch-{nodes}", "frames": f"1-{frames}", "chunk": 1,
                                          "renderer": "noop", "pool": pool}, user.token)["id"]
    finally:
        caller.close()

    def finished() -> bool:
        farm.check_alive()
        with farm.db() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return row is not None and row["status"] in ("succeeded", "failed", "cancelled")

    started = time.monotonic()
    wait_for(finished, timeout=max(120.0, frames / 20), what=f"job {job_id} on {nodes} node(s)", interval=0.1)
    wall = time.monotonic() - started
    rss = [peak_rss_mib(farm.procs[n].pid) for n in names]
    with farm.db() as conn:
        timing = conn.execute(
            """SELECT j.status, j.frames_done, EXTRACT(EPOCH FROM max(t.finished_at) - j.created_at)::float AS span,
                      count(*) FILTER (WHERE t.status = 'succeeded') AS ok
               FROM jobs j JOIN tasks t ON t.job_id = j.id WHERE j.id = %s GROUP BY j.id""",
            (job_id,),
        ).fetchone()
        history = check_history(conn, job_id)
    for name in names:
        farm.stop(name)
    span = float(timing["span"])  # type: ignore[index]
    return {
        "nodes": nodes,
        "slots_per_node": slots,
        "frames": frames,
        "status": timing["status"],  # type: ignore[index]
        "seconds": round(span, 3),
        "frames_per_s": round(frames / span, 1) if span > 0 else None,
        "wall_seconds_observed": round(wall, 2),
        "history": history,
        "node_peak_rss_mib": round(max(r for r in rss if r is not None), 1) if any(rss) else None,
    }


def check_history(conn: Any, job_id: int) -> dict[str, Any]:
    """Every task's chain is legal and went queued -> running -> succeeded; so did the job's."""
    rows = conn.execute(
        "SELECT task_id, from_status, to_status FROM task_history WHERE job_id = %s ORDER BY id", (job_id,)
    ).fetchall()
    chains: dict[int, list[tuple[str | None, str]]] = {}
    for r in rows:
        chains.setdefault(r["task_id"], []).append((r["from_status"], r["to_status"]))
    tasks = conn.execute("SELECT count(*) AS n FROM tasks WHERE job_id = %s", (job_id,)).fetchone()["n"]
    bad = 0
    for chain in chains.values():
        ok, _ = replay_is_legal(chain, kind="task")
        steps = [to for _, to in chain]
        if not ok or "running" not in steps or steps[-1] != "succeeded":
            bad += 1
    job_chain = [
        (r["from_status"], r["to_status"])
        for r in conn.execute(
            "SELECT from_status, to_status FROM job_history WHERE job_id = %s ORDER BY id", (job_id,)
        ).fetchall()
    ]
    job_ok, _ = replay_is_legal(job_chain, kind="job")
    return {
        "tasks": tasks,
        "tasks_with_history": len(chains),
        "task_rows": len(rows),
        "bad_task_chains": bad + (tasks - len(chains)),
        "job_chain": [to for _, to in job_chain],
        "complete": job_ok and bad == 0 and len(chains) == tasks
        and [to for _, to in job_chain] == ["queued", "running", "succeeded"],
    }
