"""Fair share and limits, measured (issue 12): how soon a second user's job starts behind another
user's big queue, and what fair share and limits cost the dispatch rate against the plain queue."""

from __future__ import annotations

from typing import Any

from benchmarks.gateway_bench import PASSWORD, BenchUser
from benchmarks.harness import BenchFarm, wait_for
from benchmarks.measure import summarize
from benchmarks.wire import Caller
from store import limits, shares


def other_user(farm: BenchFarm, name: str) -> str:
    """A second user, registered and logged in through the gateway; their token."""
    caller = Caller(farm.redis_url, farm.prefix)
    try:
        caller.register(name, PASSWORD)
        return caller.login(name, PASSWORD)
    finally:
        caller.close()


def run_late_user(
    farm: BenchFarm, user: BenchUser, queued: int, samples: int, nodes: int, slots: int, task_seconds: float
) -> dict[str, Any]:
    """``queued`` tasks of one user fill the pool; another user then submits one-task jobs, one at a
    time: from each submit to its task's start (both as PostgreSQL stamped them)."""
    pool = "fairlate"
    names = [f"fairlate-{i}" for i in range(nodes)]
    for name in names:
        farm.start_node(name, pool, slots)
    farm.wait_nodes(pool, nodes)
    late = other_user(farm, "late")
    caller = Caller(farm.redis_url, farm.prefix)
    try:
        big = caller.ok("job.submit", {"name": "big", "frames": f"1-{queued}", "renderer": "sleep",
                                       "params": {"seconds": str(task_seconds)}, "pool": pool}, user.token)["id"]
        with farm.db() as conn:
            conn.execute("ANALYZE")
        wait_for(lambda: _running(farm, big) >= nodes * slots, timeout=60, what="the big job on every slot")
        waits: list[float] = []
        for i in range(samples):
            job = caller.ok("job.submit", {"name": f"late{i}", "frames": "1", "renderer": "sleep",
                                           "params": {"seconds": str(task_seconds)}, "pool": pool}, late)["id"]
            wait_for(lambda job=job: _finished(farm, job), timeout=60, what=f"late job {job}", interval=0.05)
            with farm.db() as conn:
                row = conn.execute(
                    """SELECT EXTRACT(EPOCH FROM min(h.at) - j.created_at)::float AS wait
                       FROM jobs j JOIN task_history h ON h.job_id = j.id AND h.to_status = 'running'
                       WHERE j.id = %s GROUP BY j.id""",
                    (job,),
                ).fetchone()
            waits.append(float(row["wait"]))  # type: ignore[index]
        left = queued - _done(farm, big)
        caller.ok("job.cancel", {"id": big}, user.token)
    finally:
        caller.close()
    for name in names:
        farm.stop(name)
    stats = summarize(waits)
    return {"queued": queued, "samples": samples, "nodes": nodes, "slots_per_node": slots,
            "task_seconds": task_seconds, "big_job_tasks_left": left,
            "first_start_p50_s": round(stats["p50_ms"] / 1000, 3),
            "first_start_p99_s": round(stats["p99_ms"] / 1000, 3),
            "first_start_max_s": round(max(waits), 3)}


def run_rate(farm: BenchFarm, user: BenchUser, frames: int, nodes: int, slots: int) -> dict[str, Any]:
    """The same no-op frames dispatched twice on the same nodes: one user's plain job, then four
    users' jobs (two weighted) whose tasks all take a limit (set high enough never to bind)."""
    pool = "fairrate"
    names = [f"fairrate-{i}" for i in range(nodes)]
    for name in names:
        farm.start_node(name, pool, slots)
    farm.wait_nodes(pool, nodes)
    tokens = [user.token] + [other_user(farm, f"fair{i}") for i in range(1, 4)]
    with farm.db() as conn:
        limits.set_limit(conn, "bench-lic", frames * 10)
        shares.set_share(conn, "fair1", 2.0)
        shares.set_share(conn, "fair2", 0.5)
        conn.execute("ANALYZE")
    caller = Caller(farm.redis_url, farm.prefix)
    try:
        # a warm-up first, so that neither measured run pays for the nodes' and gateway's first tasks
        _until_done(farm, [caller.ok("job.submit", {"name": "warm", "frames": f"1-{max(1, frames // 10)}",
                                                     "renderer": "noop", "pool": pool}, user.token)["id"]], frames)
        plain = [caller.ok("job.submit", {"name": "plain", "frames": f"1-{frames}", "renderer": "noop",
                                          "pool": pool}, user.token)["id"]]
        plain_s = _until_done(farm, plain, frames)
        share = max(1, frames // len(tokens))
        fair = [caller.ok("job.submit", {"name": f"fair{i}", "frames": f"1-{share}", "renderer": "noop",
                                         "pool": pool, "limits": ["bench-lic"]}, token)["id"]
                for i, token in enumerate(tokens)]
        fair_s = _until_done(farm, fair, frames)
    finally:
        caller.close()
    for name in names:
        farm.stop(name)
    plain_rate = frames / plain_s if plain_s > 0 else 0.0
    fair_rate = share * len(tokens) / fair_s if fair_s > 0 else 0.0
    return {"frames": frames, "nodes": nodes, "slots_per_node": slots, "users": len(tokens),
            "plain_frames_per_s": round(plain_rate, 1), "fair_frames_per_s": round(fair_rate, 1),
            "ratio": round(fair_rate / plain_rate, 3) if plain_rate else None}


def _until_done(farm: BenchFarm, jobs: list[int], frames: int) -> float:
    """Seconds from the first job's creation to the last task's end, once all jobs succeeded."""
    wait_for(lambda: all(_finished(farm, j) for j in jobs), timeout=max(120.0, frames / 20),
             what=f"jobs {jobs}", interval=0.1)
    with farm.db() as conn:
        row = conn.execute(
            """SELECT EXTRACT(EPOCH FROM max(t.finished_at) - min(j.created_at))::float AS span
               FROM jobs j JOIN tasks t ON t.job_id = j.id WHERE j.id = ANY(%s)""",
            (jobs,),
        ).fetchone()
    return float(row["span"])  # type: ignore[index]


def _finished(farm: BenchFarm, job: int) -> bool:
    farm.check_alive()
    with farm.db() as conn:
        row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job,)).fetchone()
    return row is not None and row["status"] in ("succeeded", "failed", "cancelled")


def _running(farm: BenchFarm, job: int) -> int:
    with farm.db() as conn:
        row = conn.execute("SELECT count(*) AS n FROM tasks WHERE job_id = %s AND status = 'running'",
                           (job,)).fetchone()
    return int(row["n"])  # type: ignore[index]


def _done(farm: BenchFarm, job: int) -> int:
    with farm.db() as conn:
        row = conn.execute("SELECT count(*) AS n FROM tasks WHERE job_id = %s AND status = 'succeeded'",
                           (job,)).fetchone()
    return int(row["n"])  # type: ignore[index]
